"""codecs.openai_realtime against hostile input: junk, wrong
types and huge or deeply nested messages never raise and never echo much."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.codecs.wire import MAX_ERROR_TEXT, LinkSignal
from voxtrio.messages import ErrorEvent
from voxtrio.testing.openai_server import validate_server_event

from .test_openai_codec import SERVER
from .test_openai_codec_decode import base, pcm_b64

# ------------------------------------------------------------------ hostile input


def is_protocol_error(event: object) -> bool:
    return (
        isinstance(event, ErrorEvent)
        and event.code == "protocol_error"
        and event.source == "link"
        and event.recoverable
        and len(event.message) <= MAX_ERROR_TEXT + 200
    )


def is_json_object_with_type(data: str) -> bool:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and isinstance(obj.get("type"), str)


@settings(max_examples=300, deadline=None)
@given(data=st.text(max_size=300) | st.binary(max_size=300))
def test_junk_never_raises_and_is_a_protocol_error(data: str | bytes) -> None:
    out = OpenAIRealtimeCodec().decode(data)
    if isinstance(data, str) and is_json_object_with_type(data):
        return  # a typed object: covered by the field tests below
    assert len(out) == 1, out
    assert is_protocol_error(out[0]), out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=10,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_json_that_is_not_a_typed_object_is_a_protocol_error(value: object) -> None:
    assume(not (isinstance(value, dict) and isinstance(value.get("type"), str)))
    (event,) = OpenAIRealtimeCodec().decode(json.dumps(value))
    assert is_protocol_error(event)


VALID_EVENTS: list[dict[str, Any]] = [
    {"type": "input_audio_buffer.speech_started", "event_id": "e", "audio_start_ms": 5,
     "item_id": "i"},
    {"type": "input_audio_buffer.speech_stopped", "event_id": "e", "audio_end_ms": 5,
     "item_id": "i"},
    {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e",
     "item_id": "i", "content_index": 0, "transcript": "hi",
     "usage": {"type": "duration", "seconds": 1.0}},
    {"type": "conversation.item.input_audio_transcription.failed", "event_id": "e",
     "item_id": "i", "content_index": 0, "error": {"message": "no"}},
    {"type": "response.created", "event_id": "e", "response": {"id": "r"}},
    base("response.output_audio.delta", delta=pcm_b64(np.arange(10, dtype=np.int16))),
    base("response.output_audio.done"),
    base("response.output_audio_transcript.delta", delta="a"),
    base("response.output_audio_transcript.done", transcript="a"),
    base("response.output_text.delta", delta="a"),
    base("response.output_text.done", text="a"),
    {"type": "response.done", "event_id": "e", "response": {"id": "r", "status": "completed"}},
    {"type": "error", "event_id": "e", "error": {"type": "t", "message": "m"}},
    {"type": "session.created", "event_id": "e", "session": {"type": "realtime"}},
    {"type": "response.output_item.done", "event_id": "e", "response_id": "r",
     "output_index": 0, "item": {"type": "function_call", "call_id": "c", "name": "n",
                                 "arguments": "{}"}},
]  # fmt: skip

#: The fields the codec needs, per event: dropping or mistyping one is a protocol error.
REQUIRED: dict[str, list[str]] = {
    "input_audio_buffer.speech_started": ["audio_start_ms", "item_id"],
    "input_audio_buffer.speech_stopped": ["audio_end_ms", "item_id"],
    "conversation.item.input_audio_transcription.completed": [
        "item_id", "content_index", "transcript"],
    "conversation.item.input_audio_transcription.failed": ["item_id", "error"],
    "response.created": ["response"],
    "response.output_audio.delta": ["response_id", "item_id", "delta"],
    "response.output_audio.done": ["response_id", "item_id"],
    "response.output_audio_transcript.delta": ["response_id", "item_id", "delta"],
    "response.output_audio_transcript.done": ["response_id", "item_id", "transcript"],
    "response.output_text.delta": ["response_id", "item_id", "delta"],
    "response.output_text.done": ["response_id", "item_id", "text"],
    "response.done": ["response"],
    "error": ["error"],
    "session.created": ["session"],
    "response.output_item.done": ["item"],
}  # fmt: skip


def test_the_valid_events_decode_to_messages() -> None:
    """The baseline for the mutation tests: each of these decodes cleanly."""
    for event in VALID_EVENTS:
        SERVER.validate_python(event)
        out = OpenAIRealtimeCodec().decode(json.dumps(event))
        assert out
        assert not any(isinstance(e, ErrorEvent) and e.source == "link" for e in out)
        assert all(isinstance(e, LinkSignal) or type(e).__module__ == "voxtrio.messages"
                   for e in out)  # fmt: skip


wrong_values = st.sampled_from([None, True, 1.5, -3, "text", [], {}, [1, 2], {"x": 1}])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    event=st.sampled_from(VALID_EVENTS),
    data=st.data(),
    mode=st.sampled_from(["drop", "retype"]),
)
def test_a_known_event_missing_or_mistyping_a_needed_field_is_a_protocol_error(
    event: dict[str, Any], data: st.DataObject, mode: str
) -> None:
    key = data.draw(st.sampled_from(REQUIRED[event["type"]]), label="field")
    broken = dict(event)
    if mode == "drop":
        del broken[key]
    else:
        value = data.draw(wrong_values, label="value")
        assume(type(value) is not type(event[key]))
        assume(not (isinstance(value, dict) and isinstance(event[key], dict)))
        broken[key] = value
    out = OpenAIRealtimeCodec().decode(json.dumps(broken))
    assert len(out) == 1, out
    assert is_protocol_error(out[0]), out
    assert event["type"] in out[0].message  # type: ignore[union-attr]


@pytest.mark.parametrize("delta", ["not base64!!", "AAE", "AA==", "\u00e9\u00e9\u00e9\u00e9"])
def test_bad_reply_audio_is_a_protocol_error(delta: str) -> None:
    out = OpenAIRealtimeCodec().decode(json.dumps(base("response.output_audio.delta", delta=delta)))
    assert len(out) == 1
    assert is_protocol_error(out[0])


def test_megabytes_of_junk_are_not_echoed_into_the_error() -> None:
    codec = OpenAIRealtimeCodec()
    huge = "x" * 5_000_000
    for data in (huge, "{" + huge, huge.encode(), json.dumps([huge])):
        (event,) = codec.decode(data)
        assert is_protocol_error(event)
    error = {"type": "error", "event_id": "e", "error": {"type": "t", "message": huge}}
    (event,) = codec.decode(json.dumps(error))
    assert isinstance(event, ErrorEvent)
    assert len(event.message) <= MAX_ERROR_TEXT + 50


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    (event,) = OpenAIRealtimeCodec().decode("[" * 100_000 + "]" * 100_000)
    assert is_protocol_error(event)


@settings(max_examples=50, deadline=None)
@given(event=st.sampled_from(VALID_EVENTS))
def test_the_codec_survives_junk_between_good_events(event: dict[str, Any]) -> None:
    codec = OpenAIRealtimeCodec()
    good = json.dumps(event)
    before = codec.decode(good)
    for junk in ("{", b"\x00\x01", "[]", '{"type": 5}', '{"type": "x.y"}'):
        codec.decode(junk)
    assert codec.decode(good) == before


def test_server_events_built_here_match_the_oracle() -> None:
    """The hand-written fixtures above are real server events, not guesses."""
    for event in VALID_EVENTS:
        assert validate_server_event(event) is None, (event["type"], validate_server_event(event))
