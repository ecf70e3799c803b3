"""AudioFormat, AudioFrame, frame_fraction, as_pcm, downmix, upmix, concat_frames."""

from __future__ import annotations

from fractions import Fraction

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voxtrio.codecs import (
    AudioFormat,
    AudioFrame,
    as_pcm,
    concat_frames,
    downmix,
    frame_fraction,
    upmix,
)

RATES = st.integers(8_000, 384_000)
CHANNELS = st.integers(1, 8)


def int16_pcm(max_samples: int = 300, channels: st.SearchStrategy[int] = CHANNELS):
    """(samples, channels) int16 arrays over the full range, extremes included."""
    return st.tuples(st.integers(0, max_samples), channels).flatmap(
        lambda shape: hnp.arrays(np.int16, shape, elements=st.integers(-32768, 32767))
    )


# ------------------------------------------------------------------ AudioFormat


@given(RATES, st.integers(1, 64))
def test_format_accepts_supported_rates_and_channels(rate: int, channels: int) -> None:
    fmt = AudioFormat(rate, channels)
    assert (fmt.sample_rate, fmt.channels, fmt.sample_width) == (rate, channels, 2)
    assert fmt.bytes_per_sample == 2 * channels


@given(st.integers(max_value=7_999) | st.integers(min_value=384_001))
def test_format_rejects_rates_outside_8k_to_384k(rate: int) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        AudioFormat(rate)


@pytest.mark.parametrize("rate", [16000.0, "16000", True, None, Fraction(16000)])
def test_format_rejects_non_int_rates(rate: object) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        AudioFormat(rate)  # type: ignore[arg-type]


@given(st.integers(max_value=0) | st.integers(min_value=65))
def test_format_rejects_channel_counts_outside_1_to_64(channels: int) -> None:
    with pytest.raises(ValueError, match="channels"):
        AudioFormat(16_000, channels)


@given(st.integers().filter(lambda w: w != 2))
def test_format_rejects_widths_other_than_16_bit(width: int) -> None:
    with pytest.raises(ValueError, match="sample_width"):
        AudioFormat(16_000, 1, width)


def test_format_is_frozen_and_hashable() -> None:
    fmt = AudioFormat(24_000)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fmt.sample_rate = 16_000  # type: ignore[misc]
    assert fmt == AudioFormat(24_000, 1, 2)
    assert fmt != AudioFormat(24_000, 2)
    assert len({fmt, AudioFormat(24_000)}) == 1


@given(RATES, st.fractions(min_value=0, max_value=10, max_denominator=1000))
def test_samples_in_is_floor_of_exact_duration(rate: int, seconds: Fraction) -> None:
    assert AudioFormat(rate).samples_in(seconds) == int(seconds * rate)  # floor for >= 0


# ------------------------------------------------------------------ AudioFrame


@given(RATES, int16_pcm(), st.integers(0, 10**12))
def test_frame_from_pcm_fields(rate: int, pcm: np.ndarray, pts: int) -> None:
    fmt = AudioFormat(rate, pcm.shape[1])
    frame = AudioFrame.from_pcm(pcm, fmt, pts)
    assert frame.pts == pts
    assert frame.sample_rate == rate
    assert frame.time_base == Fraction(1, rate)
    assert frame.duration == Fraction(pcm.shape[0], rate)
    assert frame.time == pts * frame.time_base
    assert frame.end_pts == pts + pcm.shape[0]
    assert frame.padded == 0
    assert frame.samples == pcm.shape[0]
    assert frame.channels == pcm.shape[1]
    assert frame.format == fmt
    assert frame.pcm.dtype == np.int16
    assert frame.pcm.shape == pcm.shape
    assert np.array_equal(frame.pcm, pcm)


@given(int16_pcm(max_samples=50).filter(lambda a: a.shape[0] > 0))
def test_frame_pcm_is_read_only_and_a_copy(pcm: np.ndarray) -> None:
    source = pcm.copy()
    frame = AudioFrame.from_pcm(source, AudioFormat(16_000, pcm.shape[1]))
    source[:] = 7  # the caller reuses its buffer
    assert np.array_equal(frame.pcm, pcm)
    assert not frame.pcm.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        frame.pcm[0, 0] = 1


