"""The fake OpenAI service's conversation as the real GA service reports it, where
third-party clients (the ``openai`` SDK, the Agents SDK, Pipecat) depend on it:
``conversation.item.added``/``.done`` for every item (replies, tool calls, committed
audio, created items) in the service's order, ``conversation.item.retrieve``,
``usage`` in ``response.done``, the session's identity and lifetime, per-response
options (``output_modalities``, ``conversation: "none"``, ``metadata``,
``instructions``), transcription-only sessions, and the scriptable moment of the
input transcription. Driven sans-IO (no socket, no clock) unless a test says so;
every event is checked against the ``openai`` server-event models on the way."""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np
import pytest
import trio

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.messages import CreateReply, InputTranscriptionCompleted, ReplyDone
from voxtrio.testing import ConnectionScript, open_openai_loopback
from voxtrio.testing.openai import (
    FakeRealtimeService,
    OpenAICodecPair,
    ScriptedToolCall,
    TranscriptTiming,
    openai_oracle_available,
    validate_server_event,
)

from .openai_server_helpers import client, recv, recv_until, send, silence, tone
from .test_openai_service import MANUAL, append, kinds, sent, started

pytestmark = pytest.mark.skipif(
    not openai_oracle_available(), reason="the openai package is the test oracle"
)

HEARD: dict[str, Any] = {"type": "realtime", "audio": {"input": {
    "transcription": {"model": "whisper-1"}, "turn_detection": None}}}  # fmt: skip
