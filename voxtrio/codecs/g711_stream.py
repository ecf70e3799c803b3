"""G.711 streams: framing the codes as they are, and converting to and from them.

A telephone call is 8 kHz G.711 (mu-law or A-law), and some providers take it as it
is (OpenAI Realtime's ``audio/pcmu`` and ``audio/pcma``). Then the codes must reach
the wire untouched: :class:`CodeFramer` (a thin use of
:class:`~voxtrio.codecs.audio.Reframer`, which frames G.711 formats on its usual grid:
frame ``k`` covers samples ``[floor(k*S), floor((k+1)*S))``) cuts them into exact
frames and never decodes, filters or resamples them.

:class:`StreamConverter` is the input conversion for any pair of formats: the pass-
through above when source and target are the same G.711 format; otherwise decode
(G.711 -> int16, exact table lookups), the PCM :class:`~voxtrio.codecs.convert.Converter`
(channels, streaming resampling, framing), and encode each frame (int16 -> G.711)
when the target is G.711.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..audio import AudioFormat, AudioFrame, Encoding, FrameMs, build_frame
from .audio import SILENCE_CODES, Reframer
from .convert import Converter
from .g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode

__all__ = [
    "CodeFramer",
    "FrameConverter",
    "StreamConverter",
    "decode_codes",
    "encode_frame",
    "encode_pcm",
    "silence_code",
]


def silence_code(encoding: str) -> int:
    """The G.711 code that decodes to (nearest) zero, for padding and silence."""
    try:
        return SILENCE_CODES[encoding]
    except KeyError:
        raise ValueError(f"{encoding!r} is not a G.711 encoding (mulaw, alaw)") from None


def decode_codes(codes: np.ndarray | bytes, encoding: str) -> np.ndarray:
    """G.711 codes (uint8 array of any shape, or bytes) to int16 ``(n, 1)``."""
    raw = codes if isinstance(codes, bytes) else np.ascontiguousarray(codes).tobytes()
    if encoding == "mulaw":
        return mulaw_decode(raw).reshape(-1, 1)
    if encoding == "alaw":
        return alaw_decode(raw).reshape(-1, 1)
    raise ValueError(f"{encoding!r} is not a G.711 encoding (mulaw, alaw)")


def encode_pcm(pcm: np.ndarray, encoding: str) -> np.ndarray:
    """Mono int16 ``(n,)`` or ``(n, 1)`` to G.711 codes, uint8 ``(n, 1)``."""
    if encoding == "mulaw":
        raw = mulaw_encode(pcm)
    elif encoding == "alaw":
        raw = alaw_encode(pcm)
    else:
        raise ValueError(f"{encoding!r} is not a G.711 encoding (mulaw, alaw)")
    out = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1)
    out.setflags(write=False)  # over immutable bytes: read-only already
    return out


def encode_frame(frame: AudioFrame, encoding: Encoding) -> AudioFrame:
    """A mono int16 frame as the same frame in G.711 ``encoding`` (pts, padding kept)."""
    return build_frame(
        encode_pcm(frame.pcm, encoding), frame.sample_rate, frame.pts, frame.padded, encoding
    )


class FrameConverter(Protocol):
    """What the convert actor drives: ``push`` a chunk, ``flush`` at a segment end."""

    def push(self, pcm: np.ndarray) -> list[AudioFrame]: ...

    def flush(self) -> list[AudioFrame]: ...


class CodeFramer:
    """Cuts a G.711 stream into exact frames of ``frame_ms``, codes untouched.

    A thin use of :class:`~voxtrio.codecs.audio.Reframer`, which frames G.711 formats
    itself (same grid: frame ``k`` of a segment covers samples
    ``[floor(k*S), floor((k+1)*S))``; a segment starts at construction and after every
    :meth:`flush`). What this adds is the G.711 contract: PCM formats are refused, and
    :meth:`flush` emits what waits short (never padded). ``pts`` count samples and
    continue across segments (:attr:`next_pts` may be moved forward by the owner,
    e.g. to skip audio it discarded).

    Not thread-safe; one owner at a time.
    """

    __slots__ = ("_framer",)

    def __init__(self, fmt: AudioFormat, frame_ms: FrameMs = 20) -> None:
        if not isinstance(fmt, AudioFormat) or fmt.is_pcm:
            raise ValueError(f"CodeFramer frames G.711 (mulaw, alaw) audio, got {fmt!r}")
        self._framer = Reframer(fmt, frame_ms)

    @property
    def format(self) -> AudioFormat:
        """The format of the frames (and of the codes pushed)."""
        return self._framer.format

    @property
    def pending_samples(self) -> int:
        """Samples held back, waiting for the rest of their frame."""
        return self._framer.pending_samples

    @property
    def next_pts(self) -> int:
        """The pts the next emitted frame will carry."""
        return self._framer.next_pts

    @next_pts.setter
    def next_pts(self, pts: int) -> None:
        """Move forward to ``pts``, as :meth:`restart_at`: what is held is dropped and
        a new segment starts there (the way to skip audio the owner discarded).

        Raises:
            ValueError: ``pts`` before :attr:`next_pts` (pts never go back).
        """
        if pts < self._framer.next_pts:
            raise ValueError(f"next_pts only moves forward: {pts} < {self._framer.next_pts}")
        self._framer.restart_at(pts)

    def push(self, pcm: np.ndarray | bytes) -> list[AudioFrame]:
        """Add codes (bytes, or a uint8 array ``(n,)``/``(n, 1)``); returns the
        frames they complete, in order."""
        return self._framer.push(pcm)

    def flush(self) -> list[AudioFrame]:
        """Emit what is held as one short frame (none if nothing is) and start a
        new segment where it ended."""
        return self._framer.flush(pad=False)

    def discard(self) -> None:
        """Forget what is held and start a new segment at :attr:`next_pts`."""
        self._framer.discard()

    def restart_at(self, pts: int) -> None:
        """Start a new segment at ``pts`` (not before :attr:`next_pts`), dropping
        what is held."""
        self._framer.restart_at(pts)


class StreamConverter:
    """``source`` audio in, exact ``target`` frames of ``frame_ms`` out, for any
    pair of PCM and G.711 formats.

    Same G.711 format on both sides: a :class:`CodeFramer`, nothing decoded or
    resampled (the codes reach the frames byte for byte). Otherwise: G.711 input is
    decoded, the PCM :class:`~voxtrio.codecs.convert.Converter` does channels, rate
    and framing, and a G.711 target has each frame encoded.

    Raises:
        ValueError: an unsupported channel mapping (see ``Converter``).
    """

    __slots__ = ("_decode", "_encode", "_inner", "passthrough", "source", "target")

    def __init__(self, source: AudioFormat, target: AudioFormat, frame_ms: FrameMs = 20) -> None:
        self.source = source
        self.target = target
        self.passthrough = source == target and not target.is_pcm
        self._decode = None if source.is_pcm else source.encoding
        self._encode = None if target.is_pcm else target.encoding
        self._inner: CodeFramer | Converter
        if self.passthrough:
            self._inner = CodeFramer(target, frame_ms)
        else:
            pcm_source = AudioFormat(source.sample_rate, source.channels)
            pcm_target = AudioFormat(target.sample_rate, target.channels)
            self._inner = Converter(pcm_source, pcm_target, frame_ms)

    def push(self, pcm: np.ndarray) -> list[AudioFrame]:
        """Convert one chunk (int16 for a PCM source, uint8 codes for G.711)."""
        if self.passthrough:
            return self._inner.push(pcm)
        if self._decode is not None:
            pcm = decode_codes(pcm, self._decode)
        return self._encoded(self._inner.push(pcm))

    def flush(self) -> list[AudioFrame]:
        """End the segment: everything held comes out (the last frame short)."""
        return self._encoded(self._inner.flush())

    def _encoded(self, frames: list[AudioFrame]) -> list[AudioFrame]:
        enc = self._encode
        if enc is None or self.passthrough:
            return frames
        return [encode_frame(f, enc) for f in frames]


def make_converter(source: AudioFormat, target: AudioFormat, frame_ms: FrameMs) -> FrameConverter:
    """The cheapest converter for the pair: the plain PCM ``Converter`` when both
    are PCM (the hot path as it always was), else a :class:`StreamConverter`."""
    if source.is_pcm and target.is_pcm:
        return Converter(source, target, frame_ms)
    return StreamConverter(source, target, frame_ms)
