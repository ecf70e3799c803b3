"""Audio files beyond 16-bit WAV: read_audio's int16 conversion and WavCapture's check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio

import voxtrio
from voxtrio.codecs import AudioFormat, concat_frames, read_audio
from voxtrio.codecs.audiofile import to_int16_from_float, to_int16_from_int32
from voxtrio.testing import RecordingProvider

from .test_capture import collect

RATE = 16_000


def reference(seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    """A speech-band tone mix with a little noise, int16 (n, channels), full-ish scale."""
    t = np.arange(int(RATE * seconds)) / RATE
    rng = np.random.default_rng(7)
    cols = []
    for c in range(channels):
        x = 0.4 * np.sin(2 * np.pi * (300 + 100 * c) * t) + 0.3 * np.sin(2 * np.pi * 1250 * t)
        x += 0.01 * rng.standard_normal(t.size)
        cols.append(np.rint(x * 32767).astype(np.int16))
    return np.stack(cols, axis=1)


def test_formats_are_available() -> None:
    formats = sf.available_formats()
    assert "MP3" in formats
    assert "OGG" in formats


@pytest.mark.parametrize(
    ("fmt", "subtype", "channels"),
    [
        ("WAV", "PCM_24", 1),
        ("WAV", "PCM_24", 2),
        ("WAV", "PCM_32", 1),
        ("WAVEX", "PCM_16", 2),
        ("FLAC", "PCM_16", 1),
        ("FLAC", "PCM_24", 2),
    ],
)
def test_lossless_integer_files_round_trip_exactly(
    tmp_path: Path, fmt: str, subtype: str, channels: int
) -> None:
    ref = reference(channels=channels)
    path = tmp_path / f"x.{'flac' if fmt == 'FLAC' else 'wav'}"
    # soundfile writes int32 input left-aligned, so int16 << 16 is int16 << shift on disk.
    sf.write(path, ref.astype(np.int32) << 16, RATE, subtype=subtype, format=fmt)
    assert sf.info(str(path)).subtype == subtype
    pcm, got_fmt = read_audio(path)
    assert got_fmt == AudioFormat(RATE, channels)
    assert pcm.dtype == np.int16
    assert pcm.shape == ref.shape
    assert np.array_equal(pcm, ref)


def test_24_bit_low_bits_round_to_nearest(tmp_path: Path) -> None:
    # 24-bit samples v<<8 | low: low < 0x80 rounds down, >= 0x80 rounds up, clipped.
    base = np.array([0, 0, 0, 100, -100, 32767, -32768], np.int32)
    low = np.array([0x7F, 0x80, 0xFF, 0x80, 0x7F, 0xFF, 0x00], np.int32)
    samples24 = (base << 8) | low
    path = tmp_path / "r.wav"
    sf.write(path, (samples24 << 8).reshape(-1, 1), RATE, subtype="PCM_24")
    pcm, _ = read_audio(path)
    assert pcm[:, 0].tolist() == [0, 1, 1, 101, -100, 32767, -32768]


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_wav_reads_within_one(tmp_path: Path, subtype: str) -> None:
    ref = reference(channels=2)
    path = tmp_path / "f.wav"
    sf.write(path, ref.astype(np.float64) / 32768, RATE, subtype=subtype)
    pcm, fmt = read_audio(path)
    assert fmt == AudioFormat(RATE, 2)
    assert pcm.shape == ref.shape
    assert np.max(np.abs(pcm.astype(np.int32) - ref)) <= 1


def test_float_out_of_range_clips_and_nan_is_silence() -> None:
    f = np.array([2.0, -3.0, 1.0, -1.0, np.nan, 0.5 / 32767, 1.5 / 32767])
    assert to_int16_from_float(f).tolist() == [32767, -32767, 32767, -32767, 0, 0, 2]
    x = np.array([0x7FFF_FFFF, -0x8000_0000, 0x8000, 0x7FFF], np.int32)
    assert to_int16_from_int32(x).tolist() == [32767, -32768, 1, 0]


def _snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    return float(10 * np.log10(np.sum(r**2) / np.sum((r - g) ** 2)))


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "delay_slack"),
    [("OGG", "VORBIS", "ogg", 2048), ("MP3", "MPEG_LAYER_III", "mp3", 1152)],
)
def test_lossy_files_read_close_to_the_reference(
    tmp_path: Path, fmt: str, subtype: str, suffix: str, delay_slack: int
) -> None:
    ref = reference(channels=1)
    path = tmp_path / f"l.{suffix}"
    sf.write(path, ref.astype(np.float64) / 32768, RATE, format=fmt, subtype=subtype)
    pcm, got_fmt = read_audio(path)
    assert got_fmt == AudioFormat(RATE, 1)
    assert pcm.dtype == np.int16
    # Duration within one codec frame of the reference.
    assert abs(pcm.shape[0] - ref.shape[0]) <= delay_slack
    n = min(pcm.shape[0], ref.shape[0])
    assert _snr_db(ref[:n, 0], pcm[:n, 0]) > 20.0


async def _open(capture: object) -> None:
    with trio.fail_after(10):
        async with voxtrio.open_session(RecordingProvider(), capture=capture):  # type: ignore[arg-type]
            pass


def test_a_text_file_named_wav_raises_at_open_session(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    with pytest.raises(ValueError, match=r"notes\.wav") as info:
        trio.run(_open, voxtrio.WavCapture(path))
    text = str(info.value)
    assert "is not a WAV file voxtrio can read" in text
    assert "supported: 16-bit integer PCM WAV" in text
    assert "FLAC" in text
    assert "MP3" in text


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "found"),
    [
        ("AIFF", "PCM_16", "aiff", "AIFF"),
        ("WAV", "ULAW", "wav", "ULAW"),
        ("WAV", "PCM_U8", "wav", "8-bit"),
        ("FLAC", "PCM_S8", "flac", "PCM_S8"),
    ],
)
def test_an_unsupported_format_raises_at_open_session_naming_it(
    tmp_path: Path, fmt: str, subtype: str, suffix: str, found: str
) -> None:
    path = tmp_path / f"u.{suffix}"
    sf.write(path, reference(0.1).astype(np.float64) / 32768, RATE, format=fmt, subtype=subtype)
    with pytest.raises(ValueError, match=r"^WavCapture: ") as info:
        trio.run(_open, voxtrio.WavCapture(path))
    text = str(info.value)
    assert found in text
    assert "supported: 16-bit integer PCM WAV; 24/32-bit integer and 32/64-bit float WAV" in text
    with pytest.raises(ValueError, match=found):
        read_audio(path)


async def test_flac_capture_sends_the_samples(tmp_path: Path) -> None:
    with trio.fail_after(30):
        ref = reference(0.5, channels=2)
        path = tmp_path / "c.flac"
        sf.write(path, ref.astype(np.int32) << 16, RATE, subtype="PCM_24")
        capture = voxtrio.FileCapture(path)
        capture.check()
        frames, events, _ = await collect(capture)
    assert voxtrio.FileCapture is voxtrio.WavCapture
    assert events == []
    assert frames[0].format == AudioFormat(RATE, 2)
    assert np.array_equal(concat_frames(frames), ref)
