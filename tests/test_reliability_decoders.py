"""The server-event decoders never raise, whatever the server sends (issue 13).

Shape-aware fuzzing: every event type either codec knows (and the GA types it
should know), with the fields those events carry filled by arbitrary JSON values
of any shape -- nested objects made of the same field names, so the decoders get
past their first checks. Plus arbitrary text and bytes. The decode must return a
list of events and link signals and never raise; junk is a ``protocol_error``.
Also: the GA events that are optional-field tolerant, DTMF and the idle timeout
surfaced, and no GA event type logged as unknown.
"""

from __future__ import annotations

import json
import logging
import os
import typing
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxtrio.audio import AudioFrame
from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.codecs.wire import LinkSignal
from voxtrio.messages import (
    DtmfReceived,
    ErrorEvent,
    Event,
    FrameBatch,
    InputIdleTimeout,
    ReplyStarted,
    ToolCall,
)

OPENAI_TYPES = [
    "session.created",
    "session.updated",
    "error",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.timeout_triggered",
    "input_audio_buffer.dtmf_event_received",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "response.created",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_item.done",
    "response.done",
    "mcp_list_tools.in_progress",
    "mcp_list_tools.completed",
    "mcp_list_tools.failed",
    "response.mcp_call.in_progress",
    "response.mcp_call.completed",
    "response.mcp_call.failed",
    "response.mcp_call_arguments.delta",
    "response.mcp_call_arguments.done",
]
OPENAI_FIELDS = [
    "session", "id", "error", "message", "code", "type", "event_id", "audio_start_ms",
    "audio_end_ms", "item_id", "delta", "transcript", "content_index", "response",
    "response_id", "text", "item", "status", "status_details", "reason", "call_id",
    "name", "arguments", "event", "received_at", "output_index",
]  # fmt: skip
GEMINI_KEYS = [
    "setupComplete", "serverContent", "toolCall", "toolCallCancellation", "goAway",
    "sessionResumptionUpdate", "usageMetadata", "error", "modelTurn", "parts",
    "inlineData", "data", "mimeType", "text", "turnComplete", "interrupted",
    "generationComplete", "inputTranscription", "outputTranscription", "finished",
    "functionCalls", "id", "name", "args", "ids", "timeLeft", "newHandle", "resumable",
    "lastConsumedClientMessageIndex", "code", "message", "status", "sessionId",
    "waitingForInput", "turnCompleteReason",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "AAAA", "AAE=", "audio/pcm;rate=24000", "10s", "completed"])
)


