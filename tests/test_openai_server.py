"""voxtrio.testing.openai: the loopback OpenAI Realtime server, driven by a
plain trio-websocket client on 127.0.0.1 -- handshakes, validation over the wire,
audio and the turn flow. Scripting and closes: test_openai_server_scripts.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trio
import trio_websocket

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, auth_headers
from voxtrio.messages import (
    CommitInput,
    CreateReply,
    InputTranscriptionCompleted,
    ReplyAudio,
    ReplyDone,
    ReplyTextDone,
    SpeechStarted,
    SpeechStopped,
)
from voxtrio.testing import ConnectionScript, open_openai_loopback

from .openai_server_helpers import (
    check_server,
    client,
    recv,
    recv_until,
    send,
    silence,
    stream,
    tone,
)

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
