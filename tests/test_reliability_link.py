"""Reliability of the link against hostile servers (issue 13, failures 1 and 2).

Real sockets on 127.0.0.1 against the loopback OpenAI server, so no autojump clock:
the policies use short keepalive and backoff times, and every test is bounded by
``trio.fail_after``. Timing assertions only bound from above with a wide margin
(the machine is shared), or from below where a timer cannot fire early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from voxtrio import (
    ErrorEvent,
    ReconnectPolicy,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
)
from voxtrio.actors import link
from voxtrio.actors.link import ConnectTarget
from voxtrio.actors.link.transport import ConnectionClosed, WebSocket, open_websocket
from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig
from voxtrio.messages import Event, LinkInput
from voxtrio.testing import ConnectionScript

from .loopback_helpers import (
    LOOPBACK_MARKS,
    _sockets_closed,  # noqa: F401  (autouse)
    drops,
    noise,
    openai_session,
    push,
    serve,
    transcription_completed,
)

pytestmark = LOOPBACK_MARKS

INTERVAL = 0.2
TIMEOUT = 0.3
#: Generous scheduling slack on a shared 2-core machine.
SLACK = 2.0


def keepalive_policy(**changes: float) -> ReconnectPolicy:
    options: dict[str, float] = {
        "initial_backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "max_attempts": 10_000,
        "keepalive_interval_s": INTERVAL,
        "keepalive_timeout_s": TIMEOUT,
    }
    options.update(changes)
    return ReconnectPolicy(**options)  # type: ignore[arg-type]


# ------------------------------------------------------------- failure 1: silence


async def test_a_silent_server_is_noticed_within_the_keepalive_bound() -> None:
    """After ``session.updated`` the first connection stops reading (so it answers
    no ping) and sends nothing: the link must call the connection lost within
    interval + timeout of the last byte, and reconnect to the next one."""
    with trio.fail_after(30):
        async with (
            serve(scripts=(ConnectionScript(stall_after=1),)) as server,
            openai_session(server, reconnect=keepalive_policy()) as (_, recorder),
        ):
            first = await server.wait_for_connection(1)
            await first.wait_for_messages(1)  # session.update handled, then silence
            silent_since = trio.current_time()
            lost = await recorder.wait_for_error("connection_lost")
            noticed_after = trio.current_time() - silent_since
            await recorder.wait_for(SessionReconnected)
            assert len(server.accepted) == 2
        assert "keepalive" in lost.message
        assert lost.recoverable
        assert noticed_after >= INTERVAL  # never before the link was idle that long
        assert noticed_after <= INTERVAL + TIMEOUT + SLACK


async def test_a_server_that_answers_pings_is_kept() -> None:
    """A quiet server that does answer pings is not dropped: several keepalive
    rounds pass on one connection."""
    with trio.fail_after(30):
        async with (
            serve() as server,
            openai_session(server, reconnect=keepalive_policy()) as (_, recorder),
        ):
            conn = await server.wait_for_connection(1)
            await conn.wait_for_messages(1)
            await trio.sleep(5 * (INTERVAL + TIMEOUT))  # the quiet time under test
            assert conn.is_open
            assert len(server.accepted) == 1
            assert recorder.of(ErrorEvent) == []


async def test_push_mode_send_audio_does_not_block_forever_on_a_dead_link() -> None:
    """The server stops reading after ``session.update`` and every later handshake
    is refused: the app pushes 30 s of live audio, far more than the socket buffers,
    the outbox and the session's channels hold. Without a keepalive the pushes block
    for good; with it the link calls the connection lost and drops the oldest audio
    (reported) instead of blocking the app."""
    pcm = noise(30.0, 3)
    with trio.fail_after(30):
        async with (
            serve(
                scripts=(ConnectionScript(stall_after=1),),
                default_script=ConnectionScript(reject_status=503),
            ) as server,
            openai_session(server, reconnect=keepalive_policy()) as (session, recorder),
        ):
            first = await server.wait_for_connection(1)
            await first.wait_for_messages(1)
            started = trio.current_time()
            with trio.fail_after(INTERVAL + TIMEOUT + 10 * SLACK):
                await push(session, pcm)
            took = trio.current_time() - started
            await recorder.wait_for_error("connection_lost")
            await recorder.wait_until(lambda: bool(drops(recorder)))
        dropped = sum(d.samples for d in drops(recorder))
        assert dropped > 0
        assert first.audio_samples + dropped <= len(pcm)
        assert took < INTERVAL + TIMEOUT + 10 * SLACK


# ------------------------------------------------------------- failure 2: storm


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_accept_and_close_at_once_is_a_failed_attempt(max_attempts: int) -> None:
    """Every connection is accepted and closed before the server says anything:
    none is confirmed, so each counts as a failed attempt, the backoff grows, and
    the link gives up after exactly ``max_attempts`` connections."""
    policy = ReconnectPolicy(
        initial_backoff_s=0.05, max_backoff_s=10.0, jitter=0.0, max_attempts=max_attempts
    )
    window = 3.0
    with trio.fail_after(30):
        async with (
            serve(default_script=ConnectionScript(close_at_once=1011)) as server,
            openai_session(server, reconnect=policy) as (session, recorder),
        ):
            with trio.move_on_after(window):  # bounded: a storm would never end
                await recorder.ended.wait()
            count = len(server.accepted)
            ended = recorder.ended.is_set()
        assert count <= max_attempts, f"{count} connections in {window} s"
        assert ended, "the link never gave up"
        assert count == max_attempts
        delays = [r.delay_s for r in recorder.of(SessionReconnecting)]
        assert delays == [0.05 * 2**i for i in range(max_attempts - 1)]  # it grows
        (gave_up,) = recorder.of(ErrorEvent)
        assert (gave_up.code, gave_up.recoverable) == ("connection_failed", False)
        assert f"after {max_attempts} failed attempts" in gave_up.message
        assert session.closed


async def test_a_flapping_server_after_a_real_connection_still_gives_up() -> None:
    """The first connection is confirmed and then lost; every later one closes at
    once: one recoverable ``connection_lost``, then ``max_attempts`` unconfirmed
    connections with a growing backoff, then the link gives up."""
    policy = ReconnectPolicy(initial_backoff_s=0.02, max_backoff_s=10.0, jitter=0.0, max_attempts=4)
    with trio.fail_after(30):
        async with (
            serve(
                scripts=(ConnectionScript(close_after=1),),
                default_script=ConnectionScript(close_at_once=1011),
            ) as server,
            openai_session(server, reconnect=policy) as (_, recorder),
        ):
            with trio.move_on_after(5.0):
                await recorder.ended.wait()
            count = len(server.accepted)
        assert count == 1 + 4
        assert len(recorder.of(SessionConnected)) == 1
        delays = [r.delay_s for r in recorder.of(SessionReconnecting)]
        assert delays == [0.02 * 2**i for i in range(4)]
        codes = [(e.code, e.recoverable) for e in recorder.of(ErrorEvent)]
        assert codes == [("connection_lost", True), ("connection_failed", False)]


@pytest.mark.parametrize("field", ["keepalive_interval_s", "keepalive_timeout_s"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True])
def test_keepalive_settings_are_validated(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        ReconnectPolicy(**{field: value})  # type: ignore[arg-type]


# ------------------------------------------------------------- a codec that waits for Ready


@asynccontextmanager
async def hang_up_server(first_reply: bytes | None) -> AsyncIterator[tuple[str, list[int]]]:
    """A websocket server on 127.0.0.1 that accepts, answers the client's first
    message with ``first_reply`` (if any) and a close frame (1011). Yields its URL
    and a one-element list counting the connections."""
    count = [0]

    async def handler(stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        count[0] += 1
        try:
            while data := await stream.receive_some(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        await stream.send_all(ws.send(AcceptConnection()))
                    elif isinstance(event, TextMessage | BytesMessage):
                        if ws.state is not ConnectionState.OPEN:
                            continue
                        out = ws.send(BytesMessage(data=first_reply)) if first_reply else b""
                        out += ws.send(CloseConnection(code=1011, reason="bye"))
                        await stream.send_all(out)
                    elif isinstance(event, CloseConnection):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, handler, listeners)
        yield f"ws://127.0.0.1:{port}/ws", count
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("first_reply", "confirmed"),
    [
        (None, False),
        (b'{"usageMetadata": {"totalTokenCount": 1}}', False),  # a message, not Ready
        (b'{"setupComplete": {}}', True),
    ],
)
async def test_a_codec_that_waits_for_ready_is_up_only_after_ready(
    first_reply: bytes | None, confirmed: bool
) -> None:
    """Gemini waits for ``setupComplete``: any other message is no confirmation.
    Unconfirmed hang-ups give up after ``max_attempts``; confirmed ones reset the
    counter (the link is still retrying when the window ends)."""
    policy = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.02, jitter=0.0, max_attempts=3)
    events_tx, events_rx = trio.open_memory_channel[Event](10_000)
    input_tx, input_rx = trio.open_memory_channel[LinkInput](10)

    async def instructions() -> str:
        await trio.lowlevel.checkpoint()
        return "hi"

    with trio.fail_after(30):
        async with hang_up_server(first_reply) as (url, count), trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(
                    link.run,
                    input_rx,
                    events_tx,
                    name="gemini",
                    codec_factory=lambda: GeminiLiveCodec(
                        GeminiLiveConfig(model="m"), id_prefix="t"
                    ),
                    target=ConnectTarget(url),
                    instructions=instructions,
                    policy=policy,
                    seed=1,
                )
            )
            gave_up = False
            with trio.move_on_after(2.0):
                async for event in events_rx:
                    if isinstance(event, ErrorEvent) and not event.recoverable:
                        gave_up = True
                        break
            nursery.cancel_scope.cancel()
        input_tx.close()
    if confirmed:
        assert not gave_up
        assert count[0] > 3
    else:
        assert gave_up
        assert count[0] == 3


async def receive_forever(ws: WebSocket) -> None:
    while True:
        await ws.receive()


async def test_the_transport_pings_when_idle_and_counts_the_pongs() -> None:
    """At the transport: an idle connection to a server that answers pings gets
    a ping every interval and stays open; one that stops reading is ended with
    no close code (lost) within interval + timeout."""
    with trio.fail_after(30):
        async with serve(api_key=None) as server:
            target = ConnectTarget(server.url + "?model=gpt-realtime")
            async with open_websocket(
                target, timeout_s=5, keepalive_interval_s=0.05, keepalive_timeout_s=0.5
            ) as ws:
                await ws.receive()  # session.created; then nothing from the server
                await trio.sleep(0.5)  # the idle time under test: ~10 intervals
                assert ws.pongs >= 3
                assert ws.closed is None
                server.current.stall()
                stalled_at = trio.current_time()
                with pytest.raises(ConnectionClosed) as info:
                    await receive_forever(ws)
                took = trio.current_time() - stalled_at
        assert info.value.code is None
        assert "keepalive" in (info.value.reason or "")
        assert took <= 0.05 + 0.5 + SLACK


async def test_a_slow_reader_is_not_mistaken_for_a_silent_server() -> None:
    """The link's own consumer is slow (its queue is full, so the pump stops
    reading the socket): that is backpressure, not a dead server. The keepalive
    must not end the connection, and every message arrives."""
    with trio.fail_after(30):
        async with serve(api_key=None) as server:
            target = ConnectTarget(server.url + "?model=gpt-realtime")
            async with open_websocket(
                target, timeout_s=5, queue=1, keepalive_interval_s=0.05, keepalive_timeout_s=0.1
            ) as ws:
                conn = await server.wait_for_connection(1)
                for i in range(5):
                    await conn.send_event(transcription_completed(f"item_{i}", "t"))
                await trio.sleep(1.0)  # nobody reads: ten keepalive rounds pass
                got = [await ws.receive() for _ in range(6)]
                assert ws.closed is None
                assert conn.is_open
        assert "item_4" in str(got[-1])
