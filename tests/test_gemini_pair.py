"""End-to-end Gemini Live protocol tests, codec against the fake service, no socket.

Every client message the codec produces in these tests validates with google-genai's
``LiveClientMessage``; every server message the fake sends parses as
``LiveServerMessage`` (checked in ``finish``).
"""

from __future__ import annotations

import itertools
from importlib import resources

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.audio import AudioFormat, AudioFrame
from voxtrio.codecs.convert import Converter, convert_oneshot
from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig, ToolCallCancelled
from voxtrio.codecs.wav import read_wav
from voxtrio.codecs.wire import GoAway, Ready, ResumptionHandle
from voxtrio.messages import (
    EndOfInput,
    FrameBatch,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyTextDone,
    ToolCall,
    ToolResult,
)
from voxtrio.testing.gemini import (
    CloseConnection,
    GeminiPair,
    GeminiService,
    GeminiSessions,
    oracle,
)

TARGET = AudioFormat(16_000, 1)


def new_pair(
    *, sessions: GeminiSessions | None = None, binary: bool = True, prefix: str = "p", **kw: object
) -> GeminiPair:
    config = GeminiLiveConfig(model="gemini-live-test", **kw)  # type: ignore[arg-type]
    service = GeminiService(sessions=sessions, binary=binary)
    return GeminiPair(GeminiLiveCodec(config, id_prefix=prefix), service)


def finish(pair: GeminiPair) -> None:
    """Both directions valid against the vendor's own types."""
    for wire in pair.client_wire:
        oracle.client_message(wire)
    for reply in pair.server_wire:
        oracle.server_message(reply)
    assert all(r.problem is None for r in pair.service.records)


def hello_48k_stereo() -> tuple[np.ndarray, AudioFormat]:
    with resources.as_file(resources.files("voxtrio") / "data" / "hello_48k_stereo.wav") as path:
        return read_wav(path)


def tone_44k_mono() -> tuple[np.ndarray, AudioFormat]:
    t = np.arange(int(44_100 * 0.7)) / 44_100
    rng = np.random.default_rng(7)
    x = 9000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 800, t.shape)
    return np.clip(x, -32768, 32767).astype(np.int16).reshape(-1, 1), AudioFormat(44_100, 1)


SOURCES = {"48k_stereo": hello_48k_stereo, "44k_mono": tone_44k_mono}


def converted_inputs(pcm: np.ndarray, fmt: AudioFormat, cuts: list[int]) -> list[FrameBatch]:
    """``pcm`` converted to 16 kHz mono, chunked at ``cuts``: one batch per chunk."""
    conv = Converter(fmt, TARGET, 20)
    bounds = [0, *sorted(set(cuts)), pcm.shape[0]]
    batches = []
    for a, b in itertools.pairwise(bounds):
        frames = conv.push(pcm[a:b])
        if frames:
            batches.append(FrameBatch(tuple(frames)))
    tail = conv.flush()
    if tail:
        batches.append(FrameBatch(tuple(tail)))
    return batches


# ---------------------------------------------------------------- audio


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(SOURCES)), st.lists(st.floats(0, 1), max_size=12))
def test_audio_at_the_service_is_the_one_shot_conversion(source: str, cut_at: list[float]) -> None:
    pcm, fmt = SOURCES[source]()
    cuts = [int(c * pcm.shape[0]) for c in cut_at]
    pair = new_pair()
    assert pair.connect("hi") == [Ready(None)]
    for batch in converted_inputs(pcm, fmt, cuts):
        assert pair.send(batch) == []
    pair.send(EndOfInput())
    expected = convert_oneshot(pcm, fmt, TARGET)
    assert expected.shape[0] > 0.9 * pcm.shape[0] * 16_000 / fmt.sample_rate
    np.testing.assert_array_equal(pair.service.connection_audio, expected)
    assert pair.service.audio_stream_ends == 1
    finish(pair)


# ---------------------------------------------------------------- turns


def test_five_pieces_give_one_completed_transcription() -> None:
    pair = new_pair()
    pair.connect()
    pieces = ["What ", "is ", "the ", "weather ", "today?"]
    events = pair.deliver(pair.service.transcribe(pieces))
    assert [e for e in events if isinstance(e, InputTranscriptionDelta)] == [
        InputTranscriptionDelta(p, "p-u1") for p in pieces
    ]
    reply = np.full((4800, 1), 1000, dtype=np.int16)
    events += pair.deliver(pair.service.reply(reply, ["It ", "is ", "sunny."]))
    completed = [e for e in events if isinstance(e, InputTranscriptionCompleted)]
    assert completed == [InputTranscriptionCompleted("p-u1", "What is the weather today?")]
    audio = np.concatenate([e.pcm for e in events if isinstance(e, ReplyAudio)])
    np.testing.assert_array_equal(audio, reply)
    assert [e for e in events if isinstance(e, ReplyDone)] == [ReplyDone("p-r1", "completed")]
    # the next turn gets the next id
    events = pair.deliver(pair.service.transcribe(["Thanks"]) + pair.service.turn_complete())
    assert events[-1] == InputTranscriptionCompleted("p-u2", "Thanks")
    finish(pair)


