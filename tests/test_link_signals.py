"""Every link signal through the REAL link, with a provider the link has never heard of.

The echo protocol (:mod:`voxtrio.testing.echo_codec`, a codec written for these
tests) and its wsproto loopback server on 127.0.0.1 drive ``ready``, ``goAway``,
resumption handles with consumed indexes, and a close code the codec calls final --
through :func:`voxtrio.actors.link.run` and through ``open_session`` with a
:class:`~voxtrio.runtime.websocket_provider.WebsocketProvider`. Nothing in the link,
the session or the vocabulary was changed for it.

Real sockets: no ``autojump_clock``; tests wait on conditions, never on time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from voxtrio.actors import link
from voxtrio.actors.link import ConnectTarget, ReconnectPolicy
from voxtrio.audio import AudioFrame
from voxtrio.messages import (
    AudioDropped,
    EndOfInput,
    ErrorEvent,
    Event,
    FrameBatch,
    LinkInput,
    ReplyAudio,
    SendText,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    ToolResult,
)
from voxtrio.runtime import open_session
from voxtrio.runtime.websocket_provider import WebsocketProvider
from voxtrio.testing.echo_codec import ECHO_FORMAT, EchoCodec
from voxtrio.testing.echo_server import EchoScript, EchoServer, open_echo_server

from .loopback_helpers import Recorder, drain, own_garbage_only

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

FAST = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8)
FRAME = 320  # 20 ms at 16 kHz


@pytest.fixture(autouse=True)
def _sockets_closed() -> Iterator[None]:
    yield from own_garbage_only()


def ramp(frames: int, start: int = 0) -> np.ndarray:
    """Audio whose every frame is different: sample i is i (mod 30000)."""
    return (np.arange(start * FRAME, (start + frames) * FRAME) % 30_000).astype(np.int16)


def frames_of(pcm: np.ndarray, start: int = 0) -> list[AudioFrame]:
    return [
        AudioFrame.from_pcm(pcm[i : i + FRAME], ECHO_FORMAT, pts=start * FRAME + i)
        for i in range(0, len(pcm), FRAME)
    ]


@attrs.define
class Harness:
    send: trio.MemorySendChannel[LinkInput]
    events: Recorder
    instructions: list[str]


@asynccontextmanager
async def echo_link(
    server: EchoServer,
    *,
    policy: ReconnectPolicy = FAST,
    codec_factory: Callable[[], EchoCodec] = EchoCodec,
    max_message_size: int = 16 * 1024 * 1024,
) -> AsyncIterator[Harness]:
    """The real link to ``server``; instructions are numbered per fetch."""
    input_tx, input_rx = trio.open_memory_channel[LinkInput](10_000)
    events_tx, events_rx = trio.open_memory_channel[Event](10_000)
    harness = Harness(input_tx, Recorder(events_rx), [])

    async def instructions() -> str:
        await trio.lowlevel.checkpoint()
        harness.instructions.append(f"instructions #{len(harness.instructions) + 1}")
        return harness.instructions[-1]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(harness.events.run)
        await nursery.start(
            partial(
                link.run,
                input_rx,
                events_tx,
                name="echo",
                codec_factory=codec_factory,
                target=ConnectTarget(server.url, max_message_size=max_message_size),
                instructions=instructions,
                policy=policy,
                seed=3,
            )
        )
        yield harness
        nursery.cancel_scope.cancel()


def committed_audio(server: EchoServer) -> int:
    return sum(len(s.all_audio) for s in server.sessions.values())


# ------------------------------------------------------------------ ready


async def test_audio_waits_for_ready() -> None:
    """The codec waits for ``ready``: the link sends its setup, then nothing until
    the server says ready; then every frame, once, in order."""
    pcm = ramp(20)
    with trio.fail_after(20):
        async with (
            open_echo_server([EchoScript(hold_ready=True)]) as server,
            echo_link(server) as h,
        ):
            for frame in frames_of(pcm):
                h.send.send_nowait(FrameBatch((frame,)))
            conn = await server.wait_for_connection(1)
            # Nothing moves now unless the link sends input before `ready`.
            await trio.testing.wait_all_tasks_blocked()
            assert conn.received == []
            await conn.send_ready()
            h.send.send_nowait(EndOfInput())
            await server.wait_until(lambda: committed_audio(server) >= len(pcm))
        assert conn.before_ready == []
        assert conn.instructions == "instructions #1"
        (session,) = server.sessions.values()
        assert np.array_equal(session.all_audio, pcm)
        assert [type(e) for e in h.events.connection_events()] == [SessionConnected]


# ------------------------------------------------------------------ goAway


async def test_go_away_moves_to_a_resumed_connection_through_a_session() -> None:
    """``open_session`` with ``WebsocketProvider(echo)``: the server says goAway in the
    middle of 3 s of audio; the link reconnects at once (SessionReconnecting with
    delay 0 and the reason, no error), resumes with its handle, resends exactly what
    the server had not confirmed, and the provider keeps every frame exactly once."""
    pcm = ramp(150).reshape(-1, 1)
    with trio.fail_after(30):
        async with open_echo_server([EchoScript(go_away_after=3, ack_every=2)]) as server:
            provider = WebsocketProvider(
                "echo", EchoCodec, lambda: ConnectTarget(server.url), reconnect=FAST, seed=1
            )
            async with (
                trio.open_nursery() as app,
                open_session(
                    provider, instructions="Echo base.", realtime_playback=False
                ) as session,
            ):
                events = Recorder(session.subscribe())
                app.start_soon(events.run)
                app.start_soon(drain, session.output)
                await session.send_audio(pcm, ECHO_FORMAT)  # buffers through the move
                await session.end_input()
                await server.wait_until(lambda: committed_audio(server) >= len(pcm))
                await events.wait_for(SessionReconnected)
                await session.aclose()
        (kept,) = server.sessions.values()
        assert np.array_equal(kept.all_audio, pcm[:, 0])
        first, second = server.connections[:2]
        assert first.closed_by == "client"  # the link left, as asked
        assert second.resumed
        point = int(second.setup["handle"].rsplit(":", 1)[1])  # type: ignore[index]
        after = [m for m in second.received if m["type"] == "audio"]
        assert after  # the move happened in the middle of the audio
        # The second connection got exactly what the handle's point did not hold.
        assert len(kept.audio) == point + len(after)
        kinds = [type(e) for e in events.connection_events()]
        assert kinds == [SessionConnected, SessionReconnecting, SessionReconnected]
        moving = events.of(SessionReconnecting)[0]
        assert moving.delay_s == 0
        assert "goAway" in moving.reason
        assert events.of(SessionReconnected)[0].resumed
        assert events.of(AudioDropped) == []


# ------------------------------------------------------------------ resumption


@settings(max_examples=15, deadline=None)
@example(drop_at=1, ack_every=1)
@example(drop_at=40, ack_every=7)
@given(drop_at=st.integers(1, 60), ack_every=st.integers(1, 8))
def test_a_drop_with_a_handle_resends_exactly_what_was_not_consumed(
    drop_at: int, ack_every: int
) -> None:
    """The server confirms every ``ack_every`` messages and drops TCP at message
    ``drop_at``. The link resumes with the last handle it got and resends exactly
    the messages after the last consumed index: the provider holds every frame
    exactly once, in order, and the resumed connection got nothing it had."""
    pcm = ramp(60)
    one_per_message = attrs.evolve(FAST, max_batch_frames=1)

    async def main() -> None:
        with trio.fail_after(30):
            script = EchoScript(ack_every=ack_every, drop_after=drop_at)
            async with (
                open_echo_server([script]) as server,
                echo_link(server, policy=one_per_message) as h,
            ):
                for frame in frames_of(pcm):
                    h.send.send_nowait(frame)
                h.send.send_nowait(EndOfInput())
                await server.wait_until(lambda: committed_audio(server) >= len(pcm))
                await h.events.wait_for(SessionReconnected)
                first, second = server.connections
                # Settle: a duplicate, had one been sent, would have arrived by now.
                await trio.testing.wait_all_tasks_blocked()
            (kept,) = server.sessions.values()
            assert np.array_equal(kept.all_audio, pcm)
            assert first.closed_by == "dropped"
            assert second.resumed
            point = int(second.setup["handle"].rsplit(":", 1)[1])  # type: ignore[index]
            assert point <= drop_at - 1  # message drop_at was never consumed
            assert len([m for m in second.received if m["type"] == "audio"]) == 60 - point
            assert h.events.of(SessionReconnected)[0].resumed
            assert h.instructions == ["instructions #1", "instructions #2"]

    trio.run(main)


async def test_a_drop_without_a_handle_refetches_instructions_and_resends_nothing() -> None:
    """A server that gives no handles: after a drop the link reconnects without one,
    fetches the instructions again (they re-seed the provider), and writes again
    none of what it wrote on the lost connection; what it had not written goes out."""
    pcm = ramp(40)
    with trio.fail_after(20):
        scripts = [EchoScript(ack_every=None, drop_after=5), EchoScript(ack_every=None)]
        async with (
            open_echo_server(scripts) as server,
            echo_link(server, policy=attrs.evolve(FAST, max_batch_frames=1)) as h,
        ):
            for frame in frames_of(pcm):
                h.send.send_nowait(frame)
            h.send.send_nowait(EndOfInput())
            await h.events.wait_for(SessionReconnected)
            second = await server.wait_for_connection(2)
            await server.wait_until(
                lambda: any(m.get("name") == "end" for m in second.received)
            )
        first = server.connections[0]
        assert second.setup is not None
        assert second.setup["handle"] is None
        assert not second.resumed
        assert second.instructions == "instructions #2"
        assert h.instructions == ["instructions #1", "instructions #2"]
        seen = [m["pts"] for c in (first, second) for m in c.received if m["type"] == "audio"]
        assert len(seen) == len(set(seen))  # nothing written twice
        assert seen == sorted(seen)
        # Every frame not written before the drop went out on the new connection.
        tail = [m["pts"] for m in second.received if m["type"] == "audio"]
        assert tail == list(range(tail[0], 40 * FRAME, FRAME))
        (reconnected,) = h.events.of(SessionReconnected)
        assert not reconnected.resumed


# ------------------------------------------------------------------ the codec's verdict


@pytest.mark.parametrize(("fatal_codes", "fatal"), [((4000,), True), ((4001,), False)])
async def test_a_close_code_is_final_only_when_the_codec_says_so(
    fatal_codes: tuple[int, ...], fatal: bool
) -> None:
    """The server closes with 4000. A codec that calls 4000 final: one
    non-recoverable error, no retry, the link ends. A codec that does not: a
    recoverable error and a reconnect."""
    with trio.fail_after(20):
        async with (
            open_echo_server([EchoScript(close_after=(1, 4000))]) as server,
            echo_link(server, codec_factory=partial(EchoCodec, fatal_close_codes=fatal_codes))
            as h,
        ):
            for frame in frames_of(ramp(10)):
                h.send.send_nowait(frame)
            if fatal:
                await h.events.ended.wait()
            else:
                await h.events.wait_for(SessionReconnected)
        errors = h.events.of(ErrorEvent)
        if fatal:
            (error,) = errors
            assert (error.code, error.recoverable, error.source) == (
                "connection_refused",
                False,
                "link",
            )
            assert "4000" in error.message
            assert len(server.connections) == 1
            assert [type(e) for e in h.events.connection_events()] == [SessionConnected, ErrorEvent]
        else:
            assert [(e.code, e.recoverable) for e in errors] == [("connection_lost", True)]
            assert len(server.connections) == 2


# ------------------------------------------------------------------ sent once


async def test_text_is_reported_when_written_and_once_across_a_resumption() -> None:
    """A text and a tool result queued before the provider is ready are reported on
    ``events`` only once they were written (after ``ready``), as the same objects.
    The connection drops before the server confirmed them; the resumed connection
    writes them again (the provider needs them) but they are not reported again."""
    text, result = SendText("hello", item_id="t1"), ToolResult("call_1", "42", name="f")
    scripts = [EchoScript(hold_ready=True, ack_every=100, drop_after=4)]
    with trio.fail_after(20):
        async with open_echo_server(scripts) as server, echo_link(server) as h:
            frames = frames_of(ramp(3))
            inputs: list[Any] = [frames[0], text, frames[1], result, frames[2], EndOfInput()]
            for msg in inputs:
                h.send.send_nowait(msg)
            conn = await server.wait_for_connection(1)
            await trio.testing.wait_all_tasks_blocked()
            assert h.events.of(SendText) == []  # queued, not written: not reported
            await conn.send_ready()
            await server.wait_until(lambda: committed_audio(server) >= 3 * FRAME)
            await trio.testing.wait_all_tasks_blocked()
        (kept,) = server.sessions.values()
        assert kept.texts == ["hello"]
        assert [m["type"] for m in kept.messages] == [
            "audio", "text", "audio", "tool_result", "audio", "control"
        ]
        assert conn.before_ready == []
        second = server.connections[1]
        assert second.resumed
        assert [m["type"] for m in second.received][:2] == ["audio", "text"]
        (sent_text,) = h.events.of(SendText)
        (sent_result,) = h.events.of(ToolResult)
        assert sent_text is text
        assert sent_result is result
        assert h.events.of(ReplyAudio)  # the echoes came back as reply audio
