"""Reframer: the framing invariants of DESIGN.md, one property each.

S = sample_rate * frame_ms / 1000 is an exact Fraction; frame k of a segment covers
samples [floor(k*S), floor((k+1)*S)). The expected values here are computed
independently of the implementation, with Python integers and Fractions.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs import AudioFormat, AudioFrame, FrameMs, Reframer, concat_frames

COMMON_RATES = [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000]
RATES = st.sampled_from(COMMON_RATES) | st.integers(8_000, 96_000)
# frame_ms as an int, as a float holding a decimal value (2.5, 22.1, ...), or a Fraction.
FRAME_MS: st.SearchStrategy[FrameMs] = st.one_of(
    st.integers(1, 40),
    st.integers(5, 400).map(lambda tenths: tenths / 10),
    st.fractions(min_value=Fraction(1, 2), max_value=40, max_denominator=60),
)


def exact_size(rate: int, frame_ms: FrameMs) -> Fraction:
    """S, computed independently: floats are read as the decimal the user wrote."""
    ms = Fraction(str(frame_ms)) if isinstance(frame_ms, float) else Fraction(frame_ms)
    return rate * ms / 1000


def floor_k(k: int, size: Fraction) -> int:
    """floor(k * S) in integers."""
    return (k * size.numerator) // size.denominator


def ramp(samples: int, channels: int, seed: int) -> np.ndarray:
    """int16 (samples, channels) whose values are distinct over any 65 536 in a row, so
    a lost, duplicated or reordered sample cannot go unnoticed."""
    idx = np.arange(samples * channels, dtype=np.int64)
    values = (idx * 7919 + seed) % 65536 - 32768
    return values.astype(np.int16).reshape(samples, channels)


@dataclass
class Case:
    fmt: AudioFormat
    frame_ms: FrameMs
    size: Fraction
    pcm: np.ndarray

    def framer(self) -> Reframer:
        return Reframer(self.fmt, self.frame_ms)


@st.composite
def cases(draw: st.DrawFn, max_frames: int = 6, channels: int | None = None) -> Case:
    rate = draw(RATES, label="rate")
    frame_ms = draw(FRAME_MS, label="frame_ms")
    ch = channels if channels is not None else draw(st.integers(1, 3), label="channels")
    size = exact_size(rate, frame_ms)
    samples = draw(st.integers(0, int(size * max_frames) + 3), label="samples")
    seed = draw(st.integers(0, 65535), label="seed")
    return Case(AudioFormat(rate, ch), frame_ms, size, ramp(samples, ch, seed))


def cut(length: int, data: st.DataObject) -> list[tuple[int, int]]:
    """An arbitrary split of range(length) into consecutive (start, stop) pieces."""
    points = sorted(data.draw(st.lists(st.integers(0, length), max_size=12), label="cuts"))
    bounds = [0, *points, length]
    return list(itertools.pairwise(bounds))


def joined(frames: Sequence[AudioFrame], channels: int) -> np.ndarray:
    """The frames' samples without padding, as (samples, channels)."""
    if not frames:
        return np.zeros((0, channels), np.int16)
    return concat_frames(frames)


def push_all(framer: Reframer, pieces: Sequence[object]) -> list[AudioFrame]:
    frames: list[AudioFrame] = []
    for piece in pieces:
        frames.extend(framer.push(piece))  # type: ignore[arg-type]
    return frames


def one_shot(case: Case, pad: bool = True) -> list[AudioFrame]:
    framer = case.framer()
    return framer.push(case.pcm) + framer.flush(pad=pad)


# ------------------------------------------------------------------ conservation


@given(cases())
def test_conservation_output_minus_padding_equals_input(case: Case) -> None:
    frames = one_shot(case, pad=True)
    assert np.array_equal(joined(frames, case.fmt.channels), case.pcm)


@given(cases(), st.data())
def test_padding_only_at_flush_and_flagged(case: Case, data: st.DataObject) -> None:
    framer = case.framer()
    pushed = push_all(framer, [case.pcm[a:b] for a, b in cut(len(case.pcm), data)])
    assert all(f.padded == 0 for f in pushed)
    flushed = framer.flush(pad=True)
    remainder = len(case.pcm) - sum(f.samples for f in pushed)
    if remainder == 0:
        assert flushed == []
    else:
        (last,) = flushed
        full = floor_k(len(pushed) + 1, case.size) - floor_k(len(pushed), case.size)
        assert last.samples == full
        assert last.padded == full - remainder
        assert not last.pcm[remainder:].any()


