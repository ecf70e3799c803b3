"""voxtrio.testing.openai: scripting the loopback server over a real socket --
scripted events, drops, closes that lose nothing, stalls, paced replies, items,
shutdown."""

from __future__ import annotations

import base64
import contextlib
import json

import numpy as np
import pytest
import trio
import trio.testing
import trio_websocket

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad
from voxtrio.testing import (
    ConnectionScript,
    LoopbackClosedError,
    OpenAILoopback,
    Outgoing,
    open_openai_loopback,
)

from .openai_server_helpers import (
    append,
    check_server,
    client,
    read_forever,
    recv,
    recv_until,
    send,
    stream,
    tone,
)

# ------------------------------------------------------------------ scripting


async def test_scripted_events_arrive_after_the_chosen_client_message() -> None:
    outgoing: list[tuple[int, Outgoing]] = [
        (0, {"type": "conversation.item.input_audio_transcription.completed",
             "item_id": "item_a", "content_index": 0, "transcript": "first",
             "usage": {"type": "duration", "seconds": 1.0}}),
        (1, "{malformed"),
        (1, b"\x00binary"),
        (2, {"type": "x-unknown.event", "hello": 1}),
        (2, {"type": "error", "error": {"type": "server_error", "code": "boom",
                                        "message": "scripted", "event_id": None,
                                        "param": None}}),
    ]  # fmt: skip
    with trio.fail_after(10):
        async with (
            open_openai_loopback(scripts=[ConnectionScript(send_after=tuple(outgoing))]) as server,
            client(server) as ws,
        ):
            assert (await recv(ws))["type"] == "session.created"
            first = await recv(ws)
            assert first["item_id"] == "item_a"
            await send(ws, {"type": "input_audio_buffer.clear"})
            assert (await recv(ws))["type"] == "input_audio_buffer.cleared"
            assert await ws.get_message() == "{malformed"
            assert await ws.get_message() == b"\x00binary"
            await send(ws, {"type": "input_audio_buffer.clear"})
            assert (await recv(ws))["type"] == "input_audio_buffer.cleared"
            assert json.loads(await ws.get_message())["type"] == "x-unknown.event"
            error = await recv(ws)
            assert error["error"]["code"] == "boom"
        check_server(server)


async def test_send_helpers_and_ids() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server, client(server) as ws:
            await recv(ws)
            conn = await server.wait_for_connection()
            item_id = await conn.send_transcript("hello there", deltas=True)
            events = await recv_until(ws, "conversation.item.input_audio_transcription.completed")
            assert "".join(e.get("delta", "") for e in events[:-1]) == "hello there"
            assert events[-1]["item_id"] == item_id
            response_id = await conn.send_reply("Hi!", audio=tone(30))
            reply = await recv_until(ws, "response.done")
            assert reply[-1]["response"]["id"] == response_id
            deltas = [e for e in reply if e["type"] == "response.output_audio.delta"]
            audio = np.concatenate(
                [np.frombuffer(base64.b64decode(e["delta"]), "<i2") for e in deltas]
            )
            assert np.array_equal(audio, tone(30))
            await conn.send_error("bad thing", code="oops", event_id="vx_9")
            error = await recv(ws)
            assert error["error"] == {"type": "invalid_request_error", "code": "oops",
                                      "message": "bad thing", "param": None,
                                      "event_id": "vx_9"}  # fmt: skip
            ids = [json.loads(m)["event_id"] for m in conn.sent]
            assert len(set(ids)) == len(ids)
        check_server(server)


async def test_drop_after_n_messages_is_an_abnormal_close() -> None:
    with trio.fail_after(10):
        scripts = [ConnectionScript(drop_after=3)]
        async with open_openai_loopback(scripts=scripts) as server:
            async with client(server) as ws:
                await recv(ws)
                for i in range(3):
                    await send(ws, append(tone(20), f"a{i}"))
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await read_forever(ws)
                assert info.value.reason is not None
                assert info.value.reason.code == 1006  # no close frame: like a lost network
            conn = server.connections[0]
            assert len(conn.events) == 3
            assert conn.closed_by == "dropped"
            assert conn.audio_samples == 3 * 480
            # the server takes the next connection normally
            async with client(server) as ws:
                assert (await recv(ws))["type"] == "session.created"
            assert len(server.accepted) == 2
        check_server(server)


async def test_drop_on_demand() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            async with client(server) as ws:
                await recv(ws)
                await server.drop()
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason is not None
                assert info.value.reason.code == 1006
            with pytest.raises(LoopbackClosedError):
                await server.connections[0].send_event({"type": "input_audio_buffer.cleared"})
        check_server(server)


@pytest.mark.parametrize("close_after", [0, 1, 5])
async def test_a_server_close_loses_nothing_the_client_sent(close_after: int) -> None:
    """After the server's close frame the client may still have sent messages; the
    server records every one that left the client before it saw the close."""
    with trio.fail_after(10):
        scripts = [ConnectionScript(close_after=close_after, close_code=1011)]
        async with open_openai_loopback(scripts=scripts) as server:
            sent = 0
            async with client(server) as ws:

                async def send_until_closed() -> None:
                    nonlocal sent
                    for i in range(10_000):
                        await send(ws, append(tone(20), f"a{i}"))
                        sent += 1

                async def drain() -> None:  # a client reads what the server says
                    with contextlib.suppress(trio_websocket.ConnectionClosed):
                        while True:
                            await ws.get_message()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drain)
                    with pytest.raises(trio_websocket.ConnectionClosed):
                        await send_until_closed()
                assert ws.closed is not None
                assert ws.closed.code == 1011
            conn = server.connections[0]
            await conn.wait_closed()
            assert len(conn.events) == sent
            assert conn.audio_samples == sent * 480
            assert conn.closed_by == "server"
            assert conn.close_code == 1011
        check_server(server)


