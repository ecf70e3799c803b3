"""G.711 companding: mu-law and A-law, int16 PCM to one byte per sample and back.

Pure numpy, exact to ITU-T G.711 as the telephony world (and CPython's old ``audioop``)
applies it to 16-bit PCM: mu-law quantises the top 14 bits of each sample, A-law the top
13, both taking the sample shifted right arithmetically (towards minus infinity), so
``-1`` lands in the negative half of the smallest step.

Every conversion is a single table lookup per sample, vectorised: the four tables are
built once, at import, by vectorised arithmetic over all 65,536 int16 values and all
256 codes (about 130 kB in total), so no call ever loops in Python per sample.

Laws, in 16-bit units:

- mu-law: the biased magnitude ``min(|x >> 2| + 33, 8191)`` falls in segment ``s``
  (``2**(s+5) <= biased < 2**(s+6)``); four mantissa bits follow; the byte is the
  sign/segment/mantissa word with every bit inverted. Decoded levels are the midpoints
  ``((m << 3) + 132) << s) - 132``, so 0, 8, 16, ... up to 32,124; ``0xFF`` and ``0x7F``
  both decode to 0.
- A-law: the 13-bit magnitude (ones' complement for negatives) falls in segment 0 below
  32, else in segment ``floor(log2(m)) - 4``; the byte has its even bits inverted
  (XOR ``0x55``). There is no zero level: decoded values are ``+-8, +-24, ...`` up to
  ``+-32,256``.
"""

from __future__ import annotations

from typing import Final, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["alaw_decode", "alaw_encode", "mulaw_decode", "mulaw_encode"]

Int16Array: TypeAlias = "npt.NDArray[np.int16]"
#: What the decoders accept: G.711 bytes, one per sample.
G711Bytes: TypeAlias = "bytes | bytearray | memoryview"

_MULAW_BIAS: Final = 33  # 0x84 in 16-bit units, shifted to 14 bits
_MULAW_TOP: Final = 0x1FFF  # biased magnitudes above it clip to the last level
_INT16: Final = np.dtype(np.int16)


