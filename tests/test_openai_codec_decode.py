"""codecs.openai_realtime decoding: server events checked against the openai package's
own models (the oracle), error classification, and junk."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RateLimitsUpdatedEvent,
    RealtimeErrorEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioDoneEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
)
from pydantic import BaseModel

from voxtrio.codecs.audio import AudioFrame
from voxtrio.codecs.openai_realtime import FATAL_ERROR_CODES, OpenAIRealtimeCodec, is_fatal_error
from voxtrio.codecs.wire import Ready
from voxtrio.messages import (
    ErrorEvent,
    InputCommitted,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
)

from .test_openai_codec import SERVER, batch_of, frames, ids, texts

# ------------------------------------------------------------------ decoding


def wire_of(model: BaseModel, *, drop_none: bool = True) -> str:
    """A server event as the service would send it, built with the oracle's models."""
    text = model.model_dump_json(exclude_none=drop_none)
    SERVER.validate_json(text)
    return text


def pcm_b64(pcm: np.ndarray) -> str:
    return base64.b64encode(pcm.astype("<i2").tobytes()).decode()


event_ids = ids.map(lambda s: "event_" + s)


@settings(max_examples=60, deadline=None)
@given(event_id=event_ids, item_id=ids, ms=st.integers(0, 10**7), drop_none=st.booleans())
def test_decode_speech_events(event_id: str, item_id: str, ms: int, drop_none: bool) -> None:
    codec = OpenAIRealtimeCodec()
    started = InputAudioBufferSpeechStartedEvent(
        type="input_audio_buffer.speech_started", event_id=event_id, item_id=item_id,
        audio_start_ms=ms,
    )  # fmt: skip
    stopped = InputAudioBufferSpeechStoppedEvent(
        type="input_audio_buffer.speech_stopped", event_id=event_id, item_id=item_id,
        audio_end_ms=ms,
    )  # fmt: skip
    assert codec.decode(wire_of(started, drop_none=drop_none)) == [SpeechStarted(item_id, ms, None)]
    assert codec.decode(wire_of(stopped, drop_none=drop_none)) == [SpeechStopped(item_id, ms, None)]


@settings(max_examples=60, deadline=None)
@given(item_id=ids, text=texts, index=st.integers(0, 5), drop_none=st.booleans())
def test_decode_input_transcription_keeps_the_item_id(
    item_id: str, text: str, index: int, drop_none: bool
) -> None:
    codec = OpenAIRealtimeCodec()
    completed = ConversationItemInputAudioTranscriptionCompletedEvent.model_validate(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "event_id": "e",
            "item_id": item_id,
            "content_index": index,
            "transcript": text,
            "usage": {"type": "duration", "seconds": 1.5},
        }
    )
    assert codec.decode(wire_of(completed, drop_none=drop_none)) == [
        InputTranscriptionCompleted(item_id, text, index)
    ]
    delta = ConversationItemInputAudioTranscriptionDeltaEvent(
        type="conversation.item.input_audio_transcription.delta", event_id="e",
        item_id=item_id, delta=text,
    )  # fmt: skip
    expected = [InputTranscriptionDelta(text, item_id)] if text else []
    assert codec.decode(wire_of(delta, drop_none=drop_none)) == expected


def test_decode_transcription_failure() -> None:
    codec = OpenAIRealtimeCodec()
    failed = ConversationItemInputAudioTranscriptionFailedEvent.model_validate(
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "event_id": "e",
            "item_id": "item_7",
            "content_index": 0,
            "error": {"type": "transcription_error", "code": "audio_unintelligible",
                      "message": "Could not transcribe"},
        }
    )  # fmt: skip
    assert codec.decode(wire_of(failed)) == [
        InputTranscriptionFailed("item_7", "Could not transcribe", "audio_unintelligible")
    ]


def test_decode_commit_names_the_user_item() -> None:
    # The turn's place in the transcript comes from this when no speech event named it.
    codec = OpenAIRealtimeCodec()
    committed = InputAudioBufferCommittedEvent.model_validate(
        {"type": "input_audio_buffer.committed", "event_id": "e", "item_id": "item_3",
         "previous_item_id": None}
    )  # fmt: skip
    assert codec.decode(wire_of(committed)) == [InputCommitted("item_3")]


@settings(max_examples=60, deadline=None)
@given(
    samples=st.integers(0, 2000),
    seed=st.integers(0, 2**32 - 1),
    response_id=ids,
    item_id=ids,
)
def test_decode_reply_audio_round_trips_pcm(
    samples: int, seed: int, response_id: str, item_id: str
) -> None:
    pcm = np.random.default_rng(seed).integers(-32768, 32768, samples).astype(np.int16)
    event = ResponseAudioDeltaEvent(
        type="response.output_audio.delta", event_id="e", response_id=response_id,
        item_id=item_id, output_index=0, content_index=0, delta=pcm_b64(pcm),
    )  # fmt: skip
    decoded = OpenAIRealtimeCodec().decode(wire_of(event))
    if samples == 0:
        assert decoded == []
        return
    (audio,) = decoded
    assert isinstance(audio, ReplyAudio)
    assert audio.sample_rate == 24_000
    assert audio.pcm.dtype == np.int16
    assert audio.pcm.shape == (samples, 1)
    assert np.array_equal(audio.pcm[:, 0], pcm)
    assert (audio.response_id, audio.item_id) == (response_id, item_id)