SPEECH = np.concatenate([silence(300), tone(800), silence(700)])
COMMIT = {"type": "input_audio_buffer.commit"}
TRANSCRIBED = "conversation.item.input_audio_transcription.completed"


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def items_events(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(type, item id, status)`` of the conversation.item.added/done events."""
    return [
        (e["type"], e["item"]["id"], e["item"]["status"])
        for e in events
        if e["type"] in ("conversation.item.added", "conversation.item.done")
    ]


# ------------------------------------------------------------------ 1. assistant items


def test_a_reply_adds_and_finishes_its_item_in_the_services_order() -> None:
    """The GA order: response.created, response.output_item.added,
    conversation.item.added (in progress, no content), the content, then
    response.output_item.done, conversation.item.done (the final item), response.done."""
    service = started(**MANUAL)
    events = sent(service.receive_event({"type": "response.create"}))
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert types[-3:] == ["response.output_item.done", "conversation.item.done", "response.done"]
    assert types.count("conversation.item.added") == types.count("conversation.item.done") == 1
    added, done = of(events, "conversation.item.added")[0], of(events, "conversation.item.done")[0]
    item_id = events[1]["item"]["id"]
    assert added["item"]["id"] == done["item"]["id"] == item_id
    assert (added["item"]["role"], added["item"]["status"], added["item"]["content"]) == (
        "assistant", "in_progress", [])  # fmt: skip
    assert done["item"] == events[-3]["item"] == events[-1]["response"]["output"][0]
    assert done["item"]["content"] == [
        {"type": "output_audio", "transcript": "Hello from the loopback provider."}
    ]
    assert added["previous_item_id"] is None  # the conversation was empty
    # the next item follows it
    again = sent(service.receive_event({"type": "response.create"}))
    assert of(again, "conversation.item.added")[0]["previous_item_id"] == item_id


def test_a_cancelled_reply_finishes_its_item_as_incomplete() -> None:
    service = started(ConnectionScript(pace_replies=True, reply_ms=1000), **MANUAL)
    head = sent(service.receive_event({"type": "response.create"}))
    assert items_events(head)[0][0] == "conversation.item.added"
    tail = sent(service.receive_event({"type": "response.cancel"}))
    assert [e["type"] for e in tail][-3:] == [
        "response.output_item.done", "conversation.item.done", "response.done"]  # fmt: skip
    assert of(tail, "conversation.item.done")[0]["item"]["status"] == "incomplete"


def test_a_tool_call_is_a_conversation_item_too() -> None:
    """Pipecat tracks function calls from ``conversation.item.added``."""
    script = ConnectionScript(tool_calls=(ScriptedToolCall("lookup", '{"q": 1}', call_id="c1"),))
    service = started(script, **MANUAL)
    events = sent(service.receive_event({"type": "response.create"}))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = of(events, "conversation.item.done")[0]["item"]
    assert (done["type"], done["call_id"], done["arguments"]) == ("function_call", "c1", '{"q": 1}')
    assert of(events, "conversation.item.added")[0]["item"]["call_id"] == "c1"


# ------------------------------------------------------------------ 2. user items


def test_a_committed_turn_is_added_and_done_after_the_commit() -> None:
    service = started(**MANUAL)
    service.receive_event(append(tone(200)))
    events = sent(service.receive_event({"type": "input_audio_buffer.commit"}))
    assert [e["type"] for e in events] == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    committed, added, done = events
    assert added["item"] == done["item"]
    assert added["item"]["id"] == committed["item_id"]
    assert (done["item"]["role"], done["item"]["status"]) == ("user", "completed")
    assert done["item"]["content"][0]["type"] == "input_audio"
    assert added["previous_item_id"] == committed["previous_item_id"] is None


def test_a_vad_turn_adds_and_finishes_its_user_item_before_the_reply() -> None:
    service = started(ConnectionScript(transcript_deltas=False))
    types = kinds(service.receive_event(append(SPEECH)))
    user_done = types.index("conversation.item.done")
    assert types[: user_done + 1] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert types[user_done + 1] == "response.created"


def test_a_created_item_is_added_and_done_with_its_content() -> None:
    service = started(**MANUAL)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    first = sent(service.receive_event({"type": "conversation.item.create", "item": item}))
    second = sent(service.receive_event({"type": "conversation.item.create", "item": item}))
    assert [e["type"] for e in first] == ["conversation.item.added", "conversation.item.done"]
    assert first[1]["item"]["content"] == item["content"]
    assert second[0]["previous_item_id"] == first[0]["item"]["id"]


# ------------------------------------------------------------------ 3. retrieve


def test_retrieve_answers_with_the_item_as_the_service_knows_it() -> None:
    """A committed turn comes back with its transcript and its audio; an assistant
    item with its transcript; a created item as created."""
    script = ConnectionScript(transcripts=("book a table",), transcript_deltas=False)
    service = started(script, **HEARD)
    service.receive_event(append(tone(300)))
    commit = sent(service.receive_event({"type": "input_audio_buffer.commit"}))
    user_id = commit[0]["item_id"]
    reply = sent(service.receive_event({"type": "response.create"}))
    assistant_id = reply[1]["item"]["id"]

    (got,) = sent(service.receive_event(
        {"type": "conversation.item.retrieve", "item_id": user_id, "event_id": "r1"}))  # fmt: skip
    assert got["type"] == "conversation.item.retrieved"
    assert (got["item"]["id"], got["item"]["role"]) == (user_id, "user")
    (content,) = got["item"]["content"]
    assert (content["type"], content["transcript"]) == ("input_audio", "book a table")
    pcm = np.frombuffer(base64.b64decode(content["audio"]), "<i2")
    assert np.array_equal(pcm, tone(300))

    (mine,) = sent(service.receive_event(
        {"type": "conversation.item.retrieve", "item_id": assistant_id}))  # fmt: skip
    assert mine["item"]["content"][0]["transcript"] == "Hello from the loopback provider."
    assert mine["item"]["status"] == "completed"


def test_retrieved_turns_split_the_audio_where_the_vad_ended_them() -> None:
    """Two VAD turns in one append: each retrieved turn's audio runs from the end of
    the previous turn to its own ``audio_end_ms``; nothing lost, nothing shared."""
    service = started(ConnectionScript(transcript_deltas=False), **{"type": "realtime"})
    pcm = np.concatenate([SPEECH, SPEECH])
    events = sent(service.receive_event(append(pcm)))
    stops = of(events, "input_audio_buffer.speech_stopped")
    assert len(stops) == 2
    got = []
    for stop in stops:
        retrieve = {"type": "conversation.item.retrieve", "item_id": stop["item_id"]}
        (item,) = sent(service.receive_event(retrieve))
        audio = item["item"]["content"][0]["audio"]
        got.append(np.frombuffer(base64.b64decode(audio), "<i2"))
    ends = [stop["audio_end_ms"] * 24 for stop in stops]
    assert [len(g) for g in got] == [ends[0], ends[1] - ends[0]]
    assert np.array_equal(np.concatenate(got), pcm[: ends[1]])


def test_retrieve_of_an_unknown_item_is_an_error_never_silence() -> None:
    service = started(**MANUAL)
    retrieve = {"type": "conversation.item.retrieve", "item_id": "item_nope", "event_id": "rci_x"}
    (error,) = sent(service.receive_event(retrieve))
    assert error["type"] == "error"
    assert error["error"]["code"] == "item_retrieve_invalid_item_id"
    assert error["error"]["event_id"] == "rci_x"
    assert "item_nope" in error["error"]["message"]
    # a deleted item is unknown too
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    made = sent(service.receive_event({"type": "conversation.item.create", "item": item}))
    item_id = made[0]["item"]["id"]
    service.receive_event({"type": "conversation.item.delete", "item_id": item_id})
    assert kinds(service.receive_event(
        {"type": "conversation.item.retrieve", "item_id": item_id})) == ["error"]  # fmt: skip


# ------------------------------------------------------------------ 4. usage


def usage_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    usage: dict[str, Any] = of(events, "response.done")[-1]["response"]["usage"]
    return usage


def test_response_done_carries_plausible_usage() -> None:
    """Synthetic but consistent: totals add up, the details split them, more input
    audio costs more input tokens, and a reply's output counts as input later."""
    service = started(**MANUAL)
    first = usage_of(sent(service.receive_event({"type": "response.create"})))
    assert first["total_tokens"] == first["input_tokens"] + first["output_tokens"]
    details_in, details_out = first["input_token_details"], first["output_token_details"]
    assert details_in["text_tokens"] + details_in["audio_tokens"] == first["input_tokens"]
    assert details_out["text_tokens"] + details_out["audio_tokens"] == first["output_tokens"]
    assert details_out["audio_tokens"] > 0
    assert details_out["text_tokens"] > 0
    assert "cached_tokens_details" in details_in

    service.receive_event(append(tone(2000)))
    service.receive_event({"type": "input_audio_buffer.commit"})
    second = usage_of(sent(service.receive_event({"type": "response.create"})))
    grew = second["input_tokens"] - first["input_tokens"]
    # the 2 s of audio and the first reply (now context) are input
    assert second["input_token_details"]["audio_tokens"] > details_in["audio_tokens"]
    assert grew >= first["output_tokens"]
    assert 0 < second["input_token_details"]["cached_tokens"] <= second["input_tokens"]

    tool = started(ConnectionScript(tool_calls=(ScriptedToolCall("f"),)), **MANUAL)
    assert usage_of(sent(tool.receive_event({"type": "response.create"})))["output_tokens"] > 0


# ------------------------------------------------------------------ 5. session identity


def test_session_created_names_the_session_and_when_it_expires() -> None:
    service = FakeRealtimeService(created_at=1_800_000_000.0)
    (created,) = sent(service.start())
    session = created["session"]
    assert session["id"].startswith("sess_")
    assert session["object"] == "realtime.session"
    assert session["expires_at"] == 1_800_000_000 + 3600
    (updated,) = sent(service.receive_event({"type": "session.update", "session": {
        "type": "realtime", "instructions": "x"}}))  # fmt: skip
    keys = ("id", "object", "expires_at")
    assert [updated["session"][k] for k in keys] == [session[k] for k in keys]
    short = FakeRealtimeService(ConnectionScript(session_lifetime_s=90.0), created_at=100.0)
    assert sent(short.start())[0]["session"]["expires_at"] == 190
    other = FakeRealtimeService(shared=service.shared)
    assert sent(other.start())[0]["session"]["id"] != session["id"]


def test_the_oracle_allows_the_session_identity_and_nothing_else() -> None:
    base = {"type": "session.created", "event_id": "e1"}
    ok = {"type": "realtime", "id": "sess_1", "object": "realtime.session", "expires_at": 5}
    assert validate_server_event({**base, "session": ok}) is None
    assert validate_server_event({**base, "session": {**ok, "surprise": 1}}) is not None
    assert validate_server_event({**base, "session": {**ok, "expires_at": "soon"}}) is not None


# ------------------------------------------------------------------ 6. per-response options


def test_a_text_only_response_sends_no_audio() -> None:
    service = started(**MANUAL)
    create = {"type": "response.create", "response": {"output_modalities": ["text"]}}
    events = sent(service.receive_event(create))
    types = [e["type"] for e in events]
    assert not [t for t in types if "audio" in t]
    assert "".join(e["delta"] for e in of(events, "response.output_text.delta")) == (
        "Hello from the loopback provider.")  # fmt: skip
    assert events[-1]["response"]["output_modalities"] == ["text"]
    assert usage_of(events)["output_token_details"]["audio_tokens"] == 0
    # the session's own modalities are untouched
    again = kinds(service.receive_event({"type": "response.create"}))
    assert "response.output_audio.delta" in again


def test_an_out_of_band_response_stays_out_of_the_conversation() -> None:
    """``conversation: "none"``: no conversation.item.* events, no place in the
    conversation (retrieve does not find it, later context does not count it), and
    it runs beside a default response; its metadata comes back."""
    service = started(ConnectionScript(pace_replies=True, reply_ms=300), **MANUAL)
    sent(service.receive_event({"type": "response.create"}))  # a default reply, running
    meta = {"topic": "classification"}
    create = {"type": "response.create", "response": {
        "conversation": "none", "metadata": meta, "output_modalities": ["text"],
        "instructions": "Classify the call."}}  # fmt: skip
    events = sent(service.receive_event(create))
    assert not [e for e in events if e["type"] == "error"]  # not "already active"
    oob = [e for e in events if e.get("response_id", e.get("response", {}).get("id"))
           == events[0]["response"]["id"]]  # fmt: skip
    assert items_events(oob) == []
    created, done = events[0]["response"], of(events, "response.done")[-1]["response"]
    assert created["metadata"] == done["metadata"] == meta
    assert created["conversation_id"] is None
    assert done["conversation_id"] is None
    oob_item = done["output"][0]["id"]
    rest = sent(service.advance_to(10.0))  # the default reply finishes
    default_done = of(rest, "response.done")[-1]["response"]
    assert default_done["conversation_id"] is not None
    assert default_done.get("metadata") is None
    assert kinds(service.receive_event(
        {"type": "conversation.item.retrieve", "item_id": oob_item})) == ["error"]  # fmt: skip
    # later context: an out-of-band reply adds nothing to the next one's input
    before = usage_of(sent(service.receive_event(create)))["input_tokens"]
    again = usage_of(sent(service.receive_event(create)))["input_tokens"]
    assert again == before
    assert service.response_instructions[-1] == "Classify the call."


def test_per_response_instructions_replace_the_sessions_for_that_response() -> None:
    service = started(**{**MANUAL, "instructions": "x" * 400})
    plain = usage_of(sent(service.receive_event({"type": "response.create"})))
    service2 = started(**{**MANUAL, "instructions": "x" * 400})
    short = {"type": "response.create", "response": {"instructions": "Be brief."}}
    brief = usage_of(sent(service2.receive_event(short)))
    assert brief["input_token_details"]["text_tokens"] < plain["input_token_details"]["text_tokens"]
    assert service2.response_instructions == ["Be brief."]


# ------------------------------------------------------------------ 7. transcription sessions


def test_a_transcription_session_transcribes_and_never_replies() -> None:
    script = ConnectionScript(transcripts=("note one",), transcript_deltas=False)
    service = FakeRealtimeService(script, model=None, intent="transcription")
    (created,) = sent(service.start())
    assert created["session"]["type"] == "transcription"
    assert created["session"]["object"] == "realtime.transcription_session"
    update = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"}}}}}  # fmt: skip
    (updated,) = sent(service.receive_event(update))
    assert updated["session"]["audio"]["input"]["transcription"]["language"] == "en"
    events = sent(service.receive_event(append(SPEECH)))
    types = [e["type"] for e in events]
    assert not [t for t in types if t.startswith("response.")]
    (done,) = of(events, "conversation.item.input_audio_transcription.completed")
    assert done["transcript"] == "note one"
    assert "conversation.item.done" in types
    (error,) = sent(service.receive_event({"type": "response.create", "event_id": "r"}))
    assert (error["type"], error["error"]["event_id"]) == ("error", "r")
    wrong = {"type": "session.update", "event_id": "u", "session": {"type": "realtime"}}
    assert kinds(service.receive_event(wrong)) == ["error"]


def test_a_realtime_session_refuses_a_transcription_update() -> None:
    service = started()
    wrong = {"type": "session.update", "event_id": "u", "session": {"type": "transcription"}}
    (error,) = sent(service.receive_event(wrong))
    assert (error["type"], error["error"]["event_id"]) == ("error", "u")


async def test_the_loopback_accepts_a_transcription_intent_without_a_model() -> None:
    with trio.fail_after(10):
        async with open_openai_loopback() as server:
            async with client(server, url=f"{server.url}?intent=transcription") as ws:
                created = await recv(ws)
                assert created["session"]["type"] == "transcription"
                await send(ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(
                    SPEECH.astype("<i2").tobytes()).decode()})  # fmt: skip
                events = await recv_until(ws, "conversation.item.done")
                assert "input_audio_buffer.committed" in [e["type"] for e in events]
            assert server.connections[0].rejected_status is None


