"""read_wav / write_wav: 16-bit PCM WAV only, clear errors for anything else."""

from __future__ import annotations

import struct
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voxtrio.codecs import AudioFormat, read_wav, write_wav

WAV_RATES = st.sampled_from([8_000, 11_025, 16_000, 24_000, 44_100, 48_000]) | st.integers(
    8_000, 384_000
)


def pcm_arrays(max_samples: int = 400):
    return st.tuples(st.integers(0, max_samples), st.integers(1, 4)).flatmap(
        lambda shape: hnp.arrays(np.int16, shape, elements=st.integers(-32768, 32767))
    )


def write_raw_wav(path: Path, rate: int, channels: int, width: int, frames: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


@settings(max_examples=60, deadline=None)
@given(pcm_arrays(), WAV_RATES)
def test_round_trip(pcm: np.ndarray, rate: int) -> None:
    fmt = AudioFormat(rate, pcm.shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.wav"
        write_wav(path, pcm, fmt)
        got, got_fmt = read_wav(path)
    assert got_fmt == fmt
    assert got.dtype == np.int16
    assert got.shape == pcm.shape
    assert np.array_equal(got, pcm)


def test_round_trip_accepts_1d_mono_and_str_paths(tmp_path: Path) -> None:
    mono = np.arange(-50, 50, dtype=np.int16)
    path = tmp_path / "mono.wav"
    write_wav(str(path), mono, AudioFormat(16_000))
    got, fmt = read_wav(str(path))
    assert fmt == AudioFormat(16_000, 1)
    assert np.array_equal(got[:, 0], mono)


def test_file_is_little_endian_interleaved_pcm(tmp_path: Path) -> None:
    pcm = np.array([[1, -2], [300, -32768]], np.int16)
    path = tmp_path / "st.wav"
    write_wav(path, pcm, AudioFormat(48_000, 2))
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 48_000)
        assert w.readframes(2) == struct.pack("<4h", 1, -2, 300, -32768)


def test_write_refuses_pcm_that_does_not_match_the_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="channels"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), np.int16), AudioFormat(16_000, 1))
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "x.wav", np.zeros((10, 1), np.float32), AudioFormat(16_000, 1))


@pytest.mark.parametrize("width", [1, 3, 4])
def test_non_16_bit_files_are_refused(tmp_path: Path, width: int) -> None:
    path = tmp_path / f"w{width}.wav"
    write_raw_wav(path, 16_000, 1, width, bytes(width * 100))
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(path)


def test_float_wav_is_refused(tmp_path: Path) -> None:
    # A WAVE_FORMAT_IEEE_FLOAT (3) file, 32-bit: not 16-bit integer PCM.
    data = np.zeros(8, np.float32).tobytes()
    fmt_chunk = struct.pack("<HHIIHH", 3, 1, 16_000, 64_000, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk
    body += b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "float.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(path)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_with_value_error(blob: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "junk.wav"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=r"WAV|truncated|16-bit|sample_rate|channels"):
            read_wav(path)


def test_text_file_is_not_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("hello, this is not audio\n" * 10)
    with pytest.raises(ValueError, match="not a 16-bit PCM WAV"):
        read_wav(path)


@settings(max_examples=60, deadline=None)
@given(pcm_arrays(max_samples=100).filter(lambda a: a.shape[0] > 0), st.data())
def test_any_truncation_is_refused(pcm: np.ndarray, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.wav"
        write_wav(path, pcm, AudioFormat(16_000, pcm.shape[1]))
        whole = path.read_bytes()
        keep = data.draw(st.integers(0, len(whole) - 1), label="bytes kept")
        path.write_bytes(whole[:keep])
        with pytest.raises(ValueError, match=r"truncated|not a 16-bit PCM WAV"):
            read_wav(path)


def test_truncated_data_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    write_wav(path, np.zeros((100, 1), np.int16), AudioFormat(16_000))
    whole = path.read_bytes()
    path.write_bytes(whole[:-11])
    with pytest.raises(ValueError, match="truncated"):
        read_wav(path)


def test_unsupported_rate_in_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slow.wav"
    write_raw_wav(path, 4_000, 1, 2, bytes(200))
    with pytest.raises(ValueError, match="sample_rate"):
        read_wav(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent"):
        read_wav(tmp_path / "absent.wav")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 43), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(1, 2),
)
def test_corrupt_headers_read_or_raise_value_error_only(
    edits: list[tuple[int, int]], channels: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.wav"
        write_wav(path, np.ones((50, channels), np.int16), AudioFormat(16_000, channels))
        raw = bytearray(path.read_bytes())
        for at, value in edits:
            raw[at] = value
        path.write_bytes(bytes(raw))
        try:
            pcm, fmt = read_wav(path)
        except ValueError:
            return
        assert pcm.dtype == np.int16
        assert pcm.shape[1] == fmt.channels


def test_chunk_running_past_the_end_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    write_wav(path, np.ones((50, 2), np.int16), AudioFormat(16_000, 2))
    raw = bytearray(path.read_bytes())
    raw[16:20] = struct.pack("<I", 193)  # the fmt chunk claims 193 bytes
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"malformed|truncated|not a 16-bit"):
        read_wav(path)
