"""The ground floor: audio formats and frames. Imports nothing of voxtrio's.

:class:`AudioFormat` says what a PCM stream is, :class:`AudioFrame` is one immutable
block of it with its position (``pts``, counted in samples). :func:`frame_fraction` is
the exact ideal frame size every framing rule is stated in. The vocabulary
(:mod:`voxtrio.messages`) and the codecs (:mod:`voxtrio.codecs`) both stand on this
module; the framing and resampling maths live in the codecs.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Final, Literal, TypeAlias, get_args

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "AudioFormat",
    "ENCODINGS",
    "AudioFrame",
    "Encoding",
    "FrameMs",
    "Int16Array",
    "PcmInput",
    "as_pcm",
    "build_frame",
    "concat_frames",
    "frame_fraction",
    "freeze",
    "pcm_equal",
]

MIN_SAMPLE_RATE: Final = 8_000
MAX_SAMPLE_RATE: Final = 384_000
MAX_CHANNELS: Final = 64
_SUPPORTED_WIDTHS: Final = (2,)

#: What one sample of a stream is: 16-bit linear PCM, or a G.711 code (one byte).
Encoding: TypeAlias = Literal["pcm16", "mulaw", "alaw"]
#: Every :data:`Encoding`, the default first.
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)
#: Bytes per sample (per channel) of each encoding.
_WIDTHS: Final[dict[str, int]] = {"pcm16": 2, "mulaw": 1, "alaw": 1}

#: A frame length in milliseconds: an int, a float or an exact Fraction.
FrameMs: TypeAlias = int | float | Fraction
#: What the codecs accept as PCM: a ``(samples, channels)`` or mono 1-D int16 array, or
#: interleaved little-endian int16 bytes.
PcmInput: TypeAlias = "npt.NDArray[np.int16] | bytes | bytearray | memoryview"

Int16Array: TypeAlias = "npt.NDArray[np.int16]"


def check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate must be an int in Hz, got {sample_rate!r}")
    rate = int(sample_rate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate {rate} Hz is outside the supported range "
            f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    return rate


def _validate_rate(_inst: object, _attr: object, value: int) -> None:
    check_rate(value)


def _validate_channels(_inst: object, _attr: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHANNELS:
        raise ValueError(f"channels must be an int in 1..{MAX_CHANNELS}, got {value!r}")


def _validate_width(inst: object, _attr: object, value: int) -> None:
    encoding = getattr(inst, "encoding", "pcm16")
    if encoding != "pcm16":
        if value != 1 or isinstance(value, bool):
            raise ValueError(
                f"sample_width {value!r} does not fit encoding {encoding!r}: G.711 is one "
                "byte per sample (sample_width=1)"
            )
        return
    if value not in _SUPPORTED_WIDTHS or isinstance(value, bool):
        raise ValueError(
            f"sample_width {value!r} bytes is not supported; voxtrio handles 16-bit PCM "
            "(sample_width=2)"
        )


def check_encoding(encoding: object) -> Encoding:
    """``encoding`` if it is one of :data:`ENCODINGS`, else a clear ``ValueError``."""
    if not isinstance(encoding, str) or encoding not in _WIDTHS:
        raise ValueError(
            f"encoding must be one of {', '.join(map(repr, ENCODINGS))}, got {encoding!r}"
        )
    return encoding  # type: ignore[return-value]


def _validate_encoding(_inst: object, _attr: object, value: str) -> None:
    check_encoding(value)


@attrs.frozen
class AudioFormat:
    """The shape of an audio stream: its rate, channels and sample encoding.

    ``pcm16`` (the default) is signed 16-bit little-endian PCM, interleaved; ``mulaw``
    and ``alaw`` are ITU-T G.711 codes, one byte per sample, mono (a telephone call:
    ``AudioFormat(8000, encoding="mulaw")``).

    Args:
        sample_rate: samples per second per channel, 8 000 .. 384 000 Hz.
        channels: interleaved channels, 1 .. 64 (1 for G.711).
        sample_width: bytes per sample per channel; the encoding's own width by
            default (2 for ``pcm16``, 1 for G.711), and nothing else is accepted.
        encoding: ``"pcm16"``, ``"mulaw"`` or ``"alaw"`` (keyword-only).

    Raises:
        ValueError: for a rate, channel count, width or encoding outside those.
    """

    sample_rate: int = attrs.field(validator=_validate_rate)
    channels: int = attrs.field(default=1, validator=_validate_channels)
    # Keyword-only, and set before sample_width so that its default can follow it.
    encoding: Encoding = attrs.field(default="pcm16", validator=_validate_encoding, kw_only=True)
    sample_width: int = attrs.field(
        default=attrs.Factory(lambda self: _WIDTHS.get(self.encoding, 2), takes_self=True),
        validator=_validate_width,
    )

    def __attrs_post_init__(self) -> None:
        if self.encoding != "pcm16" and self.channels != 1:
            raise ValueError(f"{self.encoding} audio is mono; got channels={self.channels}")

    @property
    def is_pcm(self) -> bool:
        """True for 16-bit linear PCM, False for a G.711 encoding."""
        return self.encoding == "pcm16"

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one sample across all channels (the interleaved stride)."""
        return self.channels * self.sample_width

    def bytes_in(self, samples: int) -> int:
        """Bytes that ``samples`` samples (per channel) take in this format."""
        return samples * self.bytes_per_sample

    def samples_in(self, duration_s: Fraction | float) -> int:
        """Whole samples (per channel) in ``duration_s`` seconds, rounded down."""
        return int(Fraction(duration_s) * self.sample_rate)