# ------------------------------------------------------------------ 8. transcript timing


def transcript_position(timing: TranscriptTiming) -> tuple[list[str], int]:
    """The event types of one VAD turn and its reply, and where the completed
    input transcription is among them."""
    script = ConnectionScript(transcript_timing=timing, transcript_deltas=False)
    service = started(script, type="realtime",
                      audio={"input": {"transcription": {"model": "whisper-1"}}})  # fmt: skip
    types = kinds(service.receive_event(append(SPEECH)))
    return types, types.index("conversation.item.input_audio_transcription.completed")


def test_the_input_transcription_comes_when_the_script_says() -> None:
    types, at = transcript_position("before_reply")
    assert at < types.index("response.created")
    types, at = transcript_position("during_reply")
    assert types.index("response.created") < at < types.index("response.done")
    assert at == types.index("response.output_audio_transcript.delta") + 1
    types, at = transcript_position("after_reply")
    assert at == types.index("response.done") + 1
    assert types.count("conversation.item.input_audio_transcription.completed") == 1
    with pytest.raises(ValueError, match="transcript_timing"):
        ConnectionScript(transcript_timing="whenever")  # type: ignore[arg-type]


def test_a_late_transcription_waits_for_the_reply_the_client_asks_for() -> None:
    """A manual commit starts no reply: its transcription comes with the reply the
    client asks for next, or, if none comes first, before the next turn."""
    script = ConnectionScript(transcript_timing="after_reply", transcript_deltas=False)
    service = started(script, **HEARD)
    service.receive_event(append(tone(200)))
    assert "completed" not in " ".join(kinds(service.receive_event(COMMIT)))
    types = kinds(service.receive_event({"type": "response.create"}))
    assert types[-2:] == ["response.done", TRANSCRIBED]
    service.receive_event(append(tone(200)))
    first = kinds(service.receive_event(COMMIT))
    service.receive_event(append(tone(200)))
    second = kinds(service.receive_event(COMMIT))  # no reply in between
    assert TRANSCRIBED not in first
    assert second[:2] == [TRANSCRIBED, "input_audio_buffer.committed"]


