"""The playback actor's parts that hold no task: the output track and the drop count.

Private to :mod:`voxtrio.actors.playback`.
"""

from __future__ import annotations

import numpy as np

from ..audio import AudioFormat, AudioFrame, FrameMs
from ..codecs.audio import Reframer
from ..codecs.resample import StreamResampler, float_to_int16, int16_to_float
from ..messages import AudioDropped
from .base import EdgeCounter

__all__ = ["DropCounter", "Track"]


class Track:
    """The output track: one reframer for its whole life (pts never restart) and a
    resampler from the reply rate, replaced when either rate changes."""

    def __init__(self, in_rate: int, fmt: AudioFormat, frame_ms: FrameMs) -> None:
        self.fmt = fmt
        self.framer = Reframer(fmt, frame_ms)
        self.resampler = StreamResampler(in_rate, fmt.sample_rate, 1)

    @property
    def in_rate(self) -> int:
        return self.resampler.in_rate

    def push(self, pcm: np.ndarray) -> list[AudioFrame]:
        out = self.resampler.push_float(int16_to_float(pcm[:, 0]))
        return self.framer.push(self._channels(out))

    def drain(self) -> list[AudioFrame]:
        """Everything held, the last frame short: the end of a reply."""
        tail = self.resampler.flush_float()
        frames = self.framer.push(self._channels(tail)) if tail.size else []
        return frames + self.framer.flush(pad=False)

    def discard(self) -> None:
        """Forget held audio (barge-in). The reframer's partial frame is dropped; the
        next frame's pts skips over it, so pts stay increasing."""
        self.resampler.reset()
        self.framer.flush(pad=False)

    def set_in_rate(self, in_rate: int) -> list[AudioFrame]:
        frames = self.drain()
        self.resampler = StreamResampler(in_rate, self.fmt.sample_rate, 1)
        return frames

    def reframe(self, fmt: AudioFormat, frame_ms: FrameMs) -> list[AudioFrame]:
        tail = self.resampler.flush_float()
        frames = self.framer.push(self._channels(tail)) if tail.size else []
        frames += self.framer.reframe(fmt, frame_ms)
        self.fmt = fmt
        self.resampler = StreamResampler(self.in_rate, fmt.sample_rate, 1)
        return frames

    def _channels(self, mono: np.ndarray) -> np.ndarray:
        pcm = float_to_int16(mono).reshape(-1, 1)
        return pcm if self.fmt.channels == 1 else np.repeat(pcm, self.fmt.channels, axis=1)


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
