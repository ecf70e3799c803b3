"""Session time limits, OpenAI: the link moves a session before ``expires_at``.

The loopback server gives each session a lifetime (``session_lifetime_s``):
``session.created`` carries ``expires_at`` and the server closes with 1001 when it
runs out. The link must move to a new connection before then, at a moment with no
reply in flight, re-seeding the transcript through the new ``session.update``;
the audio at the server across the move equals the one-shot conversion of the
input (nothing lost, nothing twice); the app sees SessionReconnecting /
SessionReconnected with the reason and no ErrorEvent. A 1001 at the limit (a
link that could not move in time) is resumed, not reported as a fault.

The hour-long session runs under ``autojump_clock``: server and client share the
trio run, so the clock jumps whenever both wait.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from voxtrio import (
    AudioFormat,
    ErrorEvent,
    ReconnectPolicy,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    ToolCall,
)
from voxtrio.actors.link.connection import _Expiry
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, OpenAIRealtimeConfig
from voxtrio.codecs.wire import ConnectionExpiry, Ready
from voxtrio.runtime import Session
from voxtrio.testing import ConnectionScript, OpenAILoopback, ScriptedToolCall

from .loopback_helpers import (
    FAST,
    LOOPBACK_MARKS,
    OPENAI,
    Recorder,
    _sockets_closed,  # noqa: F401 - autouse
    openai_session,
    serve,
)

pytestmark = LOOPBACK_MARKS

IN48 = AudioFormat(48_000, 2)
HOUR = 3600.0
#: No keepalive ping in an hour of virtual time with no traffic.
QUIET_LINK = ReconnectPolicy(
    initial_backoff_s=0.01,
    max_backoff_s=0.05,
    max_attempts=8,
    keepalive_interval_s=600,
    keepalive_timeout_s=600,
)


def noise48(seconds: float, seed: int, amplitude: int = 250) -> np.ndarray:
    """48 kHz stereo noise below the loopback VAD's threshold."""
    rng = np.random.default_rng(seed)
    return rng.integers(-amplitude, amplitude, (round(seconds * 48_000), 2)).astype(np.int16)


def tone48(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * 48_000)) / 48_000
    mono = np.round(8000 * np.sin(2 * np.pi * 300.0 * t)).astype(np.int16)
    return np.repeat(mono.reshape(-1, 1), 2, axis=1)