@given(cases())
def test_flush_without_padding_emits_the_short_rest(case: Case) -> None:
    framer = case.framer()
    pushed = framer.push(case.pcm)
    remainder = len(case.pcm) - sum(f.samples for f in pushed)
    assert framer.pending_samples == remainder
    flushed = framer.flush(pad=False)
    assert [f.samples for f in flushed] == ([remainder] if remainder else [])
    assert all(f.padded == 0 for f in flushed)
    assert framer.pending_samples == 0
    assert framer.flush(pad=True) == []  # nothing is held back after a flush


# ------------------------------------------------------------------ chunk invariance


@given(cases(), st.data())
def test_chunk_invariance_for_arrays(case: Case, data: st.DataObject) -> None:
    framer = case.framer()
    pieces = [case.pcm[a:b] for a, b in cut(len(case.pcm), data)]
    assert push_all(framer, pieces) + framer.flush() == one_shot(case)


@given(cases(), st.data())
def test_chunk_invariance_for_bytes_split_anywhere(case: Case, data: st.DataObject) -> None:
    raw = case.pcm.astype("<i2").tobytes()
    kinds = [bytes, bytearray, memoryview]
    pieces = [kinds[i % 3](raw[a:b]) for i, (a, b) in enumerate(cut(len(raw), data))]
    framer = case.framer()
    assert push_all(framer, pieces) + framer.flush() == one_shot(case)


@settings(max_examples=30, deadline=None)
@given(cases(max_frames=3))
def test_chunk_invariance_one_byte_at_a_time(case: Case) -> None:
    raw = case.pcm.astype("<i2").tobytes()
    framer = case.framer()
    frames = push_all(framer, [raw[i : i + 1] for i in range(len(raw))])
    assert frames + framer.flush() == one_shot(case)


@given(cases(max_frames=2, channels=2), st.integers(1, 3))
def test_partial_sample_bytes_are_carried_not_dropped(case: Case, extra: int) -> None:
    raw = case.pcm.astype("<i2").tobytes()
    if len(raw) < extra:
        return
    framer = case.framer()
    head = framer.push(raw[: len(raw) - extra])  # ends inside a sample
    tail = framer.push(raw[len(raw) - extra :])  # completes it
    assert np.array_equal(joined(head + tail + framer.flush(pad=False), 2), case.pcm)


def test_a_dangling_partial_sample_is_dropped_only_at_flush() -> None:
    framer = Reframer(AudioFormat(8_000, 1), 1)  # 8-sample frames
    assert framer.push(b"\x01\x00\x02") == []
    assert framer.pending_samples == 1
    (frame,) = framer.flush(pad=False)
    assert frame.pcm[:, 0].tolist() == [1]
    assert framer.push(b"\x05\x00") == []  # the stray byte did not survive the flush
    assert framer.flush(pad=False)[0].pcm[:, 0].tolist() == [5]


# ------------------------------------------------------------------ no drift


@given(cases(max_frames=40, channels=1))
def test_no_drift_after_k_frames_exactly_floor_k_s_samples(case: Case) -> None:
    frames = case.framer().push(case.pcm)
    emitted = 0
    for k, frame in enumerate(frames, start=1):
        emitted += frame.samples
        assert emitted == floor_k(k, case.size)


@given(cases(max_frames=40, channels=1))
def test_push_emits_every_whole_frame_it_can(case: Case) -> None:
    # Stops a do-nothing or hold-back implementation: the number of frames is the
    # largest k with floor(k*S) <= samples pushed.
    frames = case.framer().push(case.pcm)
    k = 0
    while floor_k(k + 1, case.size) <= len(case.pcm):
        k += 1
    assert len(frames) == k


@given(cases(max_frames=40, channels=1))
def test_frame_sizes_are_floor_or_ceil_of_s(case: Case) -> None:
    sizes = {f.samples for f in case.framer().push(case.pcm)}
    lo = floor_k(1, case.size)
    hi = lo if case.size.denominator == 1 else lo + 1
    assert sizes <= {lo, hi}


@pytest.mark.parametrize("frame_ms", [20, 20.0, Fraction(20), Fraction(40, 2)])
def test_11025_hz_at_20_ms_alternates_220_221_and_never_drifts(frame_ms: FrameMs) -> None:
    framer = Reframer(AudioFormat(11_025), frame_ms)
    frames = framer.push(np.zeros(11_025 * 60, np.int16))  # one minute
    sizes = [f.samples for f in frames]
    assert sizes[:4] == [220, 221, 220, 221]
    assert len(frames) == 3000
    assert sum(sizes) == 11_025 * 60  # exactly: no drift
    # The `int(frame_ms / 1000 * rate)` bug would cut 220-sample frames: 1.5 s short.
    assert sum(sizes) - 3000 * int(20 / 1000 * 11_025) == 1500


