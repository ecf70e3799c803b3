"""voxtrio.testing.openai.service: the sans-IO fake OpenAI Realtime service, driven
directly -- no trio, no socket, no clock (time is a number the test passes in)."""

from __future__ import annotations

import base64
import itertools
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.testing.openai import (
    Close,
    ConnectionScript,
    Drop,
    FakeRealtimeService,
    Send,
    ServiceOutput,
    SharedCounters,
    Stall,
    validate_server_event,
)

from .openai_server_helpers import silence, tone

MANUAL: dict[str, Any] = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def sent(outputs: list[ServiceOutput]) -> list[dict[str, Any]]:
    """The events among ``outputs``; each must validate against the openai models."""
    events = []
    for out in outputs:
        if isinstance(out, Send) and isinstance(out.data, str):
            event = json.loads(out.data)
            assert validate_server_event(event) is None, (event, validate_server_event(event))
            events.append(event)
    return events


def kinds(outputs: list[ServiceOutput]) -> list[str]:
    return [e["type"] for e in sent(outputs)]


def append(pcm: np.ndarray, event_id: str = "a") -> dict[str, Any]:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return {"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio}


def reply_audio(events: list[dict[str, Any]]) -> np.ndarray:
    return np.concatenate(
        [np.zeros(0, np.int16)]
        + [
            np.frombuffer(base64.b64decode(e["delta"]), "<i2")
            for e in events
            if e["type"] == "response.output_audio.delta"
        ]
    )


def started(script: ConnectionScript | None = None, **update: Any) -> FakeRealtimeService:
    service = FakeRealtimeService(script)
    assert kinds(service.start()) == ["session.created"]
    if update:
        out = service.receive_event({"type": "session.update", "session": update})
        assert kinds(out) == ["session.updated"]
    return service


# ------------------------------------------------------------------ session, validation


def test_session_update_merges_and_is_confirmed() -> None:
    service = started()
    out = service.receive_event(
        {
            "type": "session.update",
            "event_id": "u1",
            "session": {"type": "realtime", "instructions": "Be brief.",
                        "audio": {"output": {"voice": "cedar"}}},
        }
    )  # fmt: skip
    (updated,) = sent(out)
    assert updated["session"]["instructions"] == "Be brief."
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"
    assert updated["session"]["audio"]["output"]["format"]["rate"] == 24_000  # kept
    assert service.instructions == ["Be brief."]
    wrong = service.receive_event({"type": "session.update", "event_id": "u2",
                                   "session": {"type": "transcription"}})  # fmt: skip
    (error,) = sent(wrong)
    # a realtime session stays one (the service refuses to change the type)
    assert (error["error"]["code"], error["error"]["event_id"]) == ("invalid_value", "u2")


@settings(max_examples=60, deadline=None)
@given(junk=st.text(max_size=200) | st.binary(max_size=200))
def test_junk_is_recorded_and_answered_never_raised(junk: str | bytes) -> None:
    service = started()
    out = service.receive(junk)
    (record,) = service.events
    assert record.size == len(junk)
    if record.valid:  # hypothesis found a valid event: fine, but it was handled
        assert not any(e["type"] == "error" and e["error"]["code"] == "invalid_event"
                       for e in sent(out))  # fmt: skip
    else:
        assert kinds(out) == ["error"]
        assert service.invalid_events == [record]
    assert service.shared.internal_errors == []
    # and the service goes on
    assert kinds(service.receive_event({"type": "input_audio_buffer.clear"})) == [
        "input_audio_buffer.cleared"
    ]


def test_event_ids_are_filled_unique_and_kept_when_given() -> None:
    service = started()
    first = json.loads(service.serialize({"type": "x"}))
    second = json.loads(service.serialize({"type": "x"}))
    assert first["event_id"] != second["event_id"]
    assert json.loads(service.serialize({"type": "x", "event_id": "mine"}))["event_id"] == "mine"
    assert service.serialize("{raw") == "{raw"
    assert service.serialize(b"\x00") == b"\x00"
    with pytest.raises(TypeError):
        service.serialize(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ audio and turns


def test_speech_makes_a_turn_a_transcript_and_a_reply() -> None:
    script = ConnectionScript(transcripts=("what time is it",), reply_text="It is noon.")
    service = started(script, type="realtime",
                      audio={"input": {"transcription": {"model": "whisper-1"}}})  # fmt: skip
    pcm = np.concatenate([silence(500), tone(1000), silence(800)])
    events = sent(service.receive_event(append(pcm)))
    types = [e["type"] for e in events]
    assert types[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
    ]
    assert events[0]["audio_start_ms"] == 500 - 300
    assert 1500 + 500 <= events[1]["audio_end_ms"] <= 1500 + 520
    item_id = events[0]["item_id"]
    assert events[1]["item_id"] == events[2]["item_id"] == item_id
    (done,) = [e for e in events if e["type"].endswith("transcription.completed")]
    assert (done["item_id"], done["transcript"]) == (item_id, "what time is it")
    assert types[-1] == "response.done"
    assert events[-1]["response"]["status"] == "completed"
    assert len(reply_audio(events)) == script.reply_ms * 24
    (said,) = [e["transcript"] for e in events if e["type"].endswith("transcript.done")]
    assert said == "It is noon."
    assert np.array_equal(service.audio[:, 0], pcm)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    runs = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1, max_size=6))
    pcm = np.concatenate([tone(n * 10) if loud else silence(n * 10) for loud, n in runs])
    cuts = draw(st.lists(st.integers(0, len(pcm)), max_size=10))
    return pcm, sorted(cuts)