def test_frame_is_frozen() -> None:
    frame = AudioFrame.from_pcm(np.zeros((4, 1), np.int16), AudioFormat(16_000))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        frame.pts = 3  # type: ignore[misc]


@given(int16_pcm(max_samples=40), st.integers(0, 1000))
def test_frame_equality_compares_samples_and_position(pcm: np.ndarray, pts: int) -> None:
    fmt = AudioFormat(16_000, pcm.shape[1])
    frame = AudioFrame.from_pcm(pcm, fmt, pts)
    assert frame == AudioFrame.from_pcm(pcm.copy(), fmt, pts)
    assert frame != AudioFrame.from_pcm(pcm, fmt, pts + 1)
    assert frame != AudioFrame.from_pcm(pcm, AudioFormat(48_000, pcm.shape[1]), pts)
    longer = np.concatenate([pcm, np.zeros((1, pcm.shape[1]), np.int16)])
    assert frame != AudioFrame.from_pcm(longer, fmt, pts)
    if pcm.size:
        changed = pcm.copy()
        changed.flat[0] ^= 1
        assert frame != AudioFrame.from_pcm(changed, fmt, pts)


@given(int16_pcm(max_samples=60))
def test_frame_bytes_round_trip(pcm: np.ndarray) -> None:
    fmt = AudioFormat(24_000, pcm.shape[1])
    frame = AudioFrame.from_pcm(pcm, fmt)
    data = frame.to_bytes()
    assert data == pcm.astype("<i2").tobytes()
    assert AudioFrame.from_pcm(data, fmt) == frame


@pytest.mark.parametrize("pts", [-1, True, 1.0])
def test_frame_rejects_bad_pts(pts: object) -> None:
    with pytest.raises(ValueError, match="pts"):
        AudioFrame.from_pcm(np.zeros((2, 1), np.int16), AudioFormat(16_000), pts)  # type: ignore[arg-type]


def test_frame_rejects_partial_sample_bytes() -> None:
    with pytest.raises(ValueError, match="whole number"):
        AudioFrame.from_pcm(b"\x00\x01\x02", AudioFormat(16_000, 1))
    with pytest.raises(ValueError, match="whole number"):
        AudioFrame.from_pcm(b"\x00\x01\x02\x03\x04\x05", AudioFormat(16_000, 2))


def test_frame_repr_has_no_samples() -> None:
    frame = AudioFrame.from_pcm(np.full((3, 1), 1234, np.int16), AudioFormat(16_000), 9)
    assert "1234" not in repr(frame)
    assert "pts=9" in repr(frame)


# ------------------------------------------------------------------ frame_fraction


@given(RATES, st.integers(1, 1000))
def test_frame_fraction_is_exact_for_ints(rate: int, ms: int) -> None:
    assert frame_fraction(rate, ms) == Fraction(rate * ms, 1000)


@given(RATES, st.integers(10, 10_000))
def test_frame_fraction_float_and_fraction_agree_with_decimal_value(rate: int, tenths: int) -> None:
    ms = tenths / 10  # 2.5, 22.5, 20.1 ...: decimal values a user would write
    exact = Fraction(tenths, 10)
    assert frame_fraction(rate, ms) == frame_fraction(rate, exact) == rate * exact / 1000


@pytest.mark.parametrize("ms", [0, -20, 0.0, -0.5, Fraction(-1, 3), float("nan"), float("inf")])
def test_frame_fraction_rejects_non_positive_or_non_finite(ms: float) -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        frame_fraction(16_000, ms)


@pytest.mark.parametrize("ms", ["20", None, True, [20]])
def test_frame_fraction_rejects_non_numbers(ms: object) -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        frame_fraction(16_000, ms)  # type: ignore[arg-type]