def frame_fraction(sample_rate: int, frame_ms: FrameMs) -> Fraction:
    """The exact ideal frame size in samples, ``sample_rate * frame_ms / 1000``.

    Floats are taken at their exact binary value limited to microsecond precision, so
    ``frame_ms=20.0`` is exactly 20 and ``frame_ms=2.5`` exactly 5/2.

    Raises:
        ValueError: if ``frame_ms`` is not a positive finite number or the frame would
            hold less than one sample.
    """
    if isinstance(frame_ms, bool) or not isinstance(frame_ms, int | float | Fraction):
        raise ValueError(f"frame_ms must be an int, float or Fraction, got {frame_ms!r}")
    if isinstance(frame_ms, float):
        if not np.isfinite(frame_ms):
            raise ValueError(f"frame_ms must be finite, got {frame_ms!r}")
        ms = Fraction(frame_ms).limit_denominator(1_000_000)
    else:
        ms = Fraction(frame_ms)
    if ms <= 0:
        raise ValueError(f"frame_ms must be > 0, got {frame_ms!r}")
    size = sample_rate * ms / 1000
    if size < 1:
        raise ValueError(f"a {frame_ms} ms frame at {sample_rate} Hz holds less than one sample")
    return size


def pcm_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


@attrs.frozen(eq=True)
class AudioFrame:
    """An immutable block of audio with its position in the stream.

    Attributes:
        pcm: int16 samples, shape ``(samples, channels)``, read-only; for a G.711
            ``encoding``, the codes as uint8, shape ``(samples, 1)``.
        sample_rate: Hz.
        pts: position of the first sample, counted in samples since the start of the
            stream (``time_base`` units).
        padded: zero samples appended at a final flush (they are the last ``padded``
            rows of ``pcm``); 0 otherwise.
        encoding: what ``pcm`` holds: ``"pcm16"`` (the default), ``"mulaw"`` or
            ``"alaw"`` (see :class:`AudioFormat`).

    The constructor checks its arguments (``ValueError``) and keeps a read-only view
    of ``pcm`` (no copy: the caller must not change the array afterwards; use
    :meth:`from_pcm` to copy, and to accept 1-D arrays or bytes). The codecs build
    their frames on the hot path without these checks, from data they validated.
    """

    pcm: Int16Array = attrs.field(eq=attrs.cmp_using(eq=pcm_equal), repr=False)
    sample_rate: int
    pts: int = 0
    padded: int = 0
    encoding: Encoding = "pcm16"

    def __attrs_post_init__(self) -> None:
        pcm = self.pcm
        if self.encoding != "pcm16":
            check_encoding(self.encoding)
            if not isinstance(pcm, np.ndarray) or pcm.dtype != np.uint8 or pcm.ndim != 2:
                raise ValueError(
                    f"a {self.encoding} frame holds its codes as a (samples, 1) uint8 array"
                )
            if pcm.shape[1] != 1:
                raise ValueError(f"{self.encoding} audio is mono; got {pcm.shape[1]} channels")
        elif not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 2:
            raise ValueError(
                "pcm must be a (samples, channels) int16 numpy array, got "
                + (
                    f"{pcm.dtype} with shape {pcm.shape}"
                    if isinstance(pcm, np.ndarray)
                    else type(pcm).__name__
                )
            )
        if not 1 <= pcm.shape[1] <= MAX_CHANNELS:
            raise ValueError(f"pcm has {pcm.shape[1]} channels; 1..{MAX_CHANNELS} supported")
        check_rate(self.sample_rate)
        for name, value in (("pts", self.pts), ("padded", self.padded)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.padded > pcm.shape[0]:
            raise ValueError(f"padded ({self.padded}) exceeds the frame's {pcm.shape[0]} samples")
        if pcm.flags.writeable:
            view = pcm.view()
            view.flags.writeable = False
            object.__setattr__(self, "pcm", view)

    @property
    def samples(self) -> int:
        """Samples per channel in this frame."""
        return int(self.pcm.shape[0])

    @property
    def channels(self) -> int:
        """Number of interleaved channels (the second axis of :attr:`pcm`)."""
        return int(self.pcm.shape[1])

    @property
    def format(self) -> AudioFormat:
        """The frame's :class:`AudioFormat`: its sample rate, channels and encoding."""
        return AudioFormat(self.sample_rate, self.channels, encoding=self.encoding)

    @property
    def time_base(self) -> Fraction:
        """Seconds per ``pts`` unit: ``1 / sample_rate``."""
        return Fraction(1, self.sample_rate)

    @property
    def duration(self) -> Fraction:
        """Exact length in seconds, padding included."""
        return Fraction(self.samples, self.sample_rate)

    @property
    def end_pts(self) -> int:
        """The pts just after this frame: where a contiguous next frame starts."""
        return self.pts + self.samples

    @property
    def time(self) -> Fraction:
        """Start time in seconds since the start of the stream."""
        return Fraction(self.pts, self.sample_rate)

    def to_bytes(self) -> bytes:
        """Interleaved little-endian int16 bytes (for G.711, the codes as they are)."""
        if self.encoding != "pcm16":
            return self.pcm.tobytes()
        return self.pcm.astype("<i2", copy=False).tobytes()

    def __repr__(self) -> str:
        return (
            f"AudioFrame(samples={self.samples}, channels={self.channels}, "
            f"sample_rate={self.sample_rate}, pts={self.pts}, padded={self.padded}"
            + ("" if self.encoding == "pcm16" else f", encoding={self.encoding!r}")
            + ")"
        )

    @classmethod
    def from_pcm(cls, pcm: PcmInput, fmt: AudioFormat, pts: int = 0) -> AudioFrame:
        """Validate and copy ``pcm`` into a new frame of format ``fmt``.

        For a G.711 ``fmt``, ``pcm`` is the codes: bytes, or a uint8 array of shape
        ``(n,)`` or ``(n, 1)``.

        Raises:
            ValueError: for a wrong dtype, shape, channel count, a partial sample in
                bytes input, or a negative pts.
        """
        if isinstance(pts, bool) or not isinstance(pts, int) or pts < 0:
            raise ValueError(f"pts must be a non-negative int, got {pts!r}")
        if isinstance(pcm, bytes | bytearray | memoryview):
            size = memoryview(pcm).nbytes
            if size % fmt.bytes_per_sample:
                raise ValueError(
                    f"{size} bytes is not a whole number of {fmt.bytes_per_sample}-byte samples"
                )
        if fmt.encoding != "pcm16":
            codes = _as_codes(pcm, fmt.encoding)
            return cls(freeze(codes), fmt.sample_rate, pts, 0, fmt.encoding)
        arr = as_pcm(pcm, fmt.channels).copy()  # never alias the caller's buffer
        return cls(freeze(arr), fmt.sample_rate, pts, 0)


def _as_codes(data: object, encoding: str) -> np.ndarray:
    """G.711 codes (bytes or a uint8 array) as a fresh ``(n, 1)`` uint8 array."""
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8).reshape(-1, 1).copy()
    if (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and (data.ndim == 1 or (data.ndim == 2 and data.shape[1] == 1))
    ):
        return data.reshape(-1, 1).copy()
    raise ValueError(
        f"{encoding} audio is one byte per sample: pass bytes or a uint8 array of shape "
        f"(n,) or (n, 1), got {getattr(data, 'dtype', type(data).__name__)}"
        f"{' with shape ' + str(data.shape) if isinstance(data, np.ndarray) else ''}"
    )


