"""codecs.convert.Converter: downmix + streaming resample + int16 + exact framing."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs import AudioFormat, AudioFrame, FrameMs, concat_frames
from voxtrio.codecs.convert import Converter, convert_oneshot, to_float
from voxtrio.codecs.resample import float_to_int16

RATES = st.sampled_from([8_000, 16_000, 22_050, 24_000, 44_100, 48_000]) | st.integers(
    8_000, 96_000
)
FRAME_MS: st.SearchStrategy[FrameMs] = st.one_of(
    st.integers(5, 40),
    st.integers(50, 400).map(lambda tenths: tenths / 10),
    st.fractions(min_value=5, max_value=40, max_denominator=30),
)


@st.composite
def formats(draw: st.DrawFn) -> tuple[AudioFormat, AudioFormat]:
    src_ch = draw(st.integers(1, 3), label="source channels")
    if src_ch == 1:
        dst_ch = draw(st.integers(1, 2), label="target channels")
    else:
        dst_ch = draw(st.sampled_from([1, src_ch]), label="target channels")
    source = AudioFormat(draw(RATES, label="source rate"), src_ch)
    target = AudioFormat(draw(RATES, label="target rate"), dst_ch)
    return source, target


def noise(samples: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-30000, 30000, (samples, channels)).astype(np.int16)


def split(length: int, data: st.DataObject) -> list[tuple[int, int]]:
    points = sorted(data.draw(st.lists(st.integers(0, length), max_size=12), label="cuts"))
    bounds = [0, *points, length]
    return list(itertools.pairwise(bounds))


def joined(frames: list[AudioFrame], channels: int) -> np.ndarray:
    return concat_frames(frames) if frames else np.zeros((0, channels), np.int16)


def run(conv: Converter, pieces: Sequence[object]) -> list[AudioFrame]:
    frames: list[AudioFrame] = []
    for piece in pieces:
        frames += conv.push(piece)  # type: ignore[arg-type]
    return frames + conv.flush()


@st.composite
def cases(draw: st.DrawFn, max_samples: int = 5_000):
    source, target = draw(formats())
    frame_ms = draw(FRAME_MS, label="frame_ms")
    samples = draw(st.integers(0, max_samples), label="samples")
    pcm = noise(samples, source.channels, draw(st.integers(0, 2**32 - 1), label="seed"))
    return source, target, frame_ms, pcm


Case = tuple[AudioFormat, AudioFormat, FrameMs, np.ndarray]


@settings(max_examples=60, deadline=None)
@given(cases(), st.data())
def test_output_equals_the_one_shot_conversion(case: Case, data: st.DataObject) -> None:
    source, target, frame_ms, pcm = case
    conv = Converter(source, target, frame_ms)
    frames = run(conv, [pcm[a:b] for a, b in split(len(pcm), data)])
    assert np.array_equal(joined(frames, target.channels), convert_oneshot(pcm, source, target))


@settings(max_examples=60, deadline=None)
@given(cases(max_samples=2_000), st.data())
def test_chunk_invariance_including_bytes_split_anywhere(case: Case, data: st.DataObject) -> None:
    source, target, frame_ms, pcm = case
    whole = run(Converter(source, target, frame_ms), [pcm])
    raw = pcm.astype("<i2").tobytes()
    pieces = [raw[a:b] for a, b in split(len(raw), data)]
    assert run(Converter(source, target, frame_ms), pieces) == whole


@settings(max_examples=60, deadline=None)
@given(cases())
def test_nothing_is_lost_at_flush(case: Case) -> None:
    source, target, frame_ms, pcm = case
    conv = Converter(source, target, frame_ms)
    frames = conv.push(pcm) + conv.flush()
    total = sum(f.samples for f in frames)
    assert abs(total - round(len(pcm) * target.sample_rate / source.sample_rate)) <= 2
    assert conv.flush() == []
    assert all(f.padded == 0 for f in frames)


@settings(max_examples=60, deadline=None)
@given(cases(), cases())
def test_frames_follow_the_exact_grid_and_pts_continue_across_segments(
    first: Case, second: Case
) -> None:
    source, target, frame_ms, pcm = first
    more = second[3][:, :1].repeat(source.channels, axis=1)
    conv = Converter(source, target, frame_ms)
    segments = [conv.push(pcm) + conv.flush(), conv.push(more) + conv.flush()]
    size = (
        target.sample_rate
        * (Fraction(str(frame_ms)) if isinstance(frame_ms, float) else Fraction(frame_ms))
        / 1000
    )
    pts = 0
    for frames in segments:
        for k, frame in enumerate(frames[:-1]):  # all but the flushed rest are whole
            assert frame.samples == math.floor((k + 1) * size) - math.floor(k * size)
        for frame in frames:
            assert frame.pts == pts
            assert frame.sample_rate == target.sample_rate
            assert frame.pcm.shape == (frame.samples, target.channels)
            assert frame.pcm.dtype == np.int16
            assert not frame.pcm.flags.writeable
            pts += frame.samples


@given(cases(max_samples=2_000))
def test_the_input_is_only_read(case: Case) -> None:
    source, target, frame_ms, pcm = case
    buffer = pcm.copy()
    conv = Converter(source, target, frame_ms)
    frames = conv.push(buffer)
    buffer[:] = 0
    frames += conv.flush()
    assert np.array_equal(joined(frames, target.channels), convert_oneshot(pcm, source, target))


def test_stereo_bytes_keep_their_speed() -> None:
    # 1 s of a 1 kHz tone as 48 kHz interleaved stereo bytes in 20 ms chunks: 1 s of a
    # 1 kHz tone at 24 kHz comes out (read as mono it would be 2 s at 500 Hz).
    t = np.arange(48_000) / 48_000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.rint(np.stack([tone, 0.5 * tone], axis=1) * 32767).astype(np.int16)
    raw = stereo.tobytes()
    conv = Converter(AudioFormat(48_000, 2), AudioFormat(24_000, 1), 20)
    frames = run(conv, [raw[i : i + 3840] for i in range(0, len(raw), 3840)])
    out = concat_frames(frames)[:, 0].astype(np.float64)
    assert sum(f.duration for f in frames) == 1
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert abs(np.argmax(spectrum) * 24_000 / len(out) - 1000) <= 2


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48_000, 24_000), (44_100, 24_000)])
def test_stereo_to_mono_20ms_chunks_matches_float_reference(in_rate: int, out_rate: int) -> None:
    t = np.arange(in_rate) / in_rate
    left, right = 0.9 * np.sin(2 * np.pi * 1000 * t), 0.7 * np.sin(2 * np.pi * 1000 * t + 1)
    stereo = np.rint(np.stack([left, right], axis=1) * 32767).astype(np.int16)
    chunk = in_rate // 50
    conv = Converter(AudioFormat(in_rate, 2), AudioFormat(out_rate, 1))
    frames = run(conv, [stereo[i : i + chunk] for i in range(0, len(stereo), chunk)])
    got = concat_frames(frames)[:, 0] / 32768.0
    mono = stereo.astype(np.float64).mean(axis=1) / 32768.0
    ref = soxr.resample(mono, in_rate, out_rate, quality="VHQ")
    assert got.shape == ref.shape
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2))
    assert snr > 90


@given(st.lists(st.tuples(st.integers(-32768, 32767), st.integers(-32768, 32767)), max_size=50))
def test_to_float_stereo_to_mono_is_the_exact_mean(rows: list[tuple[int, int]]) -> None:
    pcm = np.array(rows, np.int16).reshape(-1, 2)
    got = to_float(pcm, 1)
    assert got.dtype == np.float32
    assert got.shape == (len(rows),)
    for value, (left, right) in zip(got.tolist(), rows, strict=True):
        assert Fraction(value) == Fraction(left + right, 65536)


@st.composite
def full_scale(draw: st.DrawFn, samples: int, channels: int) -> np.ndarray:
    """int16 ``(samples, channels)`` that reaches the rails: full-scale noise, square
    waves (soxr's ringing overshoots them, so the output clips), the extremes, or a mix."""
    kind = draw(st.sampled_from(["noise", "square", "extremes", "mixed"]), label="signal")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    if kind == "noise":
        return rng.integers(-32768, 32768, (samples, channels)).astype(np.int16)
    if kind == "square":
        period = draw(st.integers(2, 200), label="period")
        wave = np.where(np.arange(samples) % period < max(1, period // 2), 32767, -32768)
        signs = np.array(draw(st.lists(st.sampled_from([1, -1]), min_size=channels,
                                       max_size=channels), label="signs"))  # fmt: skip
        square: np.ndarray = np.clip(wave[:, None] * signs, -32768, 32767).astype(np.int16)
        return square
    if kind == "extremes":
        rails = np.array([-32768, -32767, 0, 32766, 32767], dtype=np.int16)
        picked: np.ndarray = rng.choice(rails, (samples, channels))
        return picked
    pcm = rng.integers(-32768, 32768, (samples, channels)).astype(np.int16)
    pcm[rng.random(samples) < 0.3] = 32767
    pcm[rng.random(samples) < 0.3] = -32768
    return pcm


@settings(max_examples=80, deadline=None)
@given(formats(), FRAME_MS, st.integers(0, 4_000), st.data())
def test_int16_unit_stream_equals_the_one_shot_at_full_scale(
    fmts: tuple[AudioFormat, AudioFormat], frame_ms: FrameMs, samples: int, data: st.DataObject
) -> None:
    """The stream runs in int16 units; the one-shot reference must use the same scale
    (a mismatch in scale, rounding or clipping shows up at full scale), and the output
    does clip there."""
    source, target = fmts
    pcm = data.draw(full_scale(samples, source.channels), label="pcm")
    frames = run(Converter(source, target, frame_ms), [pcm[a:b] for a, b in split(samples, data)])
    assert np.array_equal(joined(frames, target.channels), convert_oneshot(pcm, source, target))


def test_a_full_scale_square_wave_clips_at_both_rails_in_the_stream() -> None:
    source, target = AudioFormat(48_000, 2), AudioFormat(24_000, 1)
    wave = np.where(np.arange(48_000) % 96 < 48, 32767, -32768).astype(np.int16)
    pcm = np.stack([wave, wave], axis=1)
    frames = run(Converter(source, target), [pcm[i : i + 960] for i in range(0, 48_000, 960)])
    got = joined(frames, 1)
    # soxr's ringing overshoots the square: the output sits on both rails, as clipped.
    assert np.count_nonzero(got == 32767) > 100
    assert np.count_nonzero(got == -32768) > 100
    assert np.array_equal(got, convert_oneshot(pcm, source, target))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2), st.integers(0, 2_000), st.data())
def test_equal_rates_round_the_exact_mix_half_to_even(
    src: int, samples: int, data: st.DataObject
) -> None:
    """Passing through (no resampler), the int16-unit mix of two channels is (L + R) / 2
    exactly, rounded half to even: the scale is int16 units, not [-1, 1)."""
    fmt = AudioFormat(24_000, src)
    pcm = data.draw(full_scale(samples, src), label="pcm")
    want = np.rint(pcm.astype(np.float64).mean(axis=1, keepdims=True)).astype(np.int16)
    pieces = [pcm[a:b] for a, b in split(samples, data)]
    assert np.array_equal(joined(run(Converter(fmt, AudioFormat(24_000, 1)), pieces), 1), want)
    assert np.array_equal(convert_oneshot(pcm, fmt, AudioFormat(24_000, 1)), want)


@settings(max_examples=40, deadline=None)
@given(formats(), st.integers(0, 3_000), st.data())
def test_int16_units_are_a_pure_rescale_of_the_unit_float_path(
    fmts: tuple[AudioFormat, AudioFormat], samples: int, data: st.DataObject
) -> None:
    """soxr is linear and 32768 is a power of two, so resampling in int16 units gives
    exactly what resampling the public ``to_float`` scale ([-1, 1)) and scaling back
    gives, for the exact mappings (all but a mono mix of more than 2 channels)."""
    source, target = fmts
    if target.channels == 1 and source.channels > 2:
        target = AudioFormat(target.sample_rate, source.channels)  # N -> N: exact too
    pcm = data.draw(full_scale(samples, source.channels), label="pcm")
    x = to_float(pcm, target.channels)
    if source.sample_rate != target.sample_rate:
        x = soxr.resample(x, source.sample_rate, target.sample_rate, quality="VHQ")
    want = float_to_int16(np.asarray(x, dtype=np.float32)).reshape(-1, target.channels)
    assert np.array_equal(convert_oneshot(pcm, source, target), want)


def test_unsupported_channel_mappings_are_refused() -> None:
    with pytest.raises(ValueError, match="channels"):
        Converter(AudioFormat(48_000, 2), AudioFormat(24_000, 3))
    with pytest.raises(ValueError, match="AudioFormat"):
        Converter(48_000, AudioFormat(24_000))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "pcm",
    [np.zeros((10, 1), np.int16), np.zeros(10, np.int16), np.zeros((10, 2), np.float32)],
)
def test_pcm_not_matching_the_source_is_refused(pcm: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"channels|1-D|int16"):
        Converter(AudioFormat(48_000, 2), AudioFormat(24_000, 1)).push(pcm)