def test_frame_fraction_rejects_frames_under_one_sample() -> None:
    with pytest.raises(ValueError, match="less than one sample"):
        frame_fraction(8_000, Fraction(1, 10))  # 0.8 samples
    assert frame_fraction(8_000, Fraction(1, 8)) == 1


# ------------------------------------------------------------------ as_pcm


@given(int16_pcm(max_samples=40))
def test_as_pcm_reads_interleaved_little_endian_bytes(pcm: np.ndarray) -> None:
    data = pcm.astype("<i2").tobytes()
    for buf in (data, bytearray(data), memoryview(data)):
        assert np.array_equal(as_pcm(buf, pcm.shape[1]), pcm)


@given(int16_pcm(max_samples=40, channels=st.just(1)))
def test_as_pcm_takes_1d_as_mono(pcm: np.ndarray) -> None:
    out = as_pcm(pcm[:, 0], 1)
    assert out.shape == pcm.shape
    assert np.array_equal(out, pcm)


@pytest.mark.parametrize(
    ("pcm", "channels", "match"),
    [
        (np.zeros((4, 2), np.int32), 2, "int16"),
        (np.zeros((4, 1), np.float32), 1, "int16"),
        (np.array([[0.0], [np.nan]]), 1, "NaN"),
        (np.zeros((4, 2), np.int16), 1, "channels"),
        (np.zeros((2, 5), np.int16), 2, "transposed"),
        (np.zeros(6, np.int16), 2, "1-D"),
        (np.zeros((2, 2, 2), np.int16), 2, "shape"),
        ([1, 2, 3], 1, "numpy"),
    ],
)
def test_as_pcm_rejects_wrong_input(pcm: object, channels: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        as_pcm(pcm, channels)  # type: ignore[arg-type]


# ------------------------------------------------------------------ downmix / upmix


def _mean_half_away_from_zero(pcm: np.ndarray) -> np.ndarray:
    """The exact reference, in Python integers."""
    out = []
    n = pcm.shape[1]
    for row in pcm.astype(np.int64).tolist():
        total = sum(row)
        magnitude = (abs(total) * 2 + n) // (2 * n)  # floor(|t|/n + 1/2)
        out.append(magnitude if total >= 0 else -magnitude)
    return np.array(out, dtype=np.int16).reshape(-1, 1)


@given(int16_pcm(channels=st.integers(2, 8)))
def test_downmix_int16_is_the_rounded_exact_mean(pcm: np.ndarray) -> None:
    out = downmix(pcm)
    assert out.dtype == np.int16
    assert out.shape == (pcm.shape[0], 1)
    assert np.array_equal(out, _mean_half_away_from_zero(pcm))


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_downmix_does_not_overflow_at_full_scale(channels: int) -> None:
    pcm = np.array(
        [[32767] * channels, [-32768] * channels, [32767, -32768] + [0] * (channels - 2)],
        np.int16,
    )
    out = downmix(pcm)[:, 0].tolist()
    assert out[:2] == [32767, -32768]
    # (32767 - 32768) / n rounds away from zero only on an exact half (n = 2).
    assert out[2] == (-1 if channels == 2 else 0)


def test_downmix_rounds_halves_away_from_zero() -> None:
    pcm = np.array([[1, 0], [-1, 0], [3, 0], [-3, 0], [1, 1], [2, -1]], np.int16)
    assert downmix(pcm)[:, 0].tolist() == [1, -1, 2, -2, 1, 1]


@given(
    st.tuples(st.integers(0, 200), st.integers(2, 6)).flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=st.floats(-1, 1, width=32))
    )
)
def test_downmix_float_is_the_float64_mean(pcm: np.ndarray) -> None:
    out = downmix(pcm)
    assert out.dtype == np.float32
    assert out.shape == (pcm.shape[0], 1)
    expected = pcm.astype(np.float64).mean(axis=1).astype(np.float32)
    assert np.array_equal(out[:, 0], expected)


@given(int16_pcm(channels=st.just(1)))
def test_downmix_leaves_mono_alone(pcm: np.ndarray) -> None:
    assert np.array_equal(downmix(pcm), pcm)
    assert downmix(pcm[:, 0]).shape == pcm.shape


