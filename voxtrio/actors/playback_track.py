"""The playback actor's parts that hold no task: the output track and the drop count.

Private to :mod:`voxtrio.actors.playback`.
"""

from __future__ import annotations

import numpy as np

from ..audio import AudioFormat, AudioFrame, FrameMs
from ..codecs.audio import Reframer
from ..codecs.g711_stream import CodeFramer, decode_codes, encode_pcm
from ..codecs.resample import StreamResampler, float_to_int16, int16_to_float
from ..messages import AudioDropped
from .base import EdgeCounter

__all__ = ["DropCounter", "Track"]


class Track:
    """The output track: one framer for its whole life (pts never restart) and a
    resampler from the reply rate, replaced when either rate changes.

    G.711: an output track in ``mulaw``/``alaw`` is framed as codes; reply audio in
    that same encoding and rate passes straight to its framer (never decoded or
    resampled), other reply audio is decoded / resampled / encoded on the way.
    """

    def __init__(self, in_rate: int, fmt: AudioFormat, frame_ms: FrameMs) -> None:
        self.fmt = fmt
        self.in_encoding = "pcm16"
        self.framer: Reframer | CodeFramer = _framer(fmt, frame_ms)
        self.resampler = StreamResampler(in_rate, fmt.sample_rate, 1)

    @property
    def in_rate(self) -> int:
        return self.resampler.in_rate

    @property
    def passthrough(self) -> bool:
        """Reply audio goes to the framer as it is (same G.711 format)."""
        return (
            self.in_encoding == self.fmt.encoding
            and not self.fmt.is_pcm
            and self.in_rate == self.fmt.sample_rate
        )

    def push(self, pcm: np.ndarray) -> list[AudioFrame]:
        if self.passthrough:
            return self.framer.push(pcm)
        if self.in_encoding != "pcm16":
            pcm = decode_codes(pcm, self.in_encoding)
        out = self.resampler.push_float(int16_to_float(pcm[:, 0]))
        return self._frame(out)

    def drain(self) -> list[AudioFrame]:
        """Everything held, the last frame short: the end of a reply."""
        tail = self.resampler.flush_float()
        frames = self._frame(tail) if tail.size else []
        return frames + self._flush()

    def discard(self) -> None:
        """Forget held audio (barge-in). The framer's partial frame is dropped; the
        next frame's pts skips over it, so pts stay increasing."""
        self.resampler.reset()
        self._flush()

    def set_in_rate(self, in_rate: int, encoding: str = "pcm16") -> list[AudioFrame]:
        frames = self.drain()
        self.in_encoding = encoding
        self.resampler = StreamResampler(in_rate, self.fmt.sample_rate, 1)
        return frames

    def reframe(self, fmt: AudioFormat, frame_ms: FrameMs) -> list[AudioFrame]:
        tail = self.resampler.flush_float()
        frames = self._frame(tail) if tail.size else []
        if fmt.encoding != self.fmt.encoding:
            raise ValueError(f"a {self.fmt.encoding} track cannot become {fmt.encoding}")
        if isinstance(self.framer, Reframer):
            frames += self.framer.reframe(fmt, frame_ms)
        else:  # G.711: drain, and go on from the first instant not before the end
            frames += self.framer.flush()
            old_rate, pts = self.fmt.sample_rate, self.framer.next_pts
            self.framer = CodeFramer(fmt, frame_ms)
            self.framer.restart_at(-(-pts * fmt.sample_rate // old_rate))
        self.fmt = fmt
        self.resampler = StreamResampler(self.in_rate, fmt.sample_rate, 1)
        return frames

    def _frame(self, mono: np.ndarray) -> list[AudioFrame]:
        pcm = float_to_int16(mono).reshape(-1, 1)
        if not self.fmt.is_pcm:
            return self.framer.push(encode_pcm(pcm, self.fmt.encoding))
        if self.fmt.channels != 1:
            pcm = np.repeat(pcm, self.fmt.channels, axis=1)
        return self.framer.push(pcm)

    def _flush(self) -> list[AudioFrame]:
        if isinstance(self.framer, Reframer):
            return self.framer.flush(pad=False)
        return self.framer.flush()


def _framer(fmt: AudioFormat, frame_ms: FrameMs) -> Reframer | CodeFramer:
    return Reframer(fmt, frame_ms) if fmt.is_pcm else CodeFramer(fmt, frame_ms)


class DropCounter:
    """Counts queue-overflow drops (in the edge counter at once, so stats() sees them
    while the sink is blocked) until they are reported."""

    def __init__(self, counter: EdgeCounter) -> None:
        self.counter = counter
        self.unreported = 0
        self.unreported_samples = 0
        self.total = 0

    def note(self, frame: AudioFrame) -> None:
        self.unreported += 1
        self.unreported_samples += frame.samples
        self.total += 1
        self.counter.dropped_frames += 1
        self.counter.dropped_samples += frame.samples

    def peek(self) -> AudioDropped:
        """The report of the drops not yet reported (nothing changes)."""
        return AudioDropped("playback", self.unreported, self.unreported_samples, self.total)

    def report(self) -> AudioDropped:
        """The report, and they count as reported."""
        event = self.peek()
        self.unreported = self.unreported_samples = 0
        return event