@given(RATES, FRAME_MS)
def test_frame_size_accessors(rate: int, frame_ms: FrameMs) -> None:
    framer = Reframer(AudioFormat(rate), frame_ms)
    size = exact_size(rate, frame_ms)
    assert framer.frame_size == size
    assert framer.next_frame_samples() == floor_k(1, size)
    assert framer.frame_ms == frame_ms
    assert framer.format == AudioFormat(rate)


# ------------------------------------------------------------------ pts


@given(cases(), st.data())
def test_pts_are_contiguous(case: Case, data: st.DataObject) -> None:
    framer = case.framer()
    frames = push_all(framer, [case.pcm[a:b] for a, b in cut(len(case.pcm), data)])
    frames += framer.flush(pad=data.draw(st.booleans(), label="pad"))
    pts = 0
    for frame in frames:
        assert frame.pts == pts
        assert frame.time_base == Fraction(1, case.fmt.sample_rate)
        pts += frame.samples
    assert framer.next_pts == pts


@given(cases(), cases(), st.booleans())
def test_pts_continue_across_flushed_segments(a: Case, b: Case, pad: bool) -> None:
    fmt, frame_ms = a.fmt, a.frame_ms
    pcm_b = b.pcm[:, :1].repeat(fmt.channels, axis=1)
    framer = Reframer(fmt, frame_ms)
    first = framer.push(a.pcm) + framer.flush(pad=pad)
    second = framer.push(pcm_b)
    end = first[-1].end_pts if first else 0
    if second:
        assert second[0].pts == end
        # The frame grid restarts with the segment.
        assert second[0].samples == floor_k(1, a.size)


# ------------------------------------------------------------------ reframe


@dataclass
class Switch:
    before: list[AudioFrame]
    drained: list[AudioFrame]
    after: list[AudioFrame]
    a: Case
    b: Case


@st.composite
def switches(draw: st.DrawFn) -> Switch:
    a = draw(cases(), label="old")
    b = draw(cases(channels=a.fmt.channels), label="new")
    framer = a.framer()
    before = framer.push(a.pcm)
    drained = framer.reframe(b.fmt, b.frame_ms)
    after = framer.push(b.pcm) + framer.flush(pad=False)
    return Switch(before, drained, after, a, b)


@given(switches())
def test_reframe_loses_and_duplicates_nothing(sw: Switch) -> None:
    ch = sw.a.fmt.channels
    assert np.array_equal(joined(sw.before + sw.drained, ch), sw.a.pcm)
    assert np.array_equal(joined(sw.after, ch), sw.b.pcm)


@given(switches())
def test_reframe_drains_the_old_framing_as_a_short_last_frame(sw: Switch) -> None:
    remainder = len(sw.a.pcm) - sum(f.samples for f in sw.before)
    assert [f.samples for f in sw.drained] == ([remainder] if remainder else [])
    for frame in sw.drained:
        assert frame.sample_rate == sw.a.fmt.sample_rate
        assert frame.padded == 0
        assert frame.samples < floor_k(len(sw.before) + 1, sw.a.size) - floor_k(
            len(sw.before), sw.a.size
        )


@given(switches())
def test_reframe_new_pts_is_ceil_of_old_end_in_new_rate(sw: Switch) -> None:
    old_end = len(sw.a.pcm)
    r_old, r_new = sw.a.fmt.sample_rate, sw.b.fmt.sample_rate
    if sw.after:
        start = sw.after[0].pts
        assert start == -(-old_end * r_new // r_old)  # ceil
        # The first new sample instant at or after the end of the old audio.
        assert Fraction(old_end, r_old) <= Fraction(start, r_new)
        assert Fraction(start - 1, r_new) < Fraction(old_end, r_old)


@given(switches())
def test_reframe_time_keeps_increasing(sw: Switch) -> None:
    frames = sw.before + sw.drained + sw.after
    for prev, nxt in itertools.pairwise(frames):
        assert nxt.time >= prev.time + prev.duration
        assert nxt.time > prev.time


@given(switches())
def test_reframe_switches_to_the_new_grid(sw: Switch) -> None:
    body = sw.after[:-1]  # the last one may be the flushed rest
    for k, frame in enumerate(body):
        assert frame.sample_rate == sw.b.fmt.sample_rate
        assert frame.samples == floor_k(k + 1, sw.b.size) - floor_k(k, sw.b.size)


def test_invalid_reframe_leaves_the_framer_unchanged() -> None:
    framer = Reframer(AudioFormat(16_000), 20)
    framer.push(np.arange(100, dtype=np.int16))
    for bad in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="frame_ms"):
            framer.reframe(AudioFormat(24_000), bad)
    with pytest.raises(ValueError, match="AudioFormat"):
        framer.reframe(24_000, 20)  # type: ignore[arg-type]
    assert framer.pending_samples == 100
    assert framer.format == AudioFormat(16_000)
    (frame,) = framer.push(np.arange(100, 320, dtype=np.int16))
    assert frame.pcm[:, 0].tolist() == list(range(320))