class Pusher:
    """Sends 48 kHz stereo audio in 20 ms chunks at real-time pace (trio time),
    keeping all of it for the one-shot comparison."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sent: list[np.ndarray] = []

    async def push(self, pcm: np.ndarray, step: int = 960, pause_s: float = 0.02) -> None:
        for i in range(0, pcm.shape[0], step):
            chunk = pcm[i : i + step]
            await self.session.send_audio(chunk, IN48)
            self.sent.append(chunk)  # sent: a cancel after it does not undo it
            await trio.sleep(pause_s)

    async def finish(self, server: OpenAILoopback) -> None:
        """End the input (the converter flushes its tail) and wait until the
        server holds all of it and nothing more is moving."""
        await self.session.end_input()
        want = self.expected().shape[0]
        await server.wait_until(lambda: sum(c.audio_samples for c in server.connections) >= want)
        await trio.testing.wait_all_tasks_blocked()

    def check(self, server: OpenAILoopback) -> None:
        """The server's audio, across connections, is the one-shot conversion of
        what was sent, then the silence the codec appends at the end of input (so
        the server's VAD closes a turn still open) -- nothing lost, nothing twice."""
        got, want = server.all_audio(), self.expected()
        np.testing.assert_array_equal(got[: want.shape[0]], want)
        tail = got[want.shape[0] :]
        assert tail.shape[0] <= 24 * 1000, tail.shape
        assert not tail.any()

    def expected(self) -> np.ndarray:
        return convert_oneshot(np.concatenate(self.sent), IN48, OPENAI)


def session_updates(server: OpenAILoopback, index: int) -> list[dict[str, Any]]:
    return server.connections[index].events_of("session.update")


class CloseClock:
    """When the first connection closed (trio time), watched from its start."""

    def __init__(self, server: OpenAILoopback) -> None:
        self.server = server
        self.at: float | None = None

    async def run(self) -> None:
        await self.server.wait_until(lambda: bool(self.server.connections))
        await self.server.connections[0].closed.wait()
        self.at = trio.current_time()


def order(recorder: Recorder, kind: type[Any], n: int = 0) -> int:
    """The position of the ``n``-th event of ``kind`` among all recorded."""
    return [i for i, e in enumerate(recorder.events) if isinstance(e, kind)][n]


# ------------------------------------------------------------------ codec


def test_session_created_expires_at_is_a_link_signal() -> None:
    """``expires_at`` of ``session.created`` becomes ConnectionExpiry after Ready;
    ``session.updated`` and junk values give none (and still the Ready)."""
    codec = OpenAIRealtimeCodec()
    session: dict[str, Any] = {"id": "sess_1", "expires_at": 1_900_000}
    created = {"type": "session.created", "session": session}
    assert codec.decode(json.dumps(created)) == [
        Ready(session_id="sess_1"),
        ConnectionExpiry(1_900_000.0),
    ]
    updated = {"type": "session.updated", "session": {"expires_at": 1_900_000}}
    assert codec.decode(json.dumps(updated)) == [Ready(session_id="sess_1")]
    for junk in ("soon", True, None, -5, [1]):
        session["expires_at"] = junk
        assert codec.decode(json.dumps(created)) == [Ready(session_id="sess_1")], junk


def test_the_move_plan() -> None:
    """60 s before the end by default, forced 5 s before it; a session shorter than
    twice the margin moves halfway; one already over moves at once."""
    policy = ReconnectPolicy()
    assert _Expiry.plan(100.0, HOUR, policy) == _Expiry(3640.0, 3695.0, 3700.0)
    assert _Expiry.plan(0.0, 30.0, policy) == _Expiry(15.0, 25.0, 30.0)
    assert _Expiry.plan(0.0, 4.0, policy) == _Expiry(2.0, 2.0, 4.0)
    assert _Expiry.plan(7.0, -3.0, policy) == _Expiry(7.0, 7.0, 7.0)
    custom = ReconnectPolicy(expiry_margin_s=120, expiry_floor_s=10)
    assert _Expiry.plan(0.0, HOUR, custom) == _Expiry(3480.0, 3590.0, 3600.0)
    with pytest.raises(ValueError, match="expiry_floor_s"):
        ReconnectPolicy(expiry_margin_s=5, expiry_floor_s=6)
    with pytest.raises(ValueError, match="expiry_margin_s"):
        ReconnectPolicy(expiry_margin_s=float("nan"))


# ------------------------------------------------------------------ an hour, virtual


async def test_an_hour_long_session_moves_before_it_expires_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 60-minute session with a user turn at the start and a long reply playing
    when the recycle window opens: the link waits for the reply to finish, then
    moves (before the server's 1001) to a new session whose ``session.update``
    carries the transcript. The server's audio across both connections equals the
    one-shot conversion of what was sent; the reply was not cut; the app sees one
    SessionReconnecting/SessionReconnected with ``session_expiring`` and no error."""
    with trio.fail_after(2 * HOUR):
        # The first connection replies slowly (20 s of paced audio).
        slow = ConnectionScript(pace_replies=True, reply_ms=20_000, reply_chunk_ms=500)
        async with (
            serve(scripts=(slow,), session_lifetime_s=HOUR) as server,
            trio.open_nursery() as nursery,
        ):
            closing = CloseClock(server)
            nursery.start_soon(closing.run)
            async with openai_session(server, reconnect=QUIET_LINK) as (session, recorder):
                pusher = Pusher(session)
                await pusher.push(tone48(1.0))  # a user turn: transcript and a reply
                await pusher.push(noise48(1.0, 1))
                await recorder.wait_for(ReplyDone)
                await trio.sleep_until(HOUR - 70)
                # Speech 66 s before the end: its 20 s reply plays while the
                # recycle window opens (60 s before the end).
                await pusher.push(tone48(1.0))
                await pusher.push(noise48(30.0, 2))
                await recorder.wait_for(SessionReconnected)
                await pusher.push(noise48(2.0, 3))
                await pusher.finish(server)
            first = server.connections[0]
    moved_at = closing.at
    pusher.check(server)
    assert len(server.connections) == 2
    # Moved by the client, before the limit, after the reply in flight finished.
    assert first.closed_by == "client"
    assert first.close_code == 1000
    assert moved_at is not None
    assert HOUR - 60 <= moved_at < HOUR - 5
    assert not recorder.of(ErrorEvent)
    assert not recorder.of(ReplyInterrupted)
    assert [d.status for d in recorder.of(ReplyDone)] == ["completed", "completed"]
    assert order(recorder, ReplyDone, 1) < order(recorder, SessionReconnecting)
    (going,) = recorder.of(SessionReconnecting)
    assert going.delay_s == 0
    assert going.reason.startswith("session_expiring: ")
    (back,) = recorder.of(SessionReconnected)
    assert back.reason == "session_expiring"
    assert not back.resumed
    # The new session is seeded with the conversation so far.
    (update,) = session_updates(server, 1)
    seeded = update["session"]["instructions"]
    assert "loopback utterance 1" in seeded
    assert "loopback utterance 2" in seeded
    assert "Hello from the loopback provider." in seeded
    assert len(recorder.of(ReplyStarted)) == 2


async def test_a_reply_that_never_ends_does_not_hold_the_move_past_the_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reply still playing at 5 s before the end (the floor): the link moves
    anyway, before the server's 1001, and says it was not quiet."""
    with trio.fail_after(2 * HOUR):
        endless = ConnectionScript(pace_replies=True, reply_ms=400_000, reply_chunk_ms=2000)
        async with (
            serve(scripts=(endless,), session_lifetime_s=300) as server,
            trio.open_nursery() as nursery,
        ):
            closing = CloseClock(server)
            nursery.start_soon(closing.run)
            async with openai_session(server, reconnect=QUIET_LINK) as (session, recorder):
                pusher = Pusher(session)
                await pusher.push(tone48(1.0))
                await pusher.push(noise48(1.0, 4))
                await recorder.wait_for(ReplyStarted)
                await recorder.wait_for(SessionReconnected)
    moved_at = closing.at
    # At the floor, 5 s before the end (``expires_at`` is whole seconds: up to 1 s
    # earlier than the server's close).
    assert moved_at is not None
    assert 300 - 6 <= moved_at <= 300 - 5
    assert server.connections[0].closed_by == "client"
    (going,) = recorder.of(SessionReconnecting)
    assert going.reason.startswith("session_expiring: ")
    assert "not quiet" in going.reason
    assert not recorder.of(ErrorEvent)


async def test_a_1001_in_the_expiry_window_is_resumed_not_a_fault(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server ends the session with 1001 inside the expiry window, while a
    tool call the app has not answered keeps the link from moving: the link
    reconnects at once, re-seeded, with ``session_expired`` and no ErrorEvent."""
    with trio.fail_after(2 * HOUR):
        calling = ConnectionScript(tool_calls=(ScriptedToolCall("lookup", "{}"),))
        async with (
            serve(scripts=(calling,), session_lifetime_s=HOUR) as server,
            openai_session(server, reconnect=QUIET_LINK) as (session, recorder),
        ):
            pusher = Pusher(session)
            await pusher.push(tone48(1.0))
            await pusher.push(noise48(1.0, 5))
            await recorder.wait_for(ToolCall)
            await trio.sleep_until(HOUR - 30)
            assert len(server.connections) == 1  # the open call holds the move
            await server.connections[0].close(1001, "going away")
            back = await recorder.wait_for(SessionReconnected)
    assert server.connections[0].closed_by == "server"
    assert back.reason == "session_expired"
    (going,) = recorder.of(SessionReconnecting)
    assert going.delay_s == 0
    assert going.reason.startswith("session_expired: ")
    assert not recorder.of(ErrorEvent)
    (update,) = session_updates(server, 1)
    assert "loopback utterance 1" in update["session"]["instructions"]


async def test_a_1001_before_the_window_is_still_a_fault(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 1001 long before the limit is an unplanned close: reported (recoverable)
    and retried, with the reason ``connection_lost``."""
    with trio.fail_after(2 * HOUR):
        async with (
            serve(session_lifetime_s=HOUR) as server,
            openai_session(server, reconnect=QUIET_LINK) as (_, recorder),
        ):
            await server.wait_until(lambda: bool(server.accepted))
            await trio.sleep(600)
            await server.connections[0].close(1001, "going away")
            back = await recorder.wait_for(SessionReconnected)
    assert back.reason == "connection_lost"
    (lost,) = recorder.of(ErrorEvent)
    assert lost.code == "connection_lost"
    assert lost.recoverable


async def test_an_end_already_past_by_this_clock_plans_no_move(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``expires_at`` in the past by the link's clock (the clocks disagree): no move
    is planned -- a new session would say the same, and moving would start a loop
    of moves -- and the session stays on its connection."""
    stale = {"type": "session.created", "session": {"type": "realtime", "expires_at": 1000}}
    with trio.fail_after(2 * HOUR):
        async with (
            serve(scripts=(ConnectionScript(send_after=((0, stale),)),)) as server,
            openai_session(server, reconnect=QUIET_LINK) as (_, recorder),
        ):
            await recorder.wait_for(SessionConnected)
            await trio.sleep(300)
    assert len(server.connections) == 1
    assert not recorder.of(SessionReconnecting)
    assert not recorder.of(ErrorEvent)


# ------------------------------------------------------------------ real sockets


@pytest.mark.parametrize("append_bytes", [None, 960])
async def test_a_short_session_moves_over_real_sockets(append_bytes: int | None) -> None:
    """Real time, a 3-second session (margin 1 s): the link moves once, at a quiet
    moment, before the server's close; the audio is exact; no error. With appends
    of one 20 ms frame every input takes several wire messages, and the move still
    cuts none of them in two (nor sends a part twice)."""
    policy = ReconnectPolicy(
        initial_backoff_s=0.01, max_backoff_s=0.05, expiry_margin_s=1.0, expiry_floor_s=0.5
    )
    options: dict[str, Any] = {}
    if append_bytes is not None:
        options["config"] = OpenAIRealtimeConfig(
            model="gpt-realtime", max_append_bytes=append_bytes
        )
    with trio.fail_after(60):
        async with (
            serve(session_lifetime_s=3.0) as server,
            openai_session(server, reconnect=policy, **options) as (session, recorder),
        ):
            pusher = Pusher(session)
            async with trio.open_nursery() as nursery:
                # 0.2 s every 20 ms: the writer always has a batch on its hands
                # (in several wire messages with small appends) when the move comes.
                nursery.start_soon(pusher.push, noise48(30.0, 6), 9600, 0.02)
                await recorder.wait_for(SessionReconnected)
                nursery.cancel_scope.cancel()
            await pusher.finish(server)
    pusher.check(server)
    assert server.connections[0].closed_by == "client"
    assert server.connections[0].close_code == 1000
    assert recorder.of(SessionReconnected)[0].reason == "session_expiring"
    assert not recorder.of(ErrorEvent)
    if append_bytes is not None:
        appends = server.connections[0].events_of("input_audio_buffer.append")
        assert len(appends) > len(pusher.sent)  # several messages per input
    assert FAST.expiry_margin_s == 60.0
    assert FAST.expiry_floor_s == 5.0
