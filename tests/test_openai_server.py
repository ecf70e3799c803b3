"""voxtrio.testing.openai_server: the loopback OpenAI Realtime server, driven by a
plain trio-websocket client on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from voxtrio.codecs.audio import AudioFormat, AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad, auth_headers
from voxtrio.messages import (
    CommitInput,
    CreateReply,
    FrameBatch,
    InputTranscriptionCompleted,
    ReplyAudio,
    ReplyDone,
    ReplyTextDone,
    SpeechStarted,
    SpeechStopped,
)
from voxtrio.testing import (
    ConnectionScript,
    EnergyVad,
    LoopbackClosedError,
    OpenAILoopback,
    Outgoing,
    open_openai_loopback,
    validate_client_event,
    validate_server_event,
)

SERVER_EVENTS = TypeAdapter(RealtimeServerEvent)
FMT = AudioFormat(24_000)


# ------------------------------------------------------------------ helpers


@asynccontextmanager
async def client(
    server: OpenAILoopback,
    *,
    url: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    target = url or f"{server.url}?model=gpt-realtime"
    async with trio_websocket.open_websocket_url(
        target, extra_headers=headers or [], max_message_size=32 * 1024 * 1024
    ) as ws:
        yield ws


async def recv(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str)
    event: dict[str, Any] = json.loads(message)
    SERVER_EVENTS.validate_python(event)  # the openai models accept what we send
    return event


async def recv_until(ws: trio_websocket.WebSocketConnection, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of type ``kind``."""
    seen = []
    while True:
        event = await recv(ws)
        seen.append(event)
        if event["type"] == kind:
            return seen


async def send(ws: trio_websocket.WebSocketConnection, event: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(event))


def check_server(server: OpenAILoopback) -> None:
    """What must hold after every test: each event the server sent validates against
    the openai server-event models (unknown fields included), and nothing the
    clients sent made it stumble."""
    for conn in server.connections:
        for message in conn.sent:
            if isinstance(message, bytes):
                continue  # scripted binary frames are junk on purpose
            try:
                event = json.loads(message)
            except ValueError:
                continue  # scripted malformed JSON
            if isinstance(event, dict) and event.get("type", "").startswith("x-"):
                continue  # scripted unknown types
            assert validate_server_event(event) is None, (event, validate_server_event(event))
    assert server.internal_errors == []


def tone(ms: int, *, hz: float = 300.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(ms * 24) / 24_000
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 24, np.int16)


def frames_of(pcm: np.ndarray, frame_samples: int = 480) -> list[AudioFrame]:
    return [
        AudioFrame.from_pcm(pcm[i : i + frame_samples], FMT, pts=i)
        for i in range(0, len(pcm), frame_samples)
    ]


async def stream(
    ws: trio_websocket.WebSocketConnection, codec: OpenAIRealtimeCodec, pcm: np.ndarray
) -> int:
    """Send ``pcm`` as batches of ten 20 ms frames; returns the messages sent."""
    frames = frames_of(pcm)
    sent = 0
    for i in range(0, len(frames), 10):
        for wire in codec.encode(FrameBatch(tuple(frames[i : i + 10]))):
            await ws.send_message(wire)
            sent += 1
    return sent