# ------------------------------------------------------------------ frames & buffers


@given(cases(), st.data())
def test_frames_are_read_only_and_never_alias_the_input(case: Case, data: st.DataObject) -> None:
    framer = case.framer()
    frames: list[AudioFrame] = []
    for a, b in cut(len(case.pcm), data):
        buffer = case.pcm[a:b].copy()
        frames += framer.push(buffer)
        buffer[:] = 0  # the caller reuses its buffer
    frames += framer.flush()
    assert np.array_equal(joined(frames, case.fmt.channels), case.pcm)
    for frame in frames:
        assert not frame.pcm.flags.writeable


@given(cases())
def test_frames_equal_frames_built_by_the_public_constructor(case: Case) -> None:
    for frame in one_shot(case):
        assert type(frame) is AudioFrame
        assert frame == AudioFrame(frame.pcm, frame.sample_rate, frame.pts, frame.padded)
        assert frame.pcm.dtype == np.int16
        assert frame.pcm.shape == (frame.samples, case.fmt.channels)


@given(cases(channels=1))
def test_mono_accepts_1d_arrays(case: Case) -> None:
    framer = case.framer()
    assert framer.push(case.pcm[:, 0]) + framer.flush() == one_shot(case)


# ------------------------------------------------------------------ errors


@given(st.integers(1, 4), st.integers(1, 4))
def test_wrong_channel_count_is_refused(channels: int, given_channels: int) -> None:
    framer = Reframer(AudioFormat(16_000, channels))
    pcm = np.zeros((10, given_channels), np.int16)
    if given_channels == channels:
        assert framer.push(pcm) == []
    else:
        with pytest.raises(ValueError, match="channels"):
            framer.push(pcm)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.float32, np.float64])
def test_wrong_dtype_is_refused(dtype: type) -> None:
    with pytest.raises(ValueError, match="int16"):
        Reframer(AudioFormat(16_000)).push(np.zeros((10, 1), dtype))


@given(st.lists(st.floats(-1, 1), max_size=20), st.data())
def test_float_arrays_with_nan_are_refused(values: list[float], data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(values)), label="NaN at")
    values.insert(at, float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        Reframer(AudioFormat(16_000)).push(np.array(values).reshape(-1, 1))


@pytest.mark.parametrize(
    "pcm",
    [np.zeros((4, 1, 1), np.int16), np.zeros((2, 2, 2), np.int16), np.zeros(4, np.int16)],
)
def test_3d_arrays_and_1d_stereo_are_refused(pcm: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"shape|1-D"):
        Reframer(AudioFormat(16_000, 2)).push(pcm)


def test_failed_push_leaves_state_alone() -> None:
    framer = Reframer(AudioFormat(16_000), 20)
    framer.push(np.arange(10, dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        framer.push(np.zeros(5, np.float32))
    assert framer.pending_samples == 10
    assert framer.next_pts == 0


@pytest.mark.parametrize("frame_ms", [0, -20, 0.0, -1.5, Fraction(0), float("inf"), "20"])
def test_non_positive_frame_ms_is_refused(frame_ms: object) -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        Reframer(AudioFormat(16_000), frame_ms)  # type: ignore[arg-type]


def test_format_must_be_an_audio_format() -> None:
    with pytest.raises(ValueError, match="AudioFormat"):
        Reframer(16_000)  # type: ignore[arg-type]


def test_repr_reports_state_not_samples() -> None:
    framer = Reframer(AudioFormat(16_000), 20)
    framer.push(np.full(100, 1234, np.int16))
    assert "pending_samples=100" in repr(framer)
    assert "1234" not in repr(framer)