@settings(max_examples=40, deadline=None)
@given(frame_list=st.lists(frames(), min_size=1, max_size=5))
def test_client_audio_decodes_back_as_server_audio(frame_list: list[AudioFrame]) -> None:
    """Encode a batch, then play each append back as a server audio delta: the
    decoded reply audio equals the input (the codec's two halves agree)."""
    codec = OpenAIRealtimeCodec(max_append_bytes=512)
    batch = batch_of(frame_list)
    out = []
    for wire in codec.encode(batch):
        delta = {"type": "response.output_audio.delta", "event_id": "e", "response_id": "r",
                 "item_id": "i", "output_index": 0, "content_index": 0,
                 "delta": json.loads(wire)["audio"]}  # fmt: skip
        out += codec.decode(json.dumps(delta))
    got = np.concatenate([np.zeros((0, 1), np.int16), *(a.pcm for a in out)])  # type: ignore[union-attr]
    expected = np.concatenate([np.zeros((0, 1), np.int16), *(f.pcm for f in batch.frames)])
    assert np.array_equal(got, expected)


def base(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": "e", "response_id": "resp_1", "item_id": "item_1",
            "output_index": 0, "content_index": 0, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "payload", "expected"),
    [
        (ResponseAudioDoneEvent, base("response.output_audio.done"),
         [ReplyAudioDone("resp_1", "item_1")]),
        (ResponseAudioTranscriptDeltaEvent, base("response.output_audio_transcript.delta",
                                                 delta="Hel"),
         [ReplyTextDelta("Hel", "resp_1", "item_1")]),
        (ResponseAudioTranscriptDoneEvent, base("response.output_audio_transcript.done",
                                                transcript="Hello"),
         [ReplyTextDone("Hello", "resp_1", "item_1")]),
        (ResponseTextDeltaEvent, base("response.output_text.delta", delta="lo"),
         [ReplyTextDelta("lo", "resp_1", "item_1")]),
        (ResponseTextDoneEvent, base("response.output_text.done", text="Hello"),
         [ReplyTextDone("Hello", "resp_1", "item_1")]),
        (ResponseCreatedEvent, {"type": "response.created", "event_id": "e",
                                "response": {"id": "resp_1", "status": "in_progress"}},
         [ReplyStarted("resp_1")]),
        (ResponseDoneEvent, {"type": "response.done", "event_id": "e",
                             "response": {"id": "resp_1", "status": "completed"}},
         [ReplyDone("resp_1", "completed")]),
        (ResponseDoneEvent, {"type": "response.done", "event_id": "e",
                             "response": {"id": "resp_1", "status": "cancelled",
                                          "status_details": {"type": "cancelled",
                                                             "reason": "turn_detected"}}},
         [ReplyInterrupted("resp_1"), ReplyDone("resp_1", "cancelled")]),
        (ResponseDoneEvent, {"type": "response.done", "event_id": "e",
                             "response": {"id": "resp_1", "status": "cancelled",
                                          "status_details": {"type": "cancelled",
                                                             "reason": "client_cancelled"}}},
         [ReplyDone("resp_1", "cancelled")]),
        (ResponseDoneEvent, {"type": "response.done", "event_id": "e",
                             "response": {"id": "resp_1", "status": "failed",
                                          "status_details": {"type": "failed", "error": {
                                              "type": "server_error", "code": "overloaded",
                                              "message": "try later"}}}},
         [ErrorEvent("try later", code="overloaded", source="provider"),
          ReplyDone("resp_1", "failed")]),
        (ResponseOutputItemDoneEvent, {"type": "response.output_item.done", "event_id": "e",
                                       "response_id": "resp_1", "output_index": 0,
                                       "item": {"type": "function_call", "id": "item_2",
                                                "call_id": "call_1", "name": "get_time",
                                                "arguments": "{}", "status": "completed"}},
         [ToolCall("call_1", "get_time", "{}")]),
        (ResponseOutputItemDoneEvent, {"type": "response.output_item.done", "event_id": "e",
                                       "response_id": "resp_1", "output_index": 0,
                                       "item": {"type": "function_call", "id": "item_2",
                                                "call_id": "call_1", "name": "get_time",
                                                "arguments": "{\"a", "status": "incomplete"}},
         []),
        (ResponseOutputItemDoneEvent, {"type": "response.output_item.done", "event_id": "e",
                                       "response_id": "resp_1", "output_index": 0,
                                       "item": {"type": "message", "role": "assistant",
                                                "content": []}},
         []),
        (RealtimeErrorEvent, {"type": "error", "event_id": "e",
                              "error": {"type": "invalid_request_error",
                                        "code": "invalid_value", "message": "bad voice",
                                        "event_id": "vx_3"}},
         [ErrorEvent("bad voice", code="invalid_value", source="provider", event_id="vx_3")]),
        (RealtimeErrorEvent, {"type": "error", "event_id": "e",
                              "error": {"type": "server_error", "message": "oops"}},
         [ErrorEvent("oops", code="server_error", source="provider")]),
        (SessionCreatedEvent, {"type": "session.created", "event_id": "e",
                               "session": {"type": "realtime"}},
         [Ready()]),
        (RateLimitsUpdatedEvent, {"type": "rate_limits.updated", "event_id": "e",
                                  "rate_limits": []},
         []),
    ],
)  # fmt: skip
def test_decode_server_events(
    model: type[BaseModel], payload: dict[str, Any], expected: list[object]
) -> None:
    assert OpenAIRealtimeCodec().decode(wire_of(model.model_validate(payload))) == expected