@settings(max_examples=40, deadline=None)
@given(case=chunked())
def test_turns_and_audio_do_not_depend_on_how_audio_is_split(
    case: tuple[np.ndarray, list[int]],
) -> None:
    pcm, cuts = case
    whole = started()
    expected = whole.receive_event(append(pcm))
    split = started()
    got: list[ServiceOutput] = []
    for a, b in itertools.pairwise([0, *cuts, len(pcm)]):
        got += split.receive_event(append(pcm[a:b]))
    assert np.array_equal(split.audio, whole.audio)
    assert np.array_equal(split.audio[:, 0], pcm)
    assert sent(got) == sent(expected)  # same events, same ids, same order


def test_manual_commit_needs_100_ms_and_clear_empties_the_buffer() -> None:
    service = started(**MANUAL)
    assert kinds(service.receive_event(append(tone(50)))) == []  # no VAD: nothing heard
    (error,) = sent(service.receive_event({"type": "input_audio_buffer.commit", "event_id": "c"}))
    assert (error["error"]["code"], error["error"]["event_id"]) == (
        "input_audio_buffer_commit_empty", "c")  # fmt: skip
    service.receive_event(append(tone(60)))
    assert kinds(service.receive_event({"type": "input_audio_buffer.commit"})) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    service.receive_event(append(tone(200)))
    assert kinds(service.receive_event({"type": "input_audio_buffer.clear"})) == [
        "input_audio_buffer.cleared"]  # fmt: skip
    assert kinds(service.receive_event({"type": "input_audio_buffer.commit"})) == ["error"]
    assert service.audio_samples == (50 + 60 + 200) * 24