async def test_close_on_demand_with_a_code() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            async with client(server) as ws:
                await recv(ws)
                conn = server.current
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.close, 4000, "bye")
                    with pytest.raises(trio_websocket.ConnectionClosed) as info:
                        await ws.get_message()
                assert info.value.reason is not None
                assert info.value.reason.code == 4000
                assert info.value.reason.reason == "bye"
            assert conn.closed_by == "server"


async def test_close_drops_a_client_that_never_replies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        async with open_openai_loopback() as server, client(server):
            conn = await server.wait_for_connection()
            # the client reads nothing: its one-message queue fills, and it never
            # gets to the close frame
            for _ in range(3):
                await conn.send_event({"type": "input_audio_buffer.cleared"})
            await conn.close(4000, "bye", timeout_s=2)
            assert conn.closed_by == "dropped"
            assert conn.close_code == 1006


async def test_a_stalled_server_stops_reading_until_resumed() -> None:
    with trio.fail_after(10):
        scripts = [ConnectionScript(stall_after=1)]
        async with open_openai_loopback(scripts=scripts) as server, client(server) as ws:
            await recv(ws)
            for i in range(6):
                await send(ws, append(tone(20), f"a{i}"))
            # Everything the client sent is readable at the server by now; had the
            # server been reading, it would not sit blocked with data waiting.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            conn = server.current
            assert len(conn.events) == 1
            conn.resume()
            await conn.wait_for_messages(6)
            assert [r.event["event_id"] for r in conn.events if r.event] == [
                f"a{i}" for i in range(6)
            ]
        check_server(server)


async def test_paced_reply_can_be_cancelled_and_truncated() -> None:
    # A 20 s reply paced in real time: the test never waits for it, it cancels it.
    script = ConnectionScript(pace_replies=True, reply_ms=20_000, reply_chunk_ms=100)
    with trio.fail_after(10):
        async with open_openai_loopback(default_script=script) as server, client(server) as ws:
            await recv(ws)
            await send(ws, {"type": "response.create", "event_id": "r1"})
            created = await recv(ws)
            assert created["type"] == "response.created"
            response_id = created["response"]["id"]
            events = await recv_until(ws, "response.output_audio.delta")
            item_id = events[-1]["item_id"]
            await send(ws, {"type": "response.create", "event_id": "r2"})
            busy = await recv_until(ws, "error")
            assert busy[-1]["error"]["code"] == "conversation_already_has_active_response"
            await send(ws, {"type": "response.cancel", "event_id": "c1"})
            tail = await recv_until(ws, "response.done")
            done = tail[-1]["response"]
            assert done["id"] == response_id
            assert done["status"] == "cancelled"
            assert done["status_details"]["reason"] == "client_cancelled"
            played = sum(
                len(base64.b64decode(e["delta"])) // 2
                for e in events + busy + tail
                if e["type"] == "response.output_audio.delta"
            )
            assert 0 < played < 20_000 * 24  # cut short
            truncate = {"type": "conversation.item.truncate", "item_id": item_id,
                        "content_index": 0}  # fmt: skip
            await send(ws, {**truncate, "event_id": "t1", "audio_end_ms": 50})
            assert (await recv(ws))["type"] == "conversation.item.truncated"
            await send(ws, {**truncate, "event_id": "t2", "audio_end_ms": 10_000})
            error = await recv(ws)
            assert error["error"]["event_id"] == "t2"
            await send(ws, {"type": "response.cancel", "event_id": "c2"})
            assert (await recv(ws))["error"]["code"] == "response_cancel_not_active"
        check_server(server)


async def test_speech_interrupts_a_paced_reply() -> None:
    script = ConnectionScript(pace_replies=True, reply_ms=30_000)
    with trio.fail_after(10):
        async with open_openai_loopback(default_script=script) as server:
            codec = OpenAIRealtimeCodec(turn_detection=ServerVad())
            async with client(server) as ws:
                await recv(ws)
                await send(ws, {"type": "response.create"})
                await recv_until(ws, "response.output_audio.delta")
                await stream(ws, codec, tone(300))
                events = await recv_until(ws, "response.done")
                done = events[-1]["response"]
                assert done["status"] == "cancelled"
                assert done["status_details"]["reason"] == "turn_detected"
                assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
        check_server(server)


async def test_conversation_items_are_echoed() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server, client(server) as ws:
            await recv(ws)
            item = {"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}]}  # fmt: skip
            await send(ws, {"type": "conversation.item.create", "item": item})
            added, done = await recv(ws), await recv(ws)
            assert (added["type"], done["type"]) == (
                "conversation.item.added",
                "conversation.item.done",
            )
            assert added["item"]["content"] == item["content"]
            await send(ws, {"type": "conversation.item.delete", "item_id": added["item"]["id"]})
            assert (await recv(ws))["type"] == "conversation.item.deleted"
        check_server(server)


async def test_shutdown_closes_open_connections_cleanly() -> None:
    stop = trio.Event()
    stopped = trio.Event()

    async def run_server(*, task_status: trio.TaskStatus[OpenAILoopback]) -> None:
        async with open_openai_loopback() as server:
            task_status.started(server)
            await stop.wait()
        stopped.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server)
            async with client(server) as ws:
                await recv(ws)
                stop.set()  # the server block ends while a client is connected
                with pytest.raises(trio_websocket.ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason is not None
                assert info.value.reason.code == 1001  # going away
                await stopped.wait()
        conn = server.connections[0]
        assert conn.closed_by == "shutdown"
        assert conn.close_code == 1001
        with pytest.raises(OSError, match="connect"):  # nobody listens any more
            await trio.open_tcp_stream("127.0.0.1", server.port)