@pytest.mark.parametrize(
    "pcm", [np.zeros((3, 2, 2), np.int16), np.zeros((3, 2), np.int32), np.zeros((3, 2), bool)]
)
def test_downmix_rejects_bad_input(pcm: np.ndarray) -> None:
    with pytest.raises(ValueError, match="downmix"):
        downmix(pcm)


@given(int16_pcm(channels=st.just(1)), st.integers(1, 8))
def test_upmix_copies_mono_into_every_channel(pcm: np.ndarray, channels: int) -> None:
    out = upmix(pcm, channels)
    assert out.shape == (pcm.shape[0], channels)
    assert out.dtype == np.int16
    for c in range(channels):
        assert np.array_equal(out[:, c], pcm[:, 0])
    assert np.array_equal(downmix(out), pcm)  # downmix undoes upmix exactly
    assert np.array_equal(upmix(pcm[:, 0], channels), out)


def test_upmix_rejects_non_mono_and_bad_counts() -> None:
    with pytest.raises(ValueError, match="mono"):
        upmix(np.zeros((4, 2), np.int16), 2)
    for bad in (0, 65, True):
        with pytest.raises(ValueError, match="channels"):
            upmix(np.zeros((4, 1), np.int16), bad)


# ------------------------------------------------------------------ concat_frames


@given(st.lists(int16_pcm(max_samples=30, channels=st.just(2)), max_size=6), st.data())
def test_concat_frames_drops_only_padding(pieces: list[np.ndarray], data: st.DataObject) -> None:
    fmt = AudioFormat(16_000, 2)
    frames = [AudioFrame.from_pcm(p, fmt) for p in pieces]
    expected = np.concatenate(pieces) if pieces else np.zeros((0, 2), np.int16)
    if frames:
        pad = data.draw(st.integers(0, 5), label="padding")
        last = frames[-1]
        padded_pcm = np.concatenate([last.pcm, np.zeros((pad, 2), np.int16)])
        frames[-1] = AudioFrame(padded_pcm, last.sample_rate, last.pts, pad)
        assert np.array_equal(concat_frames(frames), expected)
    else:
        assert concat_frames(frames).shape[0] == 0


def test_public_names_are_reexported() -> None:
    import voxtrio
    import voxtrio.codecs as codecs

    names = ("AudioFormat", "AudioFrame", "Reframer", "StreamResampler", "downmix", "upmix")
    for name in (*names, "read_wav", "write_wav"):
        assert getattr(codecs, name) is getattr(voxtrio, name)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pcm": np.zeros(4, np.int16)}, "samples, channels"),  # 1-D: use from_pcm
        ({"pcm": np.zeros((4, 1), np.float32)}, "int16"),
        ({"pcm": np.zeros((2, 2, 2), np.int16)}, "samples, channels"),
        ({"pcm": b"\x00\x00"}, "bytes"),
        ({"pcm": np.zeros((4, 0), np.int16)}, "0 channels"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 16_000.0}, "sample_rate"),
        ({"pts": -1}, "pts"),
        ({"pts": True}, "pts"),
        ({"padded": 5}, "padded"),
        ({"padded": -1}, "padded"),
    ],
)
def test_the_frame_constructor_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"pcm": np.zeros((4, 1), np.int16), "sample_rate": 16_000}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        AudioFrame(**args)  # type: ignore[arg-type]


def test_the_frame_constructor_keeps_a_read_only_view_without_copying() -> None:
    pcm = np.arange(8, dtype=np.int16).reshape(4, 2)
    frame = AudioFrame(pcm, 16_000, pts=3, padded=1)
    assert not frame.pcm.flags.writeable
    assert pcm.flags.writeable  # the caller's array is left as it was
    assert np.shares_memory(frame.pcm, pcm)
    assert np.array_equal(frame.pcm, pcm)
    assert (frame.sample_rate, frame.pts, frame.padded, frame.channels) == (16_000, 3, 1, 2)
    with pytest.raises(ValueError, match="read-only"):
        frame.pcm[0, 0] = 1