def test_items_are_created_and_deleted() -> None:
    service = started()
    out = sent(service.receive_event({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
    assert [e["type"] for e in out] == ["conversation.item.added", "conversation.item.done"]
    item_id = out[0]["item"]["id"]
    delete = {"type": "conversation.item.delete", "item_id": item_id}
    assert kinds(service.receive_event(delete)) == ["conversation.item.deleted"]
    (again,) = sent(service.receive_event({**delete, "event_id": "d2"}))
    assert again["error"]["code"] == "item_delete_invalid_item_id"  # fmt: skip


# ------------------------------------------------------------------ paced replies


PACED = ConnectionScript(pace_replies=True, reply_ms=1000, reply_chunk_ms=100)


def test_a_paced_reply_sends_one_chunk_per_chunk_of_time() -> None:
    service = FakeRealtimeService(PACED, now=10.0)
    service.start()
    first = sent(service.receive_event({"type": "response.create"}))
    assert first[0]["type"] == "response.created"
    assert len(reply_audio(first)) == 100 * 24  # only the first chunk
    assert service.next_wakeup == pytest.approx(10.1)
    assert sent(service.advance_to(10.05)) == []  # not due yet
    middle = sent(service.advance_to(10.35))  # chunks due at 10.1, 10.2, 10.3
    assert len(reply_audio(middle)) == 3 * 100 * 24
    rest = sent(service.advance_to(100.0))
    assert len(reply_audio(rest)) == 6 * 100 * 24
    assert rest[-1]["response"]["status"] == "completed"
    assert service.next_wakeup is None


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.floats(0, 0.5), max_size=30))
def test_a_paced_reply_is_the_whole_tone_whatever_the_clock_does(steps: list[float]) -> None:
    service = FakeRealtimeService(PACED)
    service.start()
    events = sent(service.receive_event({"type": "response.create"}))
    now = 0.0
    for step in steps:
        now += step
        events += sent(service.advance_to(now))
    events += sent(service.advance_to(now + 2.0))
    whole = FakeRealtimeService(ConnectionScript(reply_ms=1000, reply_chunk_ms=100))
    whole.start()
    unpaced = sent(whole.receive_event({"type": "response.create"}))
    assert np.array_equal(reply_audio(events), reply_audio(unpaced))
    assert [e["type"] for e in events] == [e["type"] for e in unpaced]


def test_cancel_ends_a_paced_reply_at_once_and_truncate_checks_what_played() -> None:
    service = started(PACED)
    head = sent(service.receive_event({"type": "response.create"}))
    response_id, item_id = head[0]["response"]["id"], head[-1]["item_id"]
    played = sent(service.advance_to(0.25))
    busy = sent(service.receive_event({"type": "response.create", "event_id": "r2"}))
    assert busy[0]["error"]["code"] == "conversation_already_has_active_response"
    tail = sent(service.receive_event({"type": "response.cancel", "event_id": "c1"}))
    assert tail[-1]["type"] == "response.done"
    assert tail[-1]["response"]["id"] == response_id
    assert tail[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert reply_audio(tail).size == 0  # nothing more after the cancel
    assert len(reply_audio(head + played)) == 300 * 24
    assert service.next_wakeup is None
    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    assert kinds(service.receive_event({**truncate, "audio_end_ms": 300})) == [
        "conversation.item.truncated"]  # fmt: skip
    (past,) = sent(service.receive_event({**truncate, "audio_end_ms": 301, "event_id": "t"}))
    assert (past["error"]["code"], past["error"]["event_id"]) == ("invalid_value", "t")
    (none,) = sent(service.receive_event({"type": "response.cancel"}))
    assert none["error"]["code"] == "response_cancel_not_active"


def test_speech_interrupts_a_paced_reply_after_speech_started() -> None:
    service = started(ConnectionScript(pace_replies=True, reply_ms=30_000))
    service.receive_event({"type": "response.create"})
    types = kinds(service.receive_event(append(tone(300))))
    assert types[0] == "input_audio_buffer.speech_started"
    assert types[-1] == "response.done"
    assert service.next_wakeup is None


def test_a_manual_reply_is_out_of_reach_of_cancel() -> None:
    service = started(PACED)
    response_id, out = service.send_reply("Hi!", audio=tone(250))
    assert not service.reply_finished(response_id)
    assert kinds(service.receive_event({"type": "response.cancel"})) == ["error"]
    rest = sent(service.advance_to(1.0))
    assert service.reply_finished(response_id)
    assert np.array_equal(reply_audio(sent(out) + rest), tone(250))


# ------------------------------------------------------------------ scripts, sharing


def test_scripted_outputs_follow_the_nth_message_in_order() -> None:
    script = ConnectionScript(send_after=((1, "{junk"), (2, b"\x01")), stall_after=1,
                              close_after=2, close_code=4000, drop_after=3)  # fmt: skip
    service = FakeRealtimeService(script)
    service.start()
    clear = {"type": "input_audio_buffer.clear"}
    first = service.receive_event(clear)
    assert first[1:] == [Send("{junk"), Stall()]
    second = service.receive_event(clear)
    assert second[1:] == [Send(b"\x01"), Close(4000, "scripted close")]
    assert service.receive_event(clear)[1:] == [Drop()]


def test_connections_sharing_counters_take_transcripts_in_turn() -> None:
    shared = SharedCounters()
    script = ConnectionScript(transcripts=("one", "two"), transcript_deltas=False)
    update = {"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"transcription": {"model": "m"}, "turn_detection": None}}}}  # fmt: skip
    said = []
    for index in range(3):
        service = FakeRealtimeService(script, index=index, shared=shared)
        service.start()
        service.receive_event(update)
        service.receive_event(append(tone(200)))
        out = sent(service.receive_event({"type": "input_audio_buffer.commit"}))
        said += [e["transcript"] for e in out if "transcript" in e]
    assert said == ["one", "two", "one"]
    assert shared.internal_errors == []


SANS_IO_MODULES = (
    *("events", "oracle", "vad", "scripts", "replies"),
    *("conversation", "handlers", "service", "pair"),
)


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_the_sans_io_modules_import_no_io_library(module: str) -> None:
    """The service and the pair run with no event loop: none of their modules imports
    trio, wsproto, a socket library, or the socket-driving modules of the package."""
    import ast
    from importlib import resources

    source = (resources.files("voxtrio.testing.openai") / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module in ("connection", "server"):
            imported.add(node.module)
    assert not imported & {"trio", "wsproto", "socket", "trio_websocket", "connection", "server"}