def _segment(value: npt.NDArray[np.int32], bottom: int) -> npt.NDArray[np.int32]:
    """Index of the highest set bit of ``value`` above bit ``bottom`` (0 below it).

    ``value`` must be positive and below ``2**(bottom + 8)``; the result is 0..7.
    """
    seg = np.zeros(value.shape, dtype=np.int32)
    for bit in range(1, 8):  # 7 vectorised passes over the whole table, at import only
        seg[value >= (1 << (bottom + bit))] = bit
    return seg


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its uint16 bit pattern (the encode table's index)."""
    return np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_mulaw_encode() -> npt.NDArray[np.uint8]:
    x14 = _all_int16() >> 2  # arithmetic shift: -1 stays -1
    negative = x14 < 0
    biased = np.minimum(np.abs(x14) + _MULAW_BIAS, _MULAW_TOP)  # 33 ..= 8191
    seg = _segment(biased, 5)
    mantissa = (biased >> (seg + 1)) & 0x0F
    word = (seg << 4) | mantissa
    table: npt.NDArray[np.uint8] = (word ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8)
    return table


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x13 = _all_int16() >> 3
    negative = x13 < 0
    magnitude = np.where(negative, -x13 - 1, x13)  # 0 ..= 4095
    seg = _segment(magnitude, 4)
    mantissa = (magnitude >> np.maximum(seg, 1)) & 0x0F
    word = (seg << 4) | mantissa
    table: npt.NDArray[np.uint8] = (word ^ np.where(negative, 0x55, 0xD5)).astype(np.uint8)
    return table


def _build_mulaw_decode() -> npt.NDArray[np.int16]:
    word = ~np.arange(256, dtype=np.int32) & 0xFF
    seg = (word >> 4) & 0x07
    level = (((word & 0x0F) << 3) + 0x84) << seg
    table: npt.NDArray[np.int16] = np.where(word & 0x80, 0x84 - level, level - 0x84).astype(
        np.int16
    )
    return table


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    word = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (word >> 4) & 0x07
    level = ((word & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    level = level << np.maximum(seg - 1, 0)
    table: npt.NDArray[np.int16] = np.where(word & 0x80, level, -level).astype(np.int16)
    return table


_MULAW_ENCODE: Final = _build_mulaw_encode()
_ALAW_ENCODE: Final = _build_alaw_encode()
_MULAW_DECODE: Final = _build_mulaw_decode()
_ALAW_DECODE: Final = _build_alaw_decode()
for _table in (_MULAW_ENCODE, _ALAW_ENCODE, _MULAW_DECODE, _ALAW_DECODE):
    _table.flags.writeable = False
del _table


def _as_mono_int16(pcm: object, law: str) -> Int16Array:
    if not isinstance(pcm, np.ndarray):
        raise TypeError(
            f"{law}_encode takes an int16 numpy array of shape (n,) or (n, 1), "
            f"got {type(pcm).__name__}"
        )
    if pcm.dtype != _INT16:
        raise TypeError(
            f"{law}_encode takes native-endian int16 PCM, got dtype {pcm.dtype}; "
            "convert it first (e.g. voxtrio.codecs.as_pcm or StreamResampler output)"
        )
    if pcm.ndim == 2 and pcm.shape[1] == 1:
        return pcm[:, 0]
    if pcm.ndim == 1:
        return pcm
    if pcm.ndim == 2:
        raise ValueError(
            f"{law}_encode takes mono PCM, got {pcm.shape[1]} channels (shape {pcm.shape}); "
            "downmix it first (voxtrio.codecs.downmix)"
        )
    raise ValueError(f"{law}_encode takes shape (n,) or (n, 1), got shape {pcm.shape}")


def _as_codes(data: object, law: str) -> npt.NDArray[np.uint8]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"{law}_decode takes bytes, bytearray or memoryview, got {type(data).__name__}"
        )
    view = memoryview(data)
    if view.itemsize != 1:
        raise TypeError(
            f"{law}_decode takes one byte per sample, got a memoryview of "
            f"{view.itemsize}-byte items (format {view.format!r})"
        )
    if not view.c_contiguous:
        raise ValueError(f"{law}_decode needs a contiguous buffer")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def mulaw_encode(pcm: Int16Array) -> bytes:
    """Encode int16 PCM to G.711 mu-law, one byte per sample.

    Args:
        pcm: mono int16 samples, shape ``(n,)`` or ``(n, 1)``; any strides.

    Returns:
        ``n`` bytes, equal to ``audioop.lin2ulaw(pcm.tobytes(), 2)``.

    Raises:
        TypeError: if ``pcm`` is not a numpy array of native-endian int16.
        ValueError: for more than one channel or any other shape.
    """
    samples = _as_mono_int16(pcm, "mulaw")
    return _MULAW_ENCODE[samples.view(np.uint16)].tobytes()


def alaw_encode(pcm: Int16Array) -> bytes:
    """Encode int16 PCM to G.711 A-law, one byte per sample.

    Args:
        pcm: mono int16 samples, shape ``(n,)`` or ``(n, 1)``; any strides.

    Returns:
        ``n`` bytes, equal to ``audioop.lin2alaw(pcm.tobytes(), 2)``.

    Raises:
        TypeError: if ``pcm`` is not a numpy array of native-endian int16.
        ValueError: for more than one channel or any other shape.
    """
    samples = _as_mono_int16(pcm, "alaw")
    return _ALAW_ENCODE[samples.view(np.uint16)].tobytes()


def mulaw_decode(data: G711Bytes) -> Int16Array:
    """Decode G.711 mu-law bytes to int16 PCM.

    Args:
        data: one mu-law byte per sample (a memoryview must have 1-byte items).

    Returns:
        A new, writable int16 array of shape ``(n,)`` (mono, 1-D: reshape to
        ``(n, 1)`` for a ``(samples, channels)`` frame), equal to
        ``audioop.ulaw2lin(data, 2)``.

    Raises:
        TypeError: for anything but bytes, bytearray or a byte memoryview.
        ValueError: for a non-contiguous memoryview.
    """
    return _MULAW_DECODE[_as_codes(data, "mulaw")]


def alaw_decode(data: G711Bytes) -> Int16Array:
    """Decode G.711 A-law bytes to int16 PCM.

    Args:
        data: one A-law byte per sample (a memoryview must have 1-byte items).

    Returns:
        A new, writable int16 array of shape ``(n,)`` (mono, 1-D: reshape to
        ``(n, 1)`` for a ``(samples, channels)`` frame), equal to
        ``audioop.alaw2lin(data, 2)``.

    Raises:
        TypeError: for anything but bytes, bytearray or a byte memoryview.
        ValueError: for a non-contiguous memoryview.
    """
    return _ALAW_DECODE[_as_codes(data, "alaw")]