def freeze(arr: np.ndarray) -> np.ndarray:
    """Mark an array this module owns read-only, so a frame never changes under its
    holder. (``setflags`` is about twice as fast as assigning ``flags.writeable``.)"""
    arr.setflags(write=False)
    return arr


_object_new = object.__new__
_slots = AudioFrame.__dict__
_set_pcm = _slots["pcm"].__set__
_set_rate = _slots["sample_rate"].__set__
_set_pts = _slots["pts"].__set__
_set_padded = _slots["padded"].__set__
_set_encoding = _slots["encoding"].__set__
del _slots


def build_frame(
    pcm: np.ndarray, sample_rate: int, pts: int, padded: int, encoding: Encoding = "pcm16"
) -> AudioFrame:
    """``AudioFrame(pcm, sample_rate, pts, padded, encoding)`` for the codecs' hot path.

    Fills the slots directly instead of going through the frozen class's
    ``object.__setattr__`` calls: ~30% cheaper per frame. Only for data this module
    already validated; :class:`AudioFrame` has no validators or converters to skip
    (tests check that frames built both ways are equal).
    """
    frame: AudioFrame = _object_new(AudioFrame)
    _set_pcm(frame, pcm)
    _set_rate(frame, sample_rate)
    _set_pts(frame, pts)
    _set_padded(frame, padded)
    _set_encoding(frame, encoding)
    return frame