def shaped(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON of any shape whose objects mostly use ``keys`` (so decoders go deep)."""
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), inner, max_size=6)
        ),
        max_leaves=20,
    )


openai_events = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(OPENAI_TYPES),
    st.dictionaries(st.sampled_from(OPENAI_FIELDS), shaped(OPENAI_FIELDS), max_size=8),
)
gemini_messages = st.dictionaries(st.sampled_from(GEMINI_KEYS), shaped(GEMINI_KEYS), max_size=4)


#: Valid events to mutate: the decoders get past their checks, then meet junk.
_ITEM = {"id": "item_1", "type": "function_call", "status": "completed",
         "call_id": "call_1", "name": "f", "arguments": "{}"}  # fmt: skip
OPENAI_TEMPLATES: list[dict[str, Any]] = [
    {"type": "session.created", "session": {"id": "sess_1", "type": "realtime"}},
    {"type": "session.updated", "session": {"id": "sess_1"}},
    {"type": "error", "error": {"type": "x", "code": "c", "message": "m", "event_id": "vx_1"}},
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 10, "item_id": "i"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 20, "item_id": "i"},
    {"type": "input_audio_buffer.timeout_triggered", "item_id": "i", "audio_start_ms": 0,
     "audio_end_ms": 5},
    {"type": "input_audio_buffer.dtmf_event_received", "event": "5", "received_at": 1},
    {"type": "conversation.item.input_audio_transcription.delta", "item_id": "i", "delta": "a"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "i",
     "transcript": "t", "content_index": 0},
    {"type": "conversation.item.input_audio_transcription.failed", "item_id": "i",
     "error": {"message": "m", "code": "c"}},
    {"type": "response.created", "response": {"id": "r"}},
    {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "AAA="},
    {"type": "response.output_audio.done", "response_id": "r", "item_id": "i"},
    {"type": "response.output_text.delta", "response_id": "r", "item_id": "i", "delta": "d"},
    {"type": "response.output_text.done", "response_id": "r", "item_id": "i", "text": "t"},
    {"type": "response.output_audio_transcript.done", "response_id": "r", "item_id": "i",
     "transcript": "t"},
    {"type": "response.output_item.done", "response_id": "r", "item": _ITEM},
    {"type": "response.done", "response": {"id": "r", "status": "failed", "status_details": {
        "reason": "turn_detected", "error": {"message": "m", "code": "billing_x"}}}},
    {"type": "mcp_list_tools.failed", "item_id": "i", "event_id": "e"},
    {"type": "response.mcp_call.failed", "item_id": "i", "output_index": 0},
]  # fmt: skip
GEMINI_TEMPLATES: list[dict[str, Any]] = [
    {"setupComplete": {"sessionId": "s"}},
    {"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"data": "AAAA", "mimeType": "audio/pcm;rate=24000"}}, {"text": "t"}]},
        "inputTranscription": {"text": "hi", "finished": True},
        "outputTranscription": {"text": "yo"}, "generationComplete": True,
        "turnComplete": True, "interrupted": False}},
    {"toolCall": {"functionCalls": [{"id": "c", "name": "f", "args": {"a": 1}}]}},
    {"toolCallCancellation": {"ids": ["c"]}},
    {"goAway": {"timeLeft": "10s"}},
    {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True,
                                 "lastConsumedClientMessageIndex": "3"}},
    {"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}},
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, value: Any, junk: st.SearchStrategy[Any]) -> Any:
    """``value`` with some of its parts, at any depth, replaced, removed or kept."""
    choice = draw(st.sampled_from(["keep", "keep", "descend", "descend", "replace"]))
    if choice == "replace":
        return draw(junk)
    if choice == "keep" or not isinstance(value, dict | list):
        return value
    if isinstance(value, list):
        return [draw(mutated(v, junk)) for v in value if draw(st.integers(0, 5))]
    out = {}
    for key, inner in value.items():
        if key == "type" or draw(st.integers(0, 5)):  # mostly kept
            out[key] = draw(mutated(inner, junk)) if key != "type" else inner
    return out


openai_mutants = st.sampled_from(OPENAI_TEMPLATES).flatmap(
    lambda t: mutated(t, shaped(OPENAI_FIELDS))
)
gemini_mutants = st.sampled_from(GEMINI_TEMPLATES).flatmap(
    lambda t: mutated(t, shaped(GEMINI_KEYS))
)


def _frame(rate: int) -> FrameBatch:
    pcm = np.zeros((rate // 50, 1), np.int16)
    return FrameBatch((AudioFrame(pcm, rate, 0),))


def openai_codec() -> OpenAIRealtimeCodec:
    codec = OpenAIRealtimeCodec()
    codec.connect_messages("hi")
    codec.encode(_frame(24_000))  # audio positions exist: the pts paths run
    return codec


def gemini_codec() -> GeminiLiveCodec:
    codec = GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test"), id_prefix="t")
    codec.connect_messages("hi")
    codec.encode(_frame(16_000))
    return codec


EVENT_TYPES = typing.get_args(Event)


def _checked(out: object) -> list[object]:
    assert isinstance(out, list)
    for item in out:
        assert isinstance(item, (LinkSignal, *EVENT_TYPES)), item
    return out


def _wire(obj: Any, as_bytes: bool) -> str | bytes:
    text = json.dumps(obj)
    return text.encode() if as_bytes else text


#: 400 examples per run (CI); VOXTRIO_LONG=1: 4,000. Each fuzz test is marked long.
FUZZ_EXAMPLES = 4000 if os.environ.get("VOXTRIO_LONG") == "1" else 400
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.long
@FUZZ
@given(events=st.lists(openai_events | openai_mutants, min_size=1, max_size=6))
def test_openai_decode_never_raises_on_shaped_events(events: list[dict[str, Any]]) -> None:
    codec = openai_codec()
    for event in events:
        _checked(codec.decode(json.dumps(event)))


@pytest.mark.long
@FUZZ
@given(
    messages=st.lists(gemini_messages | gemini_mutants, min_size=1, max_size=6),
    as_bytes=st.booleans(),
)
def test_gemini_decode_never_raises_on_shaped_messages(
    messages: list[dict[str, Any]], as_bytes: bool
) -> None:
    codec = gemini_codec()
    for message in messages:
        _checked(codec.decode(_wire(message, as_bytes)))


@pytest.mark.long
@FUZZ
@given(
    data=st.text(max_size=200)
    | st.binary(max_size=200)
    | shaped(OPENAI_FIELDS + GEMINI_KEYS).map(json.dumps)
)
def test_both_decoders_take_any_text_or_bytes(data: str | bytes) -> None:
    _checked(openai_codec().decode(data))
    _checked(gemini_codec().decode(data))


# ------------------------------------------------------------- GA events


def test_response_created_without_an_id_is_a_reply_start() -> None:
    out = openai_codec().decode(json.dumps({"type": "response.created", "response": {}}))
    assert out == [ReplyStarted(None)]


def test_a_function_call_without_call_id_is_still_a_tool_call() -> None:
    item = {"type": "function_call", "id": "item_1", "name": "f", "arguments": "{}"}
    out = openai_codec().decode(
        json.dumps({"type": "response.output_item.done", "response_id": "r", "item": item})
    )
    assert out == [ToolCall("item_1", "f", "{}")]  # the item's id stands in


def test_dtmf_and_the_idle_timeout_reach_the_app() -> None:
    codec = openai_codec()
    dtmf = {"type": "input_audio_buffer.dtmf_event_received", "event": "7", "received_at": 17}
    assert codec.decode(json.dumps(dtmf)) == [DtmfReceived("7", 17)]
    idle = {
        "type": "input_audio_buffer.timeout_triggered",
        "event_id": "e",
        "item_id": "item_9",
        "audio_start_ms": 0,
        "audio_end_ms": 5000,
    }
    assert codec.decode(json.dumps(idle)) == [InputIdleTimeout("item_9")]


@pytest.mark.parametrize(
    "kind",
    [
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
    ],
)
def test_mcp_progress_is_quiet(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    event = {"type": kind, "event_id": "e", "item_id": "i", "output_index": 0, "delta": "x"}
    assert openai_codec().decode(json.dumps(event)) == []
    assert "unknown" not in caplog.text


@pytest.mark.parametrize("kind", ["mcp_list_tools.failed", "response.mcp_call.failed"])
def test_mcp_failures_are_reported(kind: str) -> None:
    event = {"type": kind, "event_id": "e", "item_id": "i", "output_index": 0}
    (error,) = openai_codec().decode(json.dumps(event))
    assert isinstance(error, ErrorEvent)
    assert (error.source, error.recoverable, error.item_id) == ("provider", True, "i")


def test_no_ga_server_event_type_is_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """Every server event type of the ``openai`` package's GA union is decoded or
    quiet: none logged as unknown."""
    realtime = pytest.importorskip("openai.types.realtime")
    union = realtime.RealtimeServerEvent
    members = typing.get_args(typing.get_args(union)[0]) or typing.get_args(union)
    kinds = {k for m in members for k in typing.get_args(m.model_fields["type"].annotation)}
    assert "input_audio_buffer.dtmf_event_received" in kinds
    caplog.set_level(logging.DEBUG, logger="voxtrio.openai")
    codec = openai_codec()
    for kind in sorted(kinds):
        codec.decode(json.dumps({"type": kind}))
    assert "unknown" not in caplog.text, caplog.text