# ------------------------------------------------------------------ voxtrio's codec


def test_voxtrio_decodes_every_new_event_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """The codec knows every event the service now sends: none is logged as unknown,
    none decodes into an error."""
    caplog.set_level(logging.DEBUG, logger="voxtrio.openai")
    pair = OpenAICodecPair(OpenAIRealtimeCodec(transcription_model="whisper-1"))
    pair.connect("Be brief.")
    pair.send(CreateReply())
    user = pair.service.shared.new_id("item")  # unknown: an error event
    pair.send_raw(f'{{"type": "conversation.item.retrieve", "item_id": "{user}"}}')
    reply_item = [e for e in pair.server_events if e["type"] == "conversation.item.done"][-1]
    pair.send_raw(
        f'{{"type": "conversation.item.retrieve", "item_id": "{reply_item["item"]["id"]}"}}'
    )
    assert "conversation.item.retrieved" in [e["type"] for e in pair.server_events]
    assert pair.server_event_problems() == []
    assert "unknown" not in caplog.text
    errors = [e for e in pair.events if type(e).__name__ == "ErrorEvent"]
    assert [getattr(e, "code", None) for e in errors] == ["item_retrieve_invalid_item_id"]
    assert [e for e in pair.events if isinstance(e, ReplyDone)]
    assert not [e for e in pair.events if isinstance(e, InputTranscriptionCompleted)]
