"""Audio files of the kinds people have, read through libsndfile (``soundfile``).

What is read, and how each is turned into voxtrio's int16:

- 16-bit integer PCM WAV goes through :func:`voxtrio.codecs.wav.read_wav`, bit for bit
  as before (with its truncation checks).
- Other 16-bit integer PCM (WAVEX, FLAC): read as int16, unchanged.
- 24- and 32-bit integer PCM (WAV, WAVEX; FLAC 24-bit): libsndfile hands each sample
  left-aligned in an int32 ``x``; the result is ``(x + 0x8000) >> 16`` (the top 16 bits,
  rounded to nearest with halves going up), clipped to 32767. So 24-bit audio written
  as ``int16 << 8`` reads back as exactly that int16.
- Float (32/64-bit float WAV) and lossy codecs (Ogg Vorbis, Ogg Opus, MPEG audio/MP3),
  decoded to float ``f``: NaN becomes 0, ``f`` is clipped to [-1, 1], scaled by 32767
  and rounded to nearest (ties to even). -32768 is never produced.

Anything else (8-bit, A-law/u-law, ADPCM, AIFF, ...) raises :class:`ValueError` naming
what the file is and what is supported. Nothing here imports trio.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from ..audio import AudioFormat
from .wav import read_wav

__all__ = ["SUPPORTED", "probe_audio", "read_audio"]

_WAV = ("WAV", "WAVEX")
_INT16 = ("PCM_16",)
_INT_WIDE = ("PCM_24", "PCM_32")
_FLOAT = ("FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III")

#: (container, subtype) pairs voxtrio reads, as libsndfile names them.
_ACCEPTED: frozenset[tuple[str, str]] = frozenset(
    [(c, s) for c in _WAV for s in ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")]
    + [("FLAC", "PCM_16"), ("FLAC", "PCM_24")]
    + [("OGG", "VORBIS"), ("OGG", "OPUS")]
    + [("MP3", s) for s in ("MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III")]
)

SUPPORTED = (
    "16-bit integer PCM WAV; 24/32-bit integer and 32/64-bit float WAV; "
    "16/24-bit FLAC; Ogg Vorbis or Opus; MP3"
)

_INT_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


def probe_audio(path: str | os.PathLike[str]) -> tuple[AudioFormat, str, str]:
    """Read only the header of ``path``.

    Returns:
        ``(fmt, container, subtype)``: the voxtrio format the samples will have and the
        file's kind as libsndfile names it (e.g. ``("FLAC", "PCM_24")``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an audio file, or one of a kind voxtrio does not read, or an
            unsupported rate or channel count; the message says what was found.
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"no such file: {p!r}")
    try:
        info = sf.info(p)
    except (RuntimeError, sf.SoundFileError) as exc:
        raise ValueError(
            f"{p!r} is not a WAV file voxtrio can read, nor another audio file it reads "
            f"(libsndfile: {exc}); supported: {SUPPORTED}"
        ) from None
    kind = (str(info.format), str(info.subtype))
    if kind not in _ACCEPTED:
        found = f"{info.format_info} with {info.subtype} ({info.subtype_info}) samples"
        bits = _INT_BITS.get(kind[1])
        if bits is not None:
            found += f", and has {bits}-bit samples"
        raise ValueError(f"{p!r} is {found}; supported: {SUPPORTED}")
    try:
        fmt = AudioFormat(int(info.samplerate), int(info.channels))
    except ValueError as exc:
        raise ValueError(f"{p!r}: {exc}") from None
    return fmt, kind[0], kind[1]


def to_int16_from_int32(x: np.ndarray) -> np.ndarray:
    """Left-aligned int32 samples to int16: the top 16 bits, rounded half up, clipped."""
    wide = (x.astype(np.int64) + 0x8000) >> 16
    out: np.ndarray = np.minimum(wide, 32767).astype(np.int16)
    return out


def to_int16_from_float(f: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16: clip, scale by 32767, round to nearest."""
    clean = np.nan_to_num(f.astype(np.float64, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.rint(np.clip(clean, -1.0, 1.0) * 32767.0).astype(np.int16)


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, AudioFormat]:
    """Read a whole audio file (see the module docstring for what and how).

    Returns:
        ``(pcm, fmt)``: int16 samples of shape ``(samples, channels)`` and their format.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported, malformed or truncated file (the message names it).
        OSError: the file cannot be opened.
    """
    p = os.fspath(path)
    fmt, container, subtype = probe_audio(p)
    if container == "WAV" and subtype in _INT16:
        return read_wav(p)
    try:
        if subtype in _INT16:
            pcm = np.asarray(sf.read(p, dtype="int16", always_2d=True)[0], dtype=np.int16)
        elif subtype in _INT_WIDE:
            pcm = to_int16_from_int32(sf.read(p, dtype="int32", always_2d=True)[0])
        else:
            pcm = to_int16_from_float(sf.read(p, dtype="float64", always_2d=True)[0])
    except (RuntimeError, sf.SoundFileError) as exc:
        raise ValueError(f"{p!r} cannot be decoded ({container} {subtype}): {exc}") from None
    return np.ascontiguousarray(pcm.reshape(-1, fmt.channels)), fmt
