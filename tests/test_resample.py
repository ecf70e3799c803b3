"""StreamResampler: length, chunk invariance, fidelity to one-shot soxr, channels."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs import StreamResampler, downmix
from voxtrio.codecs.resample import float_to_int16, int16_to_float

COMMON_RATES = [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000]
RATES = st.sampled_from(COMMON_RATES) | st.integers(8_000, 96_000)
DTYPES = st.sampled_from([np.int16, np.float32])
Input = tuple[int, int, np.ndarray]  # in_rate, out_rate, (samples, channels) PCM


def signal(samples: int, channels: int, dtype: type, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.9, 0.9, (samples, channels))
    if dtype is np.int16:
        return np.rint(x * 32767).astype(np.int16)
    return x.astype(np.float32)


@st.composite
def inputs(draw: st.DrawFn, max_samples: int = 6_000) -> tuple[int, int, np.ndarray]:
    in_rate = draw(RATES, label="in_rate")
    out_rate = draw(RATES, label="out_rate")
    channels = draw(st.integers(1, 2), label="channels")
    dtype = draw(DTYPES, label="dtype")
    samples = draw(st.integers(0, max_samples), label="samples")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    return in_rate, out_rate, signal(samples, channels, dtype, seed)


def split(length: int, data: st.DataObject) -> list[tuple[int, int]]:
    points = sorted(data.draw(st.lists(st.integers(0, length), max_size=15), label="cuts"))
    bounds = [0, *points, length]
    return list(itertools.pairwise(bounds))


def stream(rs: StreamResampler, x: np.ndarray, pieces: list[tuple[int, int]]) -> np.ndarray:
    """Push ``x`` in ``pieces``, flush, and join the output."""
    out = [rs.push(x[a:b]) for a, b in pieces]
    out.append(rs.flush())
    return np.concatenate(out)


def in_chunks(x: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(i + chunk, len(x))) for i in range(0, len(x), chunk)]


def snr_db(got: np.ndarray, ref: np.ndarray) -> float:
    got = np.asarray(got, np.float64).reshape(-1)
    ref = np.asarray(ref, np.float64).reshape(-1)
    assert got.shape == ref.shape
    noise = float(np.sum((got - ref) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(float(np.sum(ref**2)) / noise)


def tone(rate: int, seconds: float, hz: float = 1000.0, amplitude: float = 0.9) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * hz * t)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.reshape(-1) * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * rate / x.size


# ------------------------------------------------------------------ length


@settings(max_examples=60, deadline=None)
@given(inputs(), st.data())
def test_length_after_flush_is_n_times_ratio(case: Input, data: st.DataObject) -> None:
    in_rate, out_rate, x = case
    y = stream(StreamResampler(in_rate, out_rate, x.shape[1]), x, split(len(x), data))
    assert abs(len(y) - round(len(x) * out_rate / in_rate)) <= 2


@settings(max_examples=60, deadline=None)
@given(inputs())
def test_output_keeps_dtype_and_channels(case: Input) -> None:
    in_rate, out_rate, x = case
    rs = StreamResampler(in_rate, out_rate, x.shape[1])
    for y in (rs.push(x), rs.flush()):
        assert y.dtype == x.dtype
        assert y.ndim == 2
        assert y.shape[1] == x.shape[1]


# ------------------------------------------------------------------ chunk invariance


@settings(max_examples=60, deadline=None)
@given(inputs(), st.data())
def test_output_does_not_depend_on_chunking(case: Input, data: st.DataObject) -> None:
    in_rate, out_rate, x = case
    ch = x.shape[1]
    whole = stream(StreamResampler(in_rate, out_rate, ch), x, [(0, len(x))])
    pieces = stream(StreamResampler(in_rate, out_rate, ch), x, split(len(x), data))
    assert np.array_equal(pieces, whole)  # bit for bit, int16 included


@settings(max_examples=60, deadline=None)
@given(inputs(), st.data())
def test_float32_stream_equals_one_shot_soxr(case: Input, data: st.DataObject) -> None:
    in_rate, out_rate, x = case
    x = x.astype(np.float32) if x.dtype == np.float32 else int16_to_float(x)
    y = stream(StreamResampler(in_rate, out_rate, x.shape[1]), x, split(len(x), data))
    reference = soxr.resample(x, in_rate, out_rate, quality="VHQ")
    assert np.array_equal(y, np.asarray(reference).reshape(y.shape))


@settings(max_examples=60, deadline=None)
@given(inputs(), st.data())
def test_int16_path_is_the_float_path_rounded(case: Input, data: st.DataObject) -> None:
    # Not soxr's own int16 mode, whose output changes (by up to 2 LSB) with the chunking.
    in_rate, out_rate, x = case
    x16 = x if x.dtype == np.int16 else float_to_int16(x)
    y16 = stream(StreamResampler(in_rate, out_rate, x.shape[1]), x16, split(len(x), data))
    yf = stream(StreamResampler(in_rate, out_rate, x.shape[1]), int16_to_float(x16), [(0, len(x))])
    assert np.array_equal(y16, float_to_int16(yf))


# ------------------------------------------------------------------ fidelity


PAIRS = [(48_000, 24_000), (48_000, 16_000), (16_000, 24_000), (44_100, 24_000)]


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_1khz_sine_in_20ms_chunks_matches_one_shot_float32(in_rate: int, out_rate: int) -> None:
    x = tone(in_rate, 1.0).astype(np.float32).reshape(-1, 1)
    y = stream(StreamResampler(in_rate, out_rate), x, in_chunks(x, in_rate // 50))
    reference = soxr.resample(x[:, 0], in_rate, out_rate, quality="VHQ")
    assert snr_db(y, reference) > 90


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_1khz_sine_in_20ms_chunks_matches_one_shot_int16(in_rate: int, out_rate: int) -> None:
    x = np.rint(tone(in_rate, 1.0) * 32767).astype(np.int16).reshape(-1, 1)
    y = stream(StreamResampler(in_rate, out_rate), x, in_chunks(x, in_rate // 50))
    # The one-shot resampling of the whole int16 signal, kept in float: what is left is
    # the int16 rounding of the output.
    reference = soxr.resample(x[:, 0] / 32768.0, in_rate, out_rate, quality="VHQ")
    assert snr_db(y / 32768.0, reference) > 90


def test_per_chunk_resampling_is_far_worse_than_streaming() -> None:
    # The failure mode we replace: resampling each 20 ms chunk on its own clicks at every
    # boundary. (997 Hz does not fit a whole number of periods in 20 ms.)
    in_rate, out_rate = 48_000, 24_000
    x = tone(in_rate, 1.0, hz=997.0).astype(np.float32)
    reference = soxr.resample(x, in_rate, out_rate, quality="VHQ")
    chunks = in_chunks(x, in_rate // 50)
    streamed = stream(StreamResampler(in_rate, out_rate), x.reshape(-1, 1), chunks)
    per_chunk_soxr = np.concatenate(
        [soxr.resample(x[a:b], in_rate, out_rate, quality="VHQ") for a, b in chunks]
    )
    assert snr_db(streamed, reference) > 90
    assert snr_db(per_chunk_soxr, reference) < 60


def test_per_chunk_fft_resampling_is_far_worse_than_streaming() -> None:
    signal_mod = pytest.importorskip("scipy.signal")
    in_rate, out_rate = 48_000, 24_000
    x = tone(in_rate, 1.0, hz=997.0).astype(np.float32)
    reference = soxr.resample(x, in_rate, out_rate, quality="VHQ")
    chunk = in_rate // 50
    per_chunk_fft = np.concatenate(
        [
            signal_mod.resample(x[i : i + chunk], chunk * out_rate // in_rate)
            for i in range(0, len(x), chunk)
        ]
    )
    streamed = stream(StreamResampler(in_rate, out_rate), x.reshape(-1, 1), in_chunks(x, chunk))
    assert snr_db(per_chunk_fft, reference) < 60
    assert snr_db(streamed, reference) - snr_db(per_chunk_fft, reference) > 30


# ------------------------------------------------------------------ pass-through, flush


@given(RATES, st.integers(1, 3), DTYPES, st.integers(0, 500), st.integers(0, 2**32 - 1))
def test_equal_rates_pass_through_unchanged(
    rate: int, channels: int, dtype: type, samples: int, seed: int
) -> None:
    x = signal(samples, channels, dtype, seed)
    rs = StreamResampler(rate, rate, channels)
    assert rs.passthrough
    y = rs.push(x)
    assert y.dtype == x.dtype
    assert np.array_equal(y, x)
    assert rs.flush().shape[0] == 0


@settings(max_examples=40, deadline=None)
@given(inputs(max_samples=3_000), inputs(max_samples=3_000))
def test_flush_leaves_nothing_and_starts_a_new_stream(a: Input, b: Input) -> None:
    in_rate, out_rate, x = a
    y = b[2][:, :1].repeat(x.shape[1], axis=1).astype(x.dtype)
    rs = StreamResampler(in_rate, out_rate, x.shape[1])
    rs.push(x)
    rs.flush()
    assert rs.flush().shape[0] == 0  # nothing left after a flush
    second = stream(rs, y, [(0, len(y))])
    fresh = stream(StreamResampler(in_rate, out_rate, x.shape[1]), y, [(0, len(y))])
    assert np.array_equal(second, fresh)  # no state leaks into the next stream


def test_reset_drops_held_samples() -> None:
    rs = StreamResampler(48_000, 16_000)
    rs.push(np.ones((960, 1), np.int16))
    rs.reset()
    assert rs.flush().shape[0] == 0


def test_push_float_and_flush_float_match_push_and_flush() -> None:
    x = tone(44_100, 0.5).astype(np.float32).reshape(-1, 1)
    hot = StreamResampler(44_100, 24_000)
    pieces = in_chunks(x, 441)
    fast = np.concatenate([hot.push_float(x[a:b]) for a, b in pieces] + [hot.flush_float()])
    slow = stream(StreamResampler(44_100, 24_000), x, pieces)
    assert np.array_equal(fast.reshape(-1), slow.reshape(-1))


# ------------------------------------------------------------------ channels


@settings(max_examples=30, deadline=None)
@given(inputs(max_samples=4_000))
def test_stereo_channels_are_resampled_independently(case: Input) -> None:
    in_rate, out_rate, x = case
    x = np.concatenate([x[:, :1], x[::-1, :1]], axis=1)  # two different channels
    both = stream(StreamResampler(in_rate, out_rate, 2), x, [(0, len(x))])
    for c in range(2):
        alone = stream(StreamResampler(in_rate, out_rate, 1), x[:, c : c + 1], [(0, len(x))])
        assert np.array_equal(both[:, c : c + 1], alone)


def test_interleaved_stereo_is_never_taken_for_mono() -> None:
    # 1 s of a 1 kHz tone at 48 kHz stereo, downmixed and resampled to 24 kHz in 20 ms
    # chunks, is still 1 s of a 1 kHz tone. Read as mono samples, the interleaved data
    # would be 2 s of a 500 Hz tone: half speed.
    left = tone(48_000, 1.0, amplitude=0.5)
    right = tone(48_000, 1.0, amplitude=0.3)
    stereo = np.rint(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    rs = StreamResampler(48_000, 24_000)
    out = [rs.push(downmix(stereo[a:b])) for a, b in in_chunks(stereo, 960)]
    y = np.concatenate([*out, rs.flush()])
    assert abs(len(y) - 24_000) <= 2
    assert abs(peak_hz(y, 24_000) - 1000) <= 2

    # The check above does tell the two apart: the half-speed misreading fails it.
    wrong = StreamResampler(48_000, 24_000)
    flat = stereo.reshape(-1, 1)  # interleaved L R L R ... as one channel
    misread = np.concatenate([wrong.push(flat), wrong.flush()])
    assert abs(len(misread) - 48_000) <= 2
    assert abs(peak_hz(misread, 24_000) - 500) <= 2


@pytest.mark.parametrize(
    ("channels", "pcm"),
    [
        (1, np.zeros((10, 2), np.int16)),
        (2, np.zeros(20, np.int16)),
        (2, np.zeros((10, 1), np.int16)),
    ],
)
def test_channel_mismatch_is_refused(channels: int, pcm: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"mono|shape"):
        StreamResampler(48_000, 24_000, channels).push(pcm)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((7_999, 16_000), "in_rate"),
        ((16_000, 384_001), "out_rate"),
        ((16_000.0, 24_000), "in_rate"),
        ((True, 24_000), "in_rate"),
        ((16_000, 24_000, 0), "channels"),
        ((16_000, 24_000, 65), "channels"),
    ],
)
def test_bad_construction_is_refused(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StreamResampler(*args)  # type: ignore[arg-type]


def test_quality_is_checked_and_case_insensitive() -> None:
    for quality in ("qq", "lq", "mq", "hq", "vhq", "VHQ", "Hq"):
        StreamResampler(16_000, 24_000, quality=quality)
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(16_000, 24_000, quality="best")


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8])
def test_other_dtypes_are_refused(dtype: type) -> None:
    with pytest.raises(ValueError, match="int16 or float32"):
        StreamResampler(48_000, 24_000).push(np.zeros((10, 1), dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(bad: float) -> None:
    x = np.zeros((10, 1), np.float32)
    x[3] = bad
    with pytest.raises(ValueError, match="NaN"):
        StreamResampler(48_000, 24_000).push(x)


def test_switching_dtype_mid_stream_needs_a_flush() -> None:
    rs = StreamResampler(48_000, 24_000)
    rs.push(np.zeros((10, 1), np.int16))
    with pytest.raises(ValueError, match="flush"):
        rs.push(np.zeros((10, 1), np.float32))
    rs.flush()
    assert rs.push(np.zeros((960, 1), np.float32)).dtype == np.float32


def test_non_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="numpy"):
        StreamResampler(48_000, 24_000).push(b"\x00\x00")  # type: ignore[arg-type]


# ------------------------------------------------------------------ int16 <-> float


@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_int16_float_round_trip_is_exact(values: list[int]) -> None:
    x = np.array(values, np.int16)
    f = int16_to_float(x)
    assert f.dtype == np.float32
    assert np.all(np.abs(f) <= 1.0)
    assert np.array_equal(float_to_int16(f), x)


@given(st.lists(st.floats(-4, 4, width=32), max_size=200))
def test_float_to_int16_rounds_to_nearest_and_clips(values: list[float]) -> None:
    x = np.array(values, np.float32)
    expected = np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    assert np.array_equal(float_to_int16(x), expected)
