"""Framing maths: downmix, upmix and the exact :class:`Reframer`.

Everything here is pure and synchronous. The one rule this module exists for: a
stream of ``sample_rate`` Hz cut into ``frame_ms`` frames has an ideal frame size of
``S = sample_rate * frame_ms / 1000`` samples, an exact fraction. Frame ``k`` of a
segment covers samples ``[floor(k*S), floor((k+1)*S))`` of that segment, so frame
sizes differ from ``S`` by less than one sample and their sum never drifts
(11 025 Hz at 20 ms alternates 220 and 221 samples).

:class:`Reframer` frames G.711 streams too: for a ``mulaw``/``alaw`` format it cuts the
uint8 codes on the same grid, untouched (never decoded), and its frames carry the
encoding.

The framing math is done in integers (``S = num / den``) so the per-frame hot path
never touches :class:`fractions.Fraction`. The formats and frames themselves live on
the ground floor, :mod:`voxtrio.audio`, and are re-exported here.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import numpy as np

from ..audio import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioFormat,
    AudioFrame,
    FrameMs,
    PcmInput,
    as_pcm,
    build_frame,
    concat_frames,
    frame_fraction,
)

__all__ = [
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "AudioFormat",
    "AudioFrame",
    "FrameMs",
    "PcmInput",
    "Reframer",
    "as_pcm",
    "concat_frames",
    "downmix",
    "frame_fraction",
    "upmix",
]


_ONES_PAIR: Final = np.ones((2, 1), dtype=np.float32)


def downmix(pcm: np.ndarray) -> np.ndarray:
    """Average all channels into one, returning shape ``(samples, 1)``.

    int16 input gives int16 output: the exact mean rounded to nearest, ties away from
    zero (never overflows, even at full scale); float input gives float32 (the float64
    mean, rounded once). A 1-D array is mono already and is
    returned as ``(samples, 1)``.
    """
    if pcm.ndim == 1:
        return pcm.reshape(-1, 1)
    if pcm.ndim != 2:
        raise ValueError(f"downmix takes (samples, channels), got shape {pcm.shape}")
    if pcm.shape[1] == 1:
        return pcm
    n = pcm.shape[1]
    if pcm.dtype == np.int16:
        # Exact integer sum, then the mean rounded half away from zero (-1.5 -> -2,
        # 1.5 -> 2); the mean of int16 values always fits int16.
        if n == 2:
            # Fast path (~5x faster than an integer sum(axis=1) on 20 ms blocks): the
            # sum t = L + R as a float32 matrix product is exact (|t| <= 65536 < 2**24),
            # and t - trunc(t / 2) is t / 2 rounded half away from zero, exactly.
            total: np.ndarray = pcm.dot(_ONES_PAIR)
            half = total * np.float32(0.5)
            np.trunc(half, out=half)
            total -= half
            return total.astype(np.int16)
        total = pcm.sum(axis=1, dtype=np.int32)
        rounded: np.ndarray = (np.abs(total) + n // 2) // n
        np.negative(rounded, out=rounded, where=total < 0)
        return rounded.astype(np.int16).reshape(-1, 1)
    if pcm.dtype.kind != "f":
        raise ValueError(f"downmix takes int16 or float PCM, got {pcm.dtype}")
    if n == 2:  # the float64 mean of two columns, without the slow axis-1 reduction
        mean: np.ndarray = pcm[:, 0].astype(np.float64)
        mean += pcm[:, 1]
        mean *= 0.5
        return mean.astype(np.float32).reshape(-1, 1)
    means: np.ndarray = pcm.mean(axis=1, dtype=np.float64)
    return means.astype(np.float32).reshape(-1, 1)


def upmix(pcm: np.ndarray, channels: int) -> np.ndarray:
    """Copy mono into ``channels`` identical channels, shape ``(samples, channels)``."""
    if (
        isinstance(channels, bool)
        or not isinstance(channels, int)
        or not 1 <= channels <= MAX_CHANNELS
    ):
        raise ValueError(f"channels must be an int in 1..{MAX_CHANNELS}, got {channels!r}")
    mono = pcm.reshape(-1, 1) if pcm.ndim == 1 else pcm
    if mono.ndim != 2 or mono.shape[1] != 1:
        raise ValueError(f"upmix takes mono PCM, got shape {pcm.shape}")
    return np.repeat(mono, channels, axis=1)


_EMPTY_BYTES = b""
_INT16: Final = np.dtype(np.int16)
_UINT8: Final = np.dtype(np.uint8)
#: The G.711 code of a zero sample (mu-law's positive zero, A-law's smallest positive
#: level): what a padded G.711 frame is filled with.
SILENCE_CODES: Final = {"mulaw": 0xFF, "alaw": 0xD5}
_BYTES_TYPES: Final = (bytes, bytearray, memoryview)


class Reframer:
    """Cuts a PCM or G.711 stream into exact frames of ``frame_ms``.

    Frame ``k`` of a segment covers samples ``[floor(k*S), floor((k+1)*S))`` of the
    segment, ``S = sample_rate * frame_ms / 1000``. A segment starts at construction
    and after every :meth:`flush` or :meth:`reframe`. ``pts`` counts samples since the
    start of the stream and continues across segments.

    Input that does not fill a frame (or, for bytes, a whole sample) is carried to the
    next push, never dropped; :meth:`flush` emits it.

    The format's encoding is carried through: for ``pcm16`` the samples are int16
    ``(samples, channels)``; for ``mulaw``/``alaw`` they are the uint8 codes
    ``(samples, 1)``, framed byte for byte and never decoded, and every frame carries
    that ``encoding``.

    Not thread-safe; one owner at a time.
    """

    __slots__ = (
        "_bytes_tail",
        "_den",
        "_dtype",
        "_enc",
        "_fmt",
        "_frame_ms",
        "_k",
        "_need",
        "_next_pts",
        "_num",
        "_pending",
        "_pending_len",
        "_rate",
        "_seg_pts",
        "_size",
        "_width",
        "_wire",
    )

    # State: the current segment started at pts ``_seg_pts``; ``_next_pts`` is the pts
    # of the frame being filled, so ``_next_pts - _seg_pts == floor(k*S)``; ``_need``
    # is that frame's size ``floor((k+1)*S) - floor(k*S)``. ``_k`` (frames emitted in
    # the segment) is kept only when ``S`` is fractional: with an integer ``S`` every
    # frame has ``S`` samples and the hot path skips the floor arithmetic.
    # ``_pending`` holds the ``_pending_len`` samples of the frame being filled, as
    # read-only pieces that are joined only once a whole frame is there.

    def __init__(self, fmt: AudioFormat, frame_ms: FrameMs = 20) -> None:
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._bytes_tail = _EMPTY_BYTES
        self._next_pts = 0
        self._configure(fmt, frame_ms)

    def _configure(self, fmt: AudioFormat, frame_ms: FrameMs) -> None:
        """Start a new segment at ``_next_pts`` with this format and frame length."""
        size = frame_fraction(fmt.sample_rate, frame_ms)
        self._fmt = fmt
        self._enc = fmt.encoding
        # What a sample is: int16 PCM (little-endian on the wire) or a uint8 G.711 code.
        self._dtype = _INT16 if fmt.is_pcm else _UINT8
        self._wire = "<i2" if fmt.is_pcm else "u1"
        self._width = fmt.sample_width  # bytes per sample of one channel
        self._rate = fmt.sample_rate
        self._frame_ms = frame_ms
        self._size = size
        self._num = size.numerator
        self._den = size.denominator
        self._start_segment()

    def _start_segment(self) -> None:
        self._seg_pts = self._next_pts
        self._k = 0
        self._need = self._num // self._den

    @property
    def format(self) -> AudioFormat:
        """The format of the frames this reframer emits (and of the PCM it accepts)."""
        return self._fmt

    @property
    def frame_ms(self) -> FrameMs:
        """The duration, in milliseconds, of every emitted frame."""
        return self._frame_ms

    @property
    def frame_size(self) -> Fraction:
        """The exact ideal frame size ``S`` in samples."""
        return self._size

    @property
    def next_pts(self) -> int:
        """The pts the next emitted frame will carry."""
        return self._next_pts

    @property
    def pending_samples(self) -> int:
        """Samples held back, waiting for the rest of their frame."""
        return self._pending_len

    def next_frame_samples(self) -> int:
        """Size in samples of the frame currently being filled."""
        return self._need

    def push(self, pcm: PcmInput) -> list[AudioFrame]:
        """Add PCM (or G.711 codes) and return every frame it completes.

        Args:
            pcm: ``(samples, channels)`` int16, 1-D int16 for mono, or interleaved
                little-endian int16 bytes (a partial trailing sample is kept for the
                next push). For a G.711 format: the codes as bytes or a uint8 array
                (``(n,)``, ``(n, 1)``; any other shape is read as its flat C-order
                sequence). Arrays are copied: the caller may reuse its buffer.

        Raises:
            ValueError: wrong dtype, channel count or dimensionality.
        """
        channels = self._fmt.channels
        # Fast path first: a native int16 (or, for G.711, uint8) (samples, channels) array.
        if (
            type(pcm) is np.ndarray
            and pcm.dtype is self._dtype
            and pcm.ndim == 2
            and pcm.shape[1] == channels
        ):
            if not pcm.shape[0]:
                return []
            arr = pcm.copy()  # C-contiguous, ours alone
        elif isinstance(pcm, _BYTES_TYPES):
            raw = pcm if type(pcm) is bytes else bytes(memoryview(pcm).cast("B"))
            if self._bytes_tail:
                raw = self._bytes_tail + raw
            width = self._width
            stride = width * channels
            cut = len(raw) - len(raw) % stride
            self._bytes_tail = raw[cut:]
            if not cut:
                return []
            # frombuffer over immutable bytes: already read-only, no copy needed.
            arr = np.frombuffer(raw, dtype=self._wire, count=cut // width)
            arr = arr.reshape(-1, channels)
            if arr.dtype is not self._dtype:  # big-endian host
                arr = arr.astype(self._dtype)
        elif self._dtype is _UINT8:
            if not isinstance(pcm, np.ndarray) or pcm.dtype != np.uint8:
                raise ValueError(
                    f"{self._enc} codes are uint8 (bytes or a uint8 array), got "
                    f"{getattr(pcm, 'dtype', type(pcm).__name__)}"
                )
            if not pcm.size:
                return []
            arr = pcm.reshape(-1, 1).copy()  # C order, ours alone
        else:
            arr = as_pcm(pcm, channels)
            if not arr.shape[0]:
                return []
            arr = arr.copy()  # the caller may reuse its buffer
        return self.push_owned(arr)

    def push_owned(self, arr: np.ndarray) -> list[AudioFrame]:
        """Cut ``arr``, taking ownership of it: the hot path for the other codecs.

        ``arr`` must be a ``(samples, channels)`` int16 array of this format (uint8
        ``(samples, 1)`` codes for G.711) that nobody else holds or will write to
        (e.g. freshly computed); it may be empty.
        No validation and no copy; the frames are read-only views of it (or of its
        concatenation with what was pending).

        This is the per-frame hot path (see ``benchmarks/bench_codecs.py``): it keeps
        attribute traffic and Python calls to a minimum, builds frames with
        :func:`voxtrio.audio.build_frame`, and for an integer ``S`` skips the floor arithmetic.
        """
        pending = self._pending
        need = self._need
        if pending:
            total = self._pending_len + arr.shape[0]
            if total < need:  # still no whole frame: keep the pieces, join them later
                if arr.shape[0]:
                    arr.setflags(write=False)
                    pending.append(arr)
                    self._pending_len = total
                return []
            pending.append(arr)
            buf = np.concatenate(pending)
        else:
            buf = arr
            total = arr.shape[0]
            if total < need:
                if total:
                    arr.setflags(write=False)
                    self._pending = [arr]
                    self._pending_len = total
                return []
        buf.setflags(write=False)
        rate = self._rate
        enc = self._enc
        pts = self._next_pts
        frames: list[AudioFrame] = []
        offset = 0
        if self._den == 1:
            # Integer S: frame k is [k*S, (k+1)*S), every frame has `need` samples.
            while offset + need <= total:
                frames.append(build_frame(buf[offset : offset + need], rate, pts + offset, 0, enc))
                offset += need
        else:
            num = self._num
            den = self._den
            k = self._k
            emitted = pts - self._seg_pts  # floor(k*S)
            while offset + need <= total:
                frames.append(build_frame(buf[offset : offset + need], rate, pts + offset, 0, enc))
                offset += need
                emitted += need
                k += 1
                need = (k + 1) * num // den - emitted
            self._k = k
            self._need = need
        self._next_pts = pts + offset
        rest = total - offset
        self._pending_len = rest
        self._pending = [buf[offset:]] if rest else []
        return frames

    def flush(self, pad: bool = True) -> list[AudioFrame]:
        """Emit everything held back and end the segment.

        Args:
            pad: zero-pad the last partial frame to its full size (``padded`` tells
                how many samples were added; G.711 is padded with the code of zero,
                :data:`SILENCE_CODES`); if False it is emitted short.

        Returns:
            At most one frame. A partial trailing sample of bytes input cannot be
            represented and is discarded here (it is not audio yet).

        The next frame starts a new segment at the pts where this one ended (padding
        included), so the frame grid restarts there.
        """
        self._bytes_tail = _EMPTY_BYTES
        frames: list[AudioFrame] = []
        if self._pending_len:
            pending = self._pending
            buf = pending[0] if len(pending) == 1 else np.concatenate(pending)
            padded = 0
            if pad:
                padded = self._need - buf.shape[0]  # > 0: a whole frame is never held
                if self._dtype is _INT16:
                    zeros = np.zeros((padded, self._fmt.channels), dtype=np.int16)
                else:
                    zeros = np.full((padded, 1), SILENCE_CODES[self._enc], dtype=np.uint8)
                buf = np.concatenate([buf, zeros])
            if buf.flags.writeable:
                buf.setflags(write=False)
            frames.append(build_frame(buf, self._rate, self._next_pts, padded, self._enc))
            self._next_pts += buf.shape[0]
        self._pending = []
        self._pending_len = 0
        self._start_segment()
        return frames

    def discard(self) -> None:
        """Drop everything held (nothing is emitted) and start a new segment at
        :attr:`next_pts`: the dropped samples never get a pts."""
        self._bytes_tail = _EMPTY_BYTES
        self._pending = []
        self._pending_len = 0
        self._start_segment()

    def restart_at(self, pts: int) -> None:
        """Drop everything held and start a new segment at ``pts``, or at
        :attr:`next_pts` if that is later (pts never go back): e.g. to skip over
        audio the owner discarded."""
        self._next_pts = max(self._next_pts, pts)
        self.discard()

    def reframe(self, fmt: AudioFormat, frame_ms: FrameMs = 20) -> list[AudioFrame]:
        """Drain the current framing, then switch to ``fmt`` and ``frame_ms``.

        This is the runtime's ``reframe_audio_track``: what the old framing holds comes
        out first, as a short last frame in the old format (never padded, so nothing
        is invented), and later pushes are in the new format.

        Time keeps increasing across the switch: if the old stream ended at ``pts_old``
        samples of ``old_rate``, the new stream starts at
        ``ceil(pts_old * new_rate / old_rate)`` samples of ``new_rate`` -- the first
        new sample instant not before the end of the old audio.

        Raises:
            ValueError: invalid ``fmt`` or ``frame_ms``; the framer is unchanged then.
        """
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        frame_fraction(fmt.sample_rate, frame_ms)  # validate before draining
        frames = self.flush(pad=False)
        old_rate = self._fmt.sample_rate
        self._next_pts = -(-self._next_pts * fmt.sample_rate // old_rate)
        self._configure(fmt, frame_ms)
        return frames

    def __repr__(self) -> str:
        return (
            f"Reframer(fmt={self._fmt!r}, frame_ms={self._frame_ms!r}, "
            f"next_pts={self.next_pts}, pending_samples={self._pending_len})"
        )