def test_session_updated_marks_the_configuration_accepted() -> None:
    codec = OpenAIRealtimeCodec()
    codec.connect_messages("x")
    assert not codec.configured
    updated = SessionUpdatedEvent.model_validate(
        {"type": "session.updated", "event_id": "e", "session": {"type": "realtime"}}
    )
    assert codec.decode(wire_of(updated)) == [Ready()]
    assert codec.configured


def test_an_error_about_the_session_update_says_so() -> None:
    codec = OpenAIRealtimeCodec()
    (wire,) = codec.connect_messages("x")
    config_id = json.loads(wire)["event_id"]
    error = {"type": "error", "event_id": "e",
             "error": {"type": "invalid_request_error", "code": "invalid_value",
                       "message": "Invalid voice", "event_id": config_id}}  # fmt: skip
    (event,) = codec.decode(json.dumps(error))
    assert isinstance(event, ErrorEvent)
    assert event.event_id == config_id
    assert "session configuration rejected" in event.message
    assert "Invalid voice" in event.message


def test_unknown_event_types_are_ignored_with_a_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    codec = OpenAIRealtimeCodec()
    with caplog.at_level(logging.DEBUG, logger="voxtrio.openai"):
        assert codec.decode(json.dumps({"type": "brand.new.event", "event_id": "e"})) == []
    assert any("brand.new.event" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ error classification


def server_error(code: str | None, kind: str = "invalid_request_error") -> str:
    error: dict[str, Any] = {"type": kind, "message": "no"}
    if code is not None:
        error["code"] = code
    return wire_of(
        RealtimeErrorEvent.model_validate({"type": "error", "event_id": "e", "error": error})
    )


@pytest.mark.parametrize(
    "code",
    [
        "invalid_api_key",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "billing_something_new",
        "model_not_found",
        "account_deactivated",
    ],
)
def test_errors_that_mean_stop_are_not_recoverable(code: str) -> None:
    (event,) = OpenAIRealtimeCodec().decode(server_error(code))
    assert event == ErrorEvent("no", code=code, source="provider", recoverable=False)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("invalid_value", "invalid_request_error"),
        ("rate_limit_exceeded", "rate_limit_error"),
        (None, "server_error"),
        ("decode_error", "invalid_request_error"),
        ("conversation_already_has_active_response", "invalid_request_error"),
    ],
)
def test_other_errors_stay_recoverable(code: str | None, kind: str) -> None:
    (event,) = OpenAIRealtimeCodec().decode(server_error(code, kind))
    assert isinstance(event, ErrorEvent)
    assert event.recoverable
    assert event.code == (code or kind)


unknown_codes = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1).filter(
    lambda c: c not in FATAL_ERROR_CODES and not c.startswith("billing_")
)


@settings(max_examples=100, deadline=None)
@given(code=unknown_codes)
def test_an_unknown_error_code_is_retried_not_fatal(code: str) -> None:
    """Only the listed codes stop a session: a code the service adds later is
    reported and the session goes on."""
    assert not is_fatal_error(code)
    (event,) = OpenAIRealtimeCodec().decode(server_error(code))
    assert isinstance(event, ErrorEvent)
    assert event.recoverable
    assert event.code == code


def test_a_reply_that_failed_for_lack_of_quota_is_not_recoverable() -> None:
    done = ResponseDoneEvent.model_validate(
        {"type": "response.done", "event_id": "e",
         "response": {"id": "resp_1", "status": "failed",
                      "status_details": {"type": "failed", "error": {
                          "type": "insufficient_quota", "code": "insufficient_quota",
                          "message": "You exceeded your current quota"}}}}
    )  # fmt: skip
    error, finished = OpenAIRealtimeCodec().decode(wire_of(done))
    assert isinstance(error, ErrorEvent)
    assert not error.recoverable
    assert error.code == "insufficient_quota"
    assert finished == ReplyDone("resp_1", "failed")
