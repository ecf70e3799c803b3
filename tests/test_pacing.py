"""Pacing on trio's clock: Pacer and the realtime ArrayCapture, under autojump_clock.

Under ``autojump_clock`` the clock only moves when every task is blocked, and then
jumps exactly to the next deadline, so a drift-free pacer hits its schedule exactly;
``TICK`` allows for float rounding of an hour's worth of seconds. Callers that take
(virtual) time between chunks stand in for late wake-ups and slow consumers.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import TypeVar

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors.base import EdgeCounter
from voxtrio.actors.capture import ArrayCapture
from voxtrio.actors.pacing import Pacer
from voxtrio.codecs import AudioFormat, AudioFrame
from voxtrio.messages import AudioDropped, Event

TICK = 1e-6  # one scheduler tick: far above float rounding, far below a sample
D20 = Fraction(1, 50)
T = TypeVar("T")


def run_autojump(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    """trio.run with a fresh autojump clock: for hypothesis, one run per example."""
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# ------------------------------------------------------------------------ Pacer


async def test_pacer_first_chunk_is_due_at_once_and_later_ones_on_the_grid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        pacer = Pacer()
        start = trio.current_time()
        times = []
        for _ in range(10):
            await pacer.wait(D20)
            times.append(trio.current_time() - start)
        assert times == pytest.approx([k * 0.02 for k in range(10)], abs=TICK)
        assert pacer.restarts == 0


@settings(max_examples=30, deadline=None)
@given(
    delays_ms=st.lists(st.integers(0, 19), min_size=1, max_size=300),
    rate=st.sampled_from([8_000, 11_025, 22_050, 44_100, 48_000]),
)
def test_pacer_does_not_drift_when_callers_are_late(delays_ms: list[int], rate: int) -> None:
    """Work (or a late wake-up) of less than a chunk between waits never shifts the
    schedule: chunk k is due at the exact media time before it, whatever the delays.
    A pacer that sleeps a duration after each chunk would drift by their sum."""
    fmt = AudioFormat(rate)
    sizes = [int(frame) for frame in _frame_sizes(rate, len(delays_ms))]

    async def main() -> list[tuple[float, Fraction]]:
        with trio.fail_after(3600):
            pacer = Pacer()
            start = trio.current_time()
            media = Fraction(0)
            seen = []
            for size, delay in zip(sizes, delays_ms, strict=True):
                await pacer.wait(Fraction(size, fmt.sample_rate))
                seen.append((trio.current_time() - start, media))
                media += Fraction(size, fmt.sample_rate)
                await trio.sleep(delay / 1000)
            assert pacer.restarts == 0
            return seen

    for t, media in run_autojump(main):
        assert abs(t - float(media)) <= TICK


def _frame_sizes(rate: int, n: int) -> list[int]:
    s = Fraction(rate, 50)
    return [int((k + 1) * s) - int(k * s) for k in range(n)]


@pytest.mark.parametrize("stall_s", [0.05, 0.15, 0.2, 0.21, 1.0, 3.7])
async def test_pacer_catch_up_is_bounded_then_resyncs(
    autojump_clock: trio.testing.MockClock, stall_s: float
) -> None:
    """A caller stalled for ``stall_s`` gets at most ``max_lag_s`` of audio in a burst,
    then chunks are spaced by their duration again: on the original grid when the
    lag was within ``max_lag_s`` (nothing lost), from "now" after a restart."""
    max_lag = 0.2
    with trio.fail_after(60):
        pacer = Pacer(max_lag_s=max_lag)
        start = trio.current_time()
        times = []
        for k in range(100):
            await pacer.wait(D20)
            times.append(trio.current_time() - start)
            if k == 29:
                await trio.sleep(stall_s)
        resumed = times[29] + stall_s
        assert times[30] == pytest.approx(resumed, abs=TICK)  # not before the caller returns
        burst = sum(1 for t in times[30:] if t <= resumed + TICK)
        assert burst <= max_lag / 0.02 + 1
        # Then paced again from the next grid point: no stall, no second burst.
        assert 0 < times[30 + burst] - resumed <= 0.02 + TICK
        assert np.diff(times[30 + burst :]) == pytest.approx(0.02, abs=TICK)
        if stall_s - 0.02 <= max_lag:  # lag at the next chunk <= max_lag: caught up
            assert pacer.restarts == 0
            assert times[-1] == pytest.approx(99 * 0.02, abs=TICK)
        else:
            assert pacer.restarts == 1
            assert burst == 1
            assert times[-1] == pytest.approx(resumed + 69 * 0.02, abs=TICK)


async def test_pacer_reset_forgets_the_schedule(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        pacer = Pacer(max_lag_s=10.0)
        await pacer.wait(D20)
        await trio.sleep(1.0)
        pacer.reset()
        t0 = trio.current_time()
        await pacer.wait(D20)
        await pacer.wait(D20)
        # Without reset these two would have gone out at once (1 s of lag < max_lag_s).
        assert trio.current_time() - t0 == pytest.approx(0.02, abs=TICK)


def test_pacer_rejects_negative_lag() -> None:
    with pytest.raises(ValueError, match="max_lag_s"):
        Pacer(max_lag_s=-0.1)
    with pytest.raises(ValueError, match="max_lag_s"):
        Pacer(max_lag_s=float("nan"))


# ----------------------------------------------------------- realtime ArrayCapture


async def _run_capture(
    capture: ArrayCapture, buffer: float, on_frame: Callable[[AudioFrame], Awaitable[None]]
) -> tuple[EdgeCounter, list[Event]]:
    send, receive = trio.open_memory_channel[AudioFrame](buffer)
    ev_send, ev_receive = trio.open_memory_channel[Event](1000)
    counter = EdgeCounter("capture")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: capture.run(send, events=ev_send, counter=counter))
        async with receive:
            async for frame in receive:
                await on_frame(frame)
    events = []
    async with ev_receive:
        async for event in ev_receive:
            events.append(event)
    return counter, events


@pytest.mark.slow
async def test_realtime_array_capture_holds_the_grid_for_an_hour(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Chunk k of a realtime capture arrives at k * 20 ms, +- one tick, over a
    simulated hour (180,000 chunks): no drift, nothing dropped."""
    rate = 8_000
    chunk = rate // 50
    hour = 3600
    pcm = np.zeros(rate * hour, dtype=np.int16)
    pcm[::chunk] = np.arange(rate * hour // chunk, dtype=np.int64).astype(np.int16)
    state = {"k": 0, "max_dev": 0.0}
    with trio.fail_after(2 * hour):
        start = trio.current_time()

        async def on_frame(frame: AudioFrame) -> None:
            k = state["k"]
            assert frame.pts == k * chunk
            assert frame.samples == chunk
            assert int(frame.pcm[0, 0]) == (k + 32768) % 65536 - 32768
            dev = abs(trio.current_time() - start - k * 0.02)
            state["max_dev"] = max(state["max_dev"], dev)
            state["k"] = k + 1

        counter, events = await _run_capture(
            ArrayCapture(pcm, AudioFormat(rate), realtime=True), 4, on_frame
        )
    assert state["k"] == hour * 50
    # Exact to float rounding: a schedule kept by adding 0.02 s floats drifts ~3e-9 s
    # over the hour (and one adding rounded sleeps, by whole ticks).
    assert state["max_dev"] <= 1e-10
    assert counter.frames == hour * 50
    assert counter.dropped_frames == 0
    assert events == []


@pytest.mark.parametrize("rate", [11_025, 8_010, 47_999])
async def test_realtime_capture_paces_fractional_frames_on_their_pts(
    autojump_clock: trio.testing.MockClock, rate: int
) -> None:
    """At 11,025 Hz a 20 ms chunk is 220.5 samples: chunks alternate 220/221 and each
    goes out at its own pts time, never drifting from k * 20 ms by a sample."""
    seconds = 60
    pcm = np.arange(rate * seconds, dtype=np.int64).astype(np.int16)
    seen: list[tuple[float, AudioFrame]] = []
    with trio.fail_after(10 * seconds):
        start = trio.current_time()

        async def on_frame(frame: AudioFrame) -> None:
            seen.append((trio.current_time() - start, frame))

        await _run_capture(ArrayCapture(pcm, AudioFormat(rate), realtime=True), 4, on_frame)
    assert len(seen) == seconds * 50
    for k, (t, frame) in enumerate(seen):
        assert t == pytest.approx(frame.pts / rate, abs=TICK)
        assert abs(t - k * 0.02) < 1 / rate
    assert {f.samples for _, f in seen} == {int(Fraction(rate, 50)), int(Fraction(rate, 50)) + 1}


async def test_realtime_capture_drops_on_a_full_channel_and_reports_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A live source never waits for a stalled consumer: chunks that find the channel
    full are dropped, counted, and reported (at most once a second, plus at the end);
    after the stall the capture is still on its grid."""
    rate = 16_000
    pcm = np.arange(rate * 10, dtype=np.int64).astype(np.int16)
    received: list[tuple[float, AudioFrame]] = []
    with trio.fail_after(600):
        start = trio.current_time()

        async def on_frame(frame: AudioFrame) -> None:
            received.append((trio.current_time() - start, frame))
            if len(received) == 50:
                await trio.sleep(3.0)  # stall 3 s with a 2-chunk buffer

        counter, events = await _run_capture(
            ArrayCapture(pcm, AudioFormat(rate), realtime=True), 2, on_frame
        )
    drops = [e for e in events if isinstance(e, AudioDropped)]
    total = 500
    assert counter.frames == len(received)
    assert counter.frames + counter.dropped_frames == total
    assert counter.dropped_frames >= 3 * 50 - 3  # about 3 s of chunks, less the buffer
    assert sum(d.frames for d in drops) == counter.dropped_frames
    assert sum(d.samples for d in drops) == counter.dropped_samples
    assert drops[-1].total_frames == counter.dropped_frames
    assert all(d.edge == "capture" for d in drops)
    assert 1 <= len(drops) <= 4  # rate-limited: not one event per dropped chunk
    # Delivered chunks are whole and in order; the gap is exactly the dropped ones.
    pts = [f.pts for _, f in received]
    assert pts == sorted(pts)
    gaps = sum(1 for a, b in itertools.pairwise(received) if b[1].pts != a[1].end_pts)
    assert gaps == 1
    # After the stall the chunks are still on the original grid (no catch-up drift).
    for t, frame in received[60:]:
        assert t == pytest.approx(frame.pts / rate, abs=TICK)
