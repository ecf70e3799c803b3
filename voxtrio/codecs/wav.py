"""WAV files through the standard library :mod:`wave`: 16-bit PCM only."""

from __future__ import annotations

import os
import struct
import wave

import numpy as np

from ..audio import AudioFormat, as_pcm

__all__ = ["read_wav", "write_wav"]


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, AudioFormat]:
    """Read a whole 16-bit PCM WAV file.

    Returns:
        ``(pcm, fmt)``: int16 samples of shape ``(samples, channels)`` and the file's
        format.

    Raises:
        ValueError: the file is not a WAV, not 16-bit integer PCM, has an unsupported
            rate or channel count, or is truncated (fewer frames than its header says).
        OSError: the file cannot be opened.
    """
    try:
        with wave.open(os.fspath(path), "rb") as w:
            width = w.getsampwidth()
            if width != 2:
                raise ValueError(
                    f"{os.fspath(path)!r} has {8 * width}-bit samples; voxtrio reads 16-bit PCM WAV"
                )
            fmt = AudioFormat(w.getframerate(), w.getnchannels(), width)
            declared = w.getnframes()
            raw = w.readframes(declared)
    except wave.Error as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a 16-bit PCM WAV file: {exc}") from exc
    except EOFError as exc:
        raise ValueError(f"{os.fspath(path)!r} is truncated: {exc}") from exc
    except (RuntimeError, struct.error) as exc:
        # The wave module raises a bare RuntimeError for a chunk that claims more bytes
        # than the file holds (it seeks past the end while skipping it).
        raise ValueError(
            f"{os.fspath(path)!r} is not a 16-bit PCM WAV file or is truncated: a chunk "
            "is malformed or runs past the end of the file"
        ) from exc
    got = len(raw) // fmt.bytes_per_sample
    if got != declared or len(raw) % fmt.bytes_per_sample:
        raise ValueError(
            f"{os.fspath(path)!r} is truncated: its header declares {declared} frames, "
            f"the data holds {len(raw) / fmt.bytes_per_sample:g}"
        )
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16).reshape(-1, fmt.channels)
    return pcm, fmt


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, fmt: AudioFormat) -> None:
    """Write int16 PCM (``(samples, channels)``, or 1-D for mono) as a WAV file.

    Raises:
        ValueError: the PCM does not match ``fmt``.
    """
    arr = as_pcm(pcm, fmt.channels)
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(fmt.channels)
        w.setsampwidth(fmt.sample_width)
        w.setframerate(fmt.sample_rate)
        w.writeframes(arr.astype("<i2", copy=False).tobytes())
