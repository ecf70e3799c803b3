"""G.711 streams: framing the codes as they are, and converting to and from them.

A telephone call is 8 kHz G.711 (mu-law or A-law), and some providers take it as it
is (OpenAI Realtime's ``audio/pcmu`` and ``audio/pcma``). Then the codes must reach
the wire untouched: :class:`CodeFramer` cuts them into exact frames with the same
grid rule as :class:`~voxtrio.codecs.audio.Reframer` (frame ``k`` covers samples
``[floor(k*S), floor((k+1)*S))``) and never decodes, filters or resamples them.

:class:`StreamConverter` is the input conversion for any pair of formats: the pass-
through above when source and target are the same G.711 format; otherwise decode
(G.711 -> int16, exact table lookups), the PCM :class:`~voxtrio.codecs.convert.Converter`
(channels, streaming resampling, framing), and encode each frame (int16 -> G.711)
when the target is G.711.
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np

from ..audio import AudioFormat, AudioFrame, Encoding, FrameMs, build_frame, frame_fraction
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

#: The code of a zero sample: mu-law's positive zero, A-law's smallest positive level.
_SILENCE: Final = {"mulaw": 0xFF, "alaw": 0xD5}


def silence_code(encoding: str) -> int:
    """The G.711 code that decodes to (nearest) zero, for padding and silence."""
    try:
        return _SILENCE[encoding]
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

    The grid is the :class:`~voxtrio.codecs.audio.Reframer`'s: frame ``k`` of a
    segment covers samples ``[floor(k*S), floor((k+1)*S))``; a segment starts at
    construction and after every :meth:`flush`. What does not fill a frame waits for
    the next push; :meth:`flush` emits it short (never padded). ``pts`` count samples
    and continue across segments (:attr:`next_pts` may be moved forward by the owner,
    e.g. to skip audio it discarded).

    Not thread-safe; one owner at a time.
    """

    __slots__ = ("_den", "_enc", "_fmt", "_k", "_num", "_pending", "_rate", "_seg_pts", "next_pts")

    def __init__(self, fmt: AudioFormat, frame_ms: FrameMs = 20) -> None:
        if not isinstance(fmt, AudioFormat) or fmt.is_pcm:
            raise ValueError(f"CodeFramer frames G.711 (mulaw, alaw) audio, got {fmt!r}")
        size = frame_fraction(fmt.sample_rate, frame_ms)
        self._fmt = fmt
        self._enc = fmt.encoding
        self._rate = fmt.sample_rate
        self._num, self._den = size.numerator, size.denominator
        self._pending = b""
        self.next_pts = 0
        self._seg_pts = 0
        self._k = 0

    @property
    def format(self) -> AudioFormat:
        """The format of the frames (and of the codes pushed)."""
        return self._fmt

    @property
    def pending_samples(self) -> int:
        """Samples held back, waiting for the rest of their frame."""
        return len(self._pending)

    def push(self, pcm: np.ndarray | bytes) -> list[AudioFrame]:
        """Add codes (bytes, or a uint8 array ``(n,)``/``(n, 1)``); returns the
        frames they complete, in order."""
        if isinstance(pcm, np.ndarray):
            if pcm.dtype != np.uint8:
                raise ValueError(f"{self._enc} codes are uint8, got {pcm.dtype}")
            data = np.ascontiguousarray(pcm).tobytes()
        else:
            data = bytes(pcm)
        buf = self._pending + data if self._pending else data
        frames: list[AudioFrame] = []
        offset = 0
        num, den, k = self._num, self._den, self._k
        emitted = self.next_pts - self._seg_pts  # floor(k*S) samples of this segment
        while True:
            need = (k + 1) * num // den - emitted
            if len(buf) - offset < need:
                break
            frames.append(self._frame(buf[offset : offset + need], self.next_pts, 0))
            offset += need
            emitted += need
            self.next_pts += need
            k += 1
        self._k = k
        self._pending = buf[offset:]
        return frames

    def flush(self) -> list[AudioFrame]:
        """Emit what is held as one short frame (none if nothing is) and start a
        new segment where it ended."""
        frames = []
        if self._pending:
            frames.append(self._frame(self._pending, self.next_pts, 0))
            self.next_pts += len(self._pending)
        self.discard()
        return frames

    def discard(self) -> None:
        """Forget what is held and start a new segment at :attr:`next_pts`."""
        self._pending = b""
        self._seg_pts = self.next_pts
        self._k = 0

    def restart_at(self, pts: int) -> None:
        """Start a new segment at ``pts`` (not before :attr:`next_pts`), dropping
        what is held."""
        self.next_pts = max(self.next_pts, pts)
        self.discard()

    def _frame(self, codes: bytes, pts: int, padded: int) -> AudioFrame:
        arr = np.frombuffer(codes, dtype=np.uint8).reshape(-1, 1)  # read-only view
        return build_frame(arr, self._rate, pts, padded, self._enc)


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
