"""Event fan-out: Subscription (bounded, lag reported where the gap is) and EventHub,
alone and inside a session with a slow and a fast subscriber."""

from __future__ import annotations

import contextlib
from functools import partial

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors.capture import ArrayCapture
from voxtrio.codecs import AudioFormat
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import (
    ErrorEvent,
    Event,
    InputTranscriptionDelta,
    PlaybackInput,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    SessionConnected,
    SpeechStarted,
    SubscriberLagged,
)
from voxtrio.runtime import EventHub, Subscription, open_session
from voxtrio.testing.inprocess import RecordingProvider


def ev(i: int) -> InputTranscriptionDelta:
    return InputTranscriptionDelta(str(i))


def drain(sub: Subscription) -> list[Event]:
    out: list[Event] = []
    while True:
        try:
            out.append(sub.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


def new_sub(max_buffer: int) -> tuple[Subscription, list[Subscription]]:
    closed: list[Subscription] = []
    return Subscription(max_buffer, closed.append), closed


def check_accounting(received: list[Event], delivered: list[Event]) -> None:
    """Each lag notice stands exactly where its missed events were, and together
    with the received events accounts for every delivered one, in order."""
    i = 0
    previous_was_lag = False
    for item in received:
        if isinstance(item, SubscriberLagged):
            assert item.missed > 0
            assert not previous_was_lag  # one notice per gap
            i += item.missed
            previous_was_lag = True
        else:
            assert item is delivered[i]
            i += 1
            previous_was_lag = False
    assert i == len(delivered)


# ---------------------------------------------------------------- Subscription


def test_subscription_delivers_in_order_within_its_buffer() -> None:
    sub, _ = new_sub(5)
    events = [ev(i) for i in range(5)]
    for e in events:
        sub.deliver_nowait(e)
    assert drain(sub) == events
    assert sub.lagged_total == 0


def test_overflow_is_counted_and_reported_after_the_backlog() -> None:
    sub, _ = new_sub(3)
    events = [ev(i) for i in range(10)]
    for e in events:
        sub.deliver_nowait(e)
    assert drain(sub) == [*events[:3], SubscriberLagged(missed=7)]
    assert sub.lagged_total == 7
    assert drain(sub) == []  # reported once


def test_lag_notice_sits_exactly_where_the_gap_is() -> None:
    sub, _ = new_sub(4)
    events = [ev(i) for i in range(20)]
    for e in events[:10]:  # 0..3 queued, 4..9 missed
        sub.deliver_nowait(e)
    assert [sub.receive_nowait(), sub.receive_nowait()] == events[:2]
    for e in events[10:16]:  # 10, 11 queued; 12..15 missed
        sub.deliver_nowait(e)
    got = drain(sub)
    assert got == [
        events[2],
        events[3],
        SubscriberLagged(missed=6),
        events[10],
        events[11],
        SubscriberLagged(missed=4),
    ]
    for e in events[16:]:
        sub.deliver_nowait(e)
    assert drain(sub) == events[16:]
    assert sub.lagged_total == 10


@settings(max_examples=300, deadline=None)
@given(
    max_buffer=st.integers(1, 6),
    ops=st.lists(st.sampled_from("dddrrR"), max_size=120),
)
def test_any_interleaving_accounts_for_every_event(max_buffer: int, ops: list[str]) -> None:
    """Whatever the interleaving of deliveries and receives (``R`` drains): received
    events + lag counts == delivered events, order kept, each gap at its place."""
    sub, _ = new_sub(max_buffer)
    delivered: list[Event] = []
    received: list[Event] = []
    for op in ops:
        if op == "d":
            e = ev(len(delivered))
            delivered.append(e)
            sub.deliver_nowait(e)
        elif op == "r":
            with contextlib.suppress(trio.WouldBlock):
                received.append(sub.receive_nowait())
        else:
            received.extend(drain(sub))
        assert sub.queued <= max_buffer
    received.extend(drain(sub))
    check_accounting(received, delivered)
    assert sub.lagged_total == sum(r.missed for r in received if isinstance(r, SubscriberLagged))


@settings(max_examples=200, deadline=None)
@given(max_buffer=st.integers(1, 6), ops=st.lists(st.sampled_from("dr"), max_size=120))
def test_a_consumer_that_keeps_up_gets_everything(max_buffer: int, ops: list[str]) -> None:
    """No lag notice unless more than ``max_buffer`` events were outstanding: a
    subscription that dropped or reported lag for nothing would fail here."""
    sub, _ = new_sub(max_buffer)
    delivered: list[Event] = []
    received: list[Event] = []
    overflowed = False
    for op in ops:
        if op == "d":
            if len(delivered) - len(received) >= max_buffer:
                overflowed = True
            e = ev(len(delivered))
            delivered.append(e)
            sub.deliver_nowait(e)
        else:
            with contextlib.suppress(trio.WouldBlock):
                received.append(sub.receive_nowait())
        if overflowed:
            return  # accounting is covered above; this property is about no overflow
    received.extend(drain(sub))
    assert received == delivered
    assert sub.lagged_total == 0


async def test_receive_waits_for_delivery_and_ends_after_the_backlog() -> None:
    with trio.fail_after(10):
        sub, _ = new_sub(8)
        got: list[Event] = []

        async def consumer() -> None:
            async for e in sub:
                got.append(e)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            sub.deliver_nowait(ev(0))
            await trio.testing.wait_all_tasks_blocked()
            assert got == [ev(0)]
            sub.deliver_nowait(ev(1))
            sub.deliver_nowait(ev(2))
            sub.end()
        assert got == [ev(0), ev(1), ev(2)]
        sub.deliver_nowait(ev(3))  # after the end: ignored
        with pytest.raises(trio.EndOfChannel):
            sub.receive_nowait()


async def test_cancelled_receive_loses_nothing() -> None:
    with trio.fail_after(10):
        sub, _ = new_sub(8)
        with trio.move_on_after(0.01):
            await sub.receive()
        sub.deliver_nowait(ev(0))
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await sub.receive()
        assert await sub.receive() == ev(0)


async def test_close_unsubscribes_wakes_the_reader_and_discards() -> None:
    with trio.fail_after(10):
        sub, closed = new_sub(8)
        sub.deliver_nowait(ev(0))
        errors: list[BaseException] = []

        async def reader() -> None:
            sub.receive_nowait()
            try:
                await sub.receive()
            except trio.ClosedResourceError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await sub.aclose()
        assert len(errors) == 1
        assert closed == [sub]
        sub.close()
        assert closed == [sub]  # idempotent
        sub.deliver_nowait(ev(1))
        with pytest.raises(trio.ClosedResourceError):
            sub.receive_nowait()


def test_subscription_rejects_an_empty_buffer() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        Subscription(0, lambda s: None)


# ---------------------------------------------------------------------- EventHub


async def test_hub_routes_audio_to_playback_and_events_to_subscribers() -> None:
    with trio.fail_after(10):
        hub = EventHub(16)
        a, b = hub.subscribe(), hub.subscribe(2)
        ev_send, ev_receive = trio.open_memory_channel[Event](16)
        play_send, play_receive = trio.open_memory_channel[PlaybackInput](16)
        audio = ReplyAudio(np.zeros((10, 1), np.int16), 24_000, "r1", "i1")
        events: list[Event] = [
            SessionConnected("x"),
            audio,
            SpeechStarted("i0"),
            ReplyInterrupted("r1"),
            ReplyDone("r1"),
            ErrorEvent("boom", code="x"),
        ]
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(hub.run, ev_receive, playback=play_send))
            async with ev_send:
                for e in events:
                    await ev_send.send(e)
                await trio.testing.wait_all_tasks_blocked()
                assert a.queued == 0  # nothing routed before open()
                hub.open()
        played = [m async for m in play_receive]  # playback closed at the end
        assert played == [audio, ReplyInterrupted("r1"), ReplyDone("r1")]
        everyone = [e for e in events if not isinstance(e, ReplyAudio)]
        assert drain(a) == everyone
        assert drain(b) == [*everyone[:2], SubscriberLagged(missed=3)]
        with pytest.raises(trio.EndOfChannel):
            a.receive_nowait()
        assert hub.delivered == len(everyone)
        late = hub.subscribe()
        with pytest.raises(trio.EndOfChannel):
            late.receive_nowait()