def test_interrupted_reply() -> None:
    pair = new_pair()
    pair.connect()
    audio = np.ones((2400, 1), np.int16)
    events = pair.deliver(pair.service.reply(audio, ["Hel"], complete=False))
    events += pair.deliver(pair.service.interrupt())
    assert events[-3:] == [
        ReplyInterrupted("p-r1"),
        ReplyTextDone("Hel", "p-r1", "p-r1"),
        ReplyDone("p-r1", "cancelled"),
    ]
    finish(pair)


def test_tool_call_round_trip_carries_the_name() -> None:
    pair = new_pair()
    pair.connect()
    (call,) = pair.deliver(pair.service.tool_call("get_time", {"tz": "UTC"}, "call-1"))
    assert call == ToolCall("call-1", "get_time", '{"tz":"UTC"}')
    pair.send(ToolResult("call-1", '{"time": "12:00"}'))  # no name: the codec knows it
    assert pair.service.tool_responses == [
        {"id": "call-1", "name": "get_time", "response": {"time": "12:00"}}
    ]
    assert pair.deliver(pair.service.cancel_tool_calls(["call-1"])) == [
        ToolCallCancelled(("call-1",))
    ]
    finish(pair)


def test_go_away_and_text_frames() -> None:
    pair = new_pair(binary=False)
    pair.connect()
    assert pair.deliver(pair.service.go_away(7.5)) == [GoAway(7.5)]
    assert all(isinstance(w, str) for w in pair.server_wire)
    finish(pair)


def test_manual_turns_reach_the_service_as_activity() -> None:
    pair = new_pair(turn_detection=None)
    pair.connect()
    for _ in range(2):
        pair.send(AudioFrame(np.ones((320, 1), np.int16), 16_000))
        pair.send(AudioFrame(np.ones((320, 1), np.int16), 16_000, 320))
        pair.send(EndOfInput())
    assert pair.service.activity == ["start", "end", "start", "end"]
    assert pair.service.audio_stream_ends == 0
    finish(pair)


def test_junk_from_the_client_side_is_caught_by_the_service() -> None:
    pair = new_pair()
    pair.connect()
    pair.send_wire(['{"realtimeInput": {"audio": {"data": "AAAA", "mimeType": "audio/pcm"}}}'])
    assert isinstance(pair.closed, CloseConnection)
    assert pair.closed.code == 1007
    assert pair.service.records[-1].problem is not None


# ---------------------------------------------------------------- resumption


def _frames(n: int, samples: int = 320) -> list[AudioFrame]:
    rng = np.random.default_rng(n)
    return [
        AudioFrame(rng.integers(-9000, 9000, (samples, 1), dtype=np.int16), 16_000, i * samples)
        for i in range(n)
    ]


def _resume(
    frames: list[AudioFrame], update_after: int, drop_after: int, resend: str
) -> np.ndarray:
    """Stream ``frames`` over two connections the way the link must: number the
    messages sent after the setup from 0, keep them, and after a drop resume with
    the handle and resend those after ``last_consumed_index`` (``resend``:
    ``"unconsumed"``, ``"none"`` or ``"all"``). Returns the session's audio."""
    sessions = GeminiSessions()
    first = new_pair(sessions=sessions, prefix="c1")
    first.connect("instructions")
    sent: list[str] = []
    handle: ResumptionHandle | None = None
    for i, f in enumerate(frames[:drop_after]):
        wire = first.codec.encode(f)
        sent += wire
        first.send_wire(wire)
        if i == update_after:
            (handle,) = first.deliver(first.service.resumption_update())  # type: ignore[assignment]
    assert isinstance(handle, ResumptionHandle)
    assert handle.last_consumed_index == update_after  # one message per frame here
    finish(first)
    second = new_pair(sessions=sessions, prefix="c2")
    second.connect("instructions", resumption_handle=handle.handle)
    assert second.service.resumed_from == handle.handle
    assert handle.last_consumed_index is not None
    start = {"unconsumed": handle.last_consumed_index + 1, "none": len(sent), "all": 0}[resend]
    second.send_wire(sent[start:])
    for f in frames[drop_after:]:
        second.send(f)
    finish(second)
    return second.service.session_audio


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.data())
def test_resuming_with_the_unconsumed_messages_loses_and_repeats_nothing(
    n: int, data: st.DataObject
) -> None:
    frames = _frames(n)
    update_after = data.draw(st.integers(0, n - 2), label="update after message")
    drop_after = data.draw(st.integers(update_after + 1, n), label="drop after message")
    whole = np.concatenate([f.pcm for f in frames])
    np.testing.assert_array_equal(_resume(frames, update_after, drop_after, "unconsumed"), whole)


def test_resending_none_or_all_would_lose_or_repeat_audio() -> None:
    frames = _frames(10)
    whole = np.concatenate([f.pcm for f in frames])
    assert _resume(frames, 3, 7, "none").shape[0] < whole.shape[0]
    assert _resume(frames, 3, 7, "all").shape[0] > whole.shape[0]


def test_a_handle_while_generating_is_not_resumable_and_keeps_the_last_one() -> None:
    pair = new_pair()
    pair.connect()
    pair.send(_frames(1)[0])
    (good,) = pair.deliver(pair.service.resumption_update())
    (busy,) = pair.deliver(pair.service.resumption_update(resumable=False))
    assert isinstance(good, ResumptionHandle)
    assert isinstance(busy, ResumptionHandle)
    assert good.resumable
    assert not busy.resumable
    assert busy.handle == good.handle
    assert busy.last_consumed_index == good.last_consumed_index == 0
    finish(pair)