def as_pcm(pcm: PcmInput, channels: int) -> Int16Array:
    """Coerce user PCM to a C-contiguous ``(samples, channels)`` int16 array.

    Accepts a 2-D int16 array, a 1-D int16 array when ``channels == 1``, or interleaved
    little-endian int16 bytes (trailing bytes of a partial sample are ignored here;
    :class:`Reframer` carries them to the next push). The result may share memory with
    the input.

    Raises:
        ValueError: wrong dtype (floats are refused, not silently scaled), wrong
            channel count, or a 3-D or higher array.
    """
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = memoryview(pcm).cast("B")
        whole = len(raw) - len(raw) % (2 * channels)
        arr = np.frombuffer(raw[:whole], dtype="<i2").astype(np.int16, copy=False)
        return arr.reshape(-1, channels)
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"PCM must be a numpy int16 array or bytes, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        hint = ""
        if pcm.dtype.kind == "f":
            hint = " (convert floats in [-1, 1] with (x * 32767).astype(np.int16))"
            if pcm.size and not np.all(np.isfinite(pcm)):
                hint = " and it holds NaN or infinite values"
        raise ValueError(f"PCM must be int16, got {pcm.dtype}{hint}")
    if pcm.ndim == 1:
        if channels != 1:
            raise ValueError(
                f"a 1-D array is mono, but the format has {channels} channels; pass "
                "shape (samples, channels) for interleaved audio"
            )
        return pcm.reshape(-1, 1)
    if pcm.ndim != 2:
        raise ValueError(f"PCM must be 1-D or (samples, channels), got shape {pcm.shape}")
    if pcm.shape[1] != channels:
        hint = ""
        if pcm.shape[0] == channels:
            hint = "; the array looks transposed, pass shape (samples, channels)"
        raise ValueError(f"PCM has {pcm.shape[1]} channels but the format has {channels}{hint}")
    return np.ascontiguousarray(pcm)


def concat_frames(frames: Sequence[AudioFrame]) -> np.ndarray:
    """Concatenate frames' PCM, padding removed: for tests and sinks."""
    if not frames:
        return np.zeros((0, 1), dtype=np.int16)
    return np.concatenate([f.pcm[: f.samples - f.padded] for f in frames])