# -------------------------------------------------------------- inside a session


async def test_slow_subscriber_stalls_neither_audio_nor_a_fast_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One subscriber never reads, one reads everything, while realtime capture runs
    and the provider floods events: audio loses nothing, the fast one sees every
    event in order, the slow one gets its backlog then the exact missed count."""
    fmt = AudioFormat(16_000)
    pcm = np.random.default_rng(1).integers(-9000, 9000, 16_000 * 5).astype(np.int16)
    provider = RecordingProvider(input_format=AudioFormat(24_000))
    n_events = 2000
    with trio.fail_after(600):
        async with open_session(
            provider, capture=ArrayCapture(pcm, fmt, realtime=True), subscriber_buffer=64
        ) as session:
            slow = session.subscribe(max_buffer=4)
            fast = session.subscribe()
            fast_got: list[Event] = []

            async def fast_reader() -> None:
                async for e in fast:
                    fast_got.append(e)
                    if len(fast_got) == n_events + 1:
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fast_reader)
                await provider.connected.wait()
                for i in range(n_events):
                    await provider.emit(ev(i))
                    if i % 10 == 0:
                        await trio.sleep(0.01)  # spread over the capture's 5 s
            await provider.input_ended.wait()
            stats = session.stats()

            # The slow one: its first 4 events, then the rest as one notice.
            slow_got = drain(slow)
            assert slow_got == [
                SessionConnected("recording", len(provider.instructions[0])),
                ev(0),
                ev(1),
                ev(2),
                SubscriberLagged(missed=n_events - 3),
            ]
            # A later event comes after no further notice.
            await provider.emit(ev(-1))
            await trio.testing.wait_all_tasks_blocked()
            assert drain(slow) == [ev(-1)]
            assert stats.subscribers_lagged == (n_events - 3, 0)

    assert fast_got[0] == slow_got[0]
    assert fast_got[1:] == [ev(i) for i in range(n_events)]
    assert stats.edges["capture"].dropped_frames == 0
    assert np.array_equal(provider.audio(), convert_oneshot(pcm, fmt, AudioFormat(24_000)))