async def read_forever(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


def append(pcm: np.ndarray, event_id: str = "a") -> dict[str, Any]:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return {"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio}


# ------------------------------------------------------------------ handshake, session


async def test_session_created_then_updated_with_the_clients_configuration() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback(api_key="sk-test") as server:
            codec = OpenAIRealtimeCodec(voice="cedar", transcription_model="whisper-1")
            headers = list(auth_headers("sk-test"))
            async with client(server, url=codec.url(server.url), headers=headers) as ws:
                created = await recv(ws)
                assert created["type"] == "session.created"
                for wire in codec.connect_messages("Be brief."):
                    await ws.send_message(wire)
                updated = await recv(ws)
                assert updated["type"] == "session.updated"
                session = updated["session"]
                assert session["instructions"] == "Be brief."
                assert session["audio"]["output"]["voice"] == "cedar"
                assert session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
                assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
            conn = server.connections[0]
            assert conn.model == "gpt-realtime"
            assert conn.authorization == "Bearer sk-test"
            assert conn.header("openai-beta") is None
            assert conn.instructions == ["Be brief."]
            assert [(r.type, r.valid) for r in conn.events] == [("session.update", True)]
            assert "sk-test" not in repr(conn)
            assert "sk-test" not in repr(server)
        check_server(server)


@pytest.mark.parametrize(
    ("script", "url_suffix", "headers", "status"),
    [
        (ConnectionScript(reject_status=401), "?model=m", [], 401),
        (ConnectionScript(reject_status=403), "?model=m", [], 403),
        (ConnectionScript(), "?model=m", [(b"Authorization", b"Bearer wrong")], 401),
        (ConnectionScript(), "?model=m", [], 401),
        (ConnectionScript(), "", [(b"Authorization", b"Bearer k")], 400),
        (
            ConnectionScript(),
            "?model=m",
            [(b"Authorization", b"Bearer k"), (b"OpenAI-Beta", b"realtime=v1")],
            400,
        ),
    ],
)
async def test_rejected_handshakes(
    script: ConnectionScript, url_suffix: str, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    with trio.fail_after(10):
        async with open_openai_loopback(scripts=[script], api_key="k") as server:
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with client(server, url=server.url + url_suffix, headers=headers):
                    pass
            assert info.value.status_code == status
            assert info.value.body is not None
            assert json.loads(info.value.body)["error"]["message"]
            (conn,) = server.connections
            assert conn.rejected_status == status
            assert conn.closed.is_set()
            assert server.accepted == []


async def test_a_wrong_path_is_404() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            url = server.url.replace("/v1/realtime", "/v1/elsewhere") + "?model=m"
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with client(server, url=url):
                    pass
            assert info.value.status_code == 404


async def test_scripts_apply_per_connection_in_order() -> None:
    with trio.fail_after(10):
        scripts = [ConnectionScript(reject_status=503), ConnectionScript()]
        async with open_openai_loopback(scripts=scripts) as server:
            with pytest.raises(trio_websocket.ConnectionRejected):
                async with client(server):
                    pass
            async with client(server) as ws:
                assert (await recv(ws))["type"] == "session.created"
            assert [c.rejected_status for c in server.connections] == [503, None]
            assert server.current is server.connections[1]
        check_server(server)


# ------------------------------------------------------------------ validation


BAD_CLIENT_EVENTS: list[tuple[str | bytes, str]] = [
    ("{not json", "not valid JSON"),
    (b"\x00\x01binary", "binary"),
    ("[1, 2]", "object"),
    (json.dumps({"type": "no.such.event", "event_id": "c1"}), "unknown event type"),
    (json.dumps({"type": "input_audio_buffer.append", "event_id": "c2", "audio": "@@@"}), "base64"),
    (
        json.dumps({"type": "input_audio_buffer.append", "event_id": "c3", "audio": "AAAA"}),
        "16-bit",
    ),
    (
        json.dumps(
            {
                "type": "session.update",
                "event_id": "c4",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                },
            }
        ),
        "rate",
    ),
    (
        json.dumps({"type": "input_audio_buffer.commit", "event_id": "c5", "surprise": 1}),
        "unexpected field",
    ),
    (
        json.dumps(
            {
                "type": "session.update",
                "event_id": "c6",
                "session": {"type": "realtime", "audio": {"input": {"turn_detecton": None}}},
            }
        ),
        "unexpected field",
    ),
    (
        json.dumps({"type": "conversation.item.truncate", "event_id": "c7", "item_id": "i"}),
        "truncate",
    ),
]


@pytest.mark.parametrize(("message", "why"), BAD_CLIENT_EVENTS)
async def test_an_invalid_client_event_is_recorded_and_answered_with_an_error(
    message: str | bytes, why: str
) -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            async with client(server) as ws:
                await recv(ws)  # session.created
                await ws.send_message(message)
                error = await recv(ws)
                assert error["type"] == "error"
                assert error["error"]["code"] == "invalid_event"
                try:
                    parsed = json.loads(message)
                except ValueError:
                    parsed = None
                expected_id = parsed.get("event_id") if isinstance(parsed, dict) else None
                assert error["error"]["event_id"] == expected_id  # names the bad event
                # the server goes on: a valid event afterwards is handled
                await send(ws, {"type": "input_audio_buffer.clear", "event_id": "ok"})
                assert (await recv(ws))["type"] == "input_audio_buffer.cleared"
            conn = server.connections[0]
            bad, good = conn.events
            assert not bad.valid
            assert bad.problem is not None
            assert why.lower() in bad.problem.lower()
            assert good.valid
            assert conn.invalid_events == [bad]
        check_server(server)


@settings(max_examples=40, deadline=None)
@given(junk=st.text(max_size=200) | st.binary(max_size=200))
def test_validation_never_raises_on_junk(junk: str | bytes) -> None:
    try:
        value: object = json.loads(junk)
    except (ValueError, RecursionError):
        value = junk
    problem = validate_client_event(value)
    assert problem is None or isinstance(problem, str)


def test_the_codecs_events_validate_and_tampered_ones_do_not() -> None:
    codec = OpenAIRealtimeCodec()
    (wire,) = codec.connect_messages("hi")
    event = json.loads(wire)
    assert validate_client_event(event) is None
    event["session"]["audio"]["input"]["format"]["rate"] = 48_000
    assert validate_client_event(event) is not None
    assert validate_server_event({"type": "session.created", "event_id": "e"}) is not None


# ------------------------------------------------------------------ audio and the VAD


async def test_received_audio_is_recorded_exactly_per_connection() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            rng = np.random.default_rng(5)
            pcms = [rng.integers(-2000, 2000, n).astype(np.int16) for n in (9_600, 4_321)]
            for pcm in pcms:
                codec = OpenAIRealtimeCodec(turn_detection=None, max_append_bytes=3000)
                async with client(server) as ws:
                    await recv(ws)
                    sent = await stream(ws, codec, pcm)
                    await server.current.wait_for_messages(sent)
            assert [a.shape for a in server.audio] == [(len(p), 1) for p in pcms]
            for got, pcm in zip(server.audio, pcms, strict=True):
                assert np.array_equal(got[:, 0], pcm)
            assert np.array_equal(server.all_audio()[:, 0], np.concatenate(pcms))
        check_server(server)


async def test_speech_produces_the_whole_event_flow() -> None:
    """Silence, one second of tone, silence: speech_started/stopped, a committed turn
    with a canned transcript, then a canned reply (tone + transcript) -- decoded by
    the codec into voxtrio messages."""
    script = ConnectionScript(transcripts=("what time is it",), reply_text="It is noon.")
    with trio.fail_after(10):
        async with open_openai_loopback(default_script=script) as server:
            codec = OpenAIRealtimeCodec()
            async with client(server, url=codec.url(server.url)) as ws:
                for wire in codec.connect_messages("x"):
                    await ws.send_message(wire)
                pcm = np.concatenate([silence(500), tone(1000), silence(800)])
                await stream(ws, codec, pcm)
                raw = await recv_until(ws, "response.done")
            messages = [m for event in raw for m in codec.decode(json.dumps(event))]
            started = [m for m in messages if isinstance(m, SpeechStarted)]
            stopped = [m for m in messages if isinstance(m, SpeechStopped)]
            assert len(started) == 1
            assert len(stopped) == 1
            assert started[0].audio_start_ms == 500 - 300  # onset minus prefix padding
            assert started[0].pts == 200 * 24
            assert stopped[0].audio_end_ms is not None
            assert 1500 + 500 <= stopped[0].audio_end_ms <= 1500 + 520  # + silence_duration
            (done,) = [m for m in messages if isinstance(m, InputTranscriptionCompleted)]
            assert done.item_id == started[0].item_id == stopped[0].item_id
            assert done.transcript == "what time is it"
            reply = [m for m in messages if isinstance(m, ReplyAudio)]
            audio = np.concatenate([m.pcm for m in reply])
            assert audio.shape == (script.reply_ms * 24, 1)
            assert np.abs(audio).max() > 1000  # a tone, not silence
            assert [m.text for m in messages if isinstance(m, ReplyTextDone)] == ["It is noon."]
            assert isinstance(messages[-1], ReplyDone)
            assert messages[-1].status == "completed"
        check_server(server)


async def test_manual_turns_commit_and_reply_on_request() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            codec = OpenAIRealtimeCodec(turn_detection=None)
            async with client(server) as ws:
                for wire in codec.connect_messages("x"):
                    await ws.send_message(wire)
                await recv_until(ws, "session.updated")
                await stream(ws, codec, tone(50))
                (too_small,) = codec.encode(CommitInput())
                await ws.send_message(too_small)
                error = await recv(ws)
                assert error["error"]["code"] == "input_audio_buffer_commit_empty"
                assert error["error"]["event_id"] == json.loads(too_small)["event_id"]
                await stream(ws, codec, tone(200))
                for wire in codec.encode(CommitInput()):
                    await ws.send_message(wire)
                events = await recv_until(
                    ws, "conversation.item.input_audio_transcription.completed"
                )
                kinds = [e["type"] for e in events]
                assert "input_audio_buffer.speech_started" not in kinds  # no VAD
                assert kinds[0] == "input_audio_buffer.committed"
                for wire in codec.encode(CreateReply()):
                    await ws.send_message(wire)
                reply = await recv_until(ws, "response.done")
                assert reply[0]["type"] == "response.created"
                assert reply[-1]["response"]["status"] == "completed"
        check_server(server)


@st.composite
def speechy(draw: st.DrawFn) -> np.ndarray:
    parts = draw(
        st.lists(st.tuples(st.booleans(), st.integers(1, 80)), min_size=1, max_size=8),
        label="loud/quiet runs of 10 ms",
    )
    return np.concatenate([tone(n * 10) if loud else silence(n * 10) for loud, n in parts])


@settings(max_examples=60, deadline=None)
@given(pcm=speechy(), cuts=st.lists(st.integers(0, 20_000), max_size=8))
def test_the_vad_does_not_depend_on_chunking(pcm: np.ndarray, cuts: list[int]) -> None:
    whole = EnergyVad().push(pcm)
    vad = EnergyVad()
    bounds = [0, *sorted(c % (len(pcm) + 1) for c in cuts), len(pcm)]
    pieces = []
    for a, b in itertools.pairwise(bounds):
        pieces += vad.push(pcm[a:b])
    assert pieces == whole


@settings(max_examples=60, deadline=None)
@given(pcm=speechy())
def test_the_vad_alternates_and_stays_in_time(pcm: np.ndarray) -> None:
    events = EnergyVad().push(pcm)
    kinds = [k for k, _ in events]
    assert kinds == ["start", "stop"] * (len(kinds) // 2) + ["start"] * (len(kinds) % 2)
    times = [ms for _, ms in events]
    assert all(0 <= ms <= len(pcm) // 24 for ms in times)
    if np.abs(pcm).max() >= 1000:
        assert kinds[:1] == ["start"]  # loud audio is heard: stops a do-nothing VAD


def test_the_vad_ignores_quiet_audio() -> None:
    rng = np.random.default_rng(0)
    assert EnergyVad().push(rng.integers(-100, 100, 48_000).astype(np.int16)) == []


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
