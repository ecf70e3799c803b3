"""codecs.openai_realtime: the OpenAI Realtime GA codec, checked against the openai
package's own models (the oracle) and against junk."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openai.types.realtime import (
    RealtimeClientEvent,
    RealtimeServerEvent,
)
from pydantic import TypeAdapter

from voxtrio.codecs.audio import AudioFormat, AudioFrame
from voxtrio.codecs.openai_realtime import (
    MAX_APPEND_BYTES,
    FunctionTool,
    OpenAIRealtimeCodec,
    SemanticVad,
    ServerVad,
)
from voxtrio.codecs.wire import WireCodec
from voxtrio.messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    FrameBatch,
    LinkInput,
    SendText,
    SpeechStarted,
    ToolResult,
    TruncateItem,
)
from voxtrio.testing.openai_server import validate_client_event

CLIENT = TypeAdapter(RealtimeClientEvent)
SERVER = TypeAdapter(RealtimeServerEvent)
FMT = AudioFormat(24_000)


def oracle_ok(wire: str) -> dict[str, Any]:
    """Parse one encoded client event and validate it: the openai models (as the
    issue states them), then the strict check that also rejects unknown fields and
    bad base64. Returns the parsed event."""
    wire.encode("utf-8")  # a websocket text frame must be valid UTF-8
    event: dict[str, Any] = json.loads(wire)
    CLIENT.validate_python(event)
    assert validate_client_event(event) is None, validate_client_event(event)
    return event


# ------------------------------------------------------------------ strategies

ids = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
texts = st.text(max_size=40)  # any code points, lone surrogates included


@st.composite
def codecs(draw: st.DrawFn) -> OpenAIRealtimeCodec:
    detection = draw(
        st.one_of(
            st.none(),
            st.builds(
                ServerVad,
                threshold=st.floats(0, 1),
                prefix_padding_ms=st.integers(0, 2000),
                silence_duration_ms=st.integers(0, 5000),
                create_response=st.booleans(),
                interrupt_response=st.booleans(),
            ),
            st.builds(
                SemanticVad,
                eagerness=st.sampled_from(["low", "medium", "high", "auto"]),
                create_response=st.booleans(),
                interrupt_response=st.booleans(),
            ),
        ),
        label="turn detection",
    )
    tools = draw(
        st.lists(
            st.builds(
                FunctionTool,
                name=st.from_regex(r"\A[a-z_][a-z0-9_-]{0,20}\Z"),
                description=texts,
            ),
            max_size=3,
            unique_by=lambda t: t.name,
        ),
        label="tools",
    )
    return OpenAIRealtimeCodec(
        model=draw(st.sampled_from(["gpt-realtime", "gpt-realtime-mini", "my-model"])),
        voice=draw(st.sampled_from([None, "marin", "cedar", "alloy"])),
        transcription_model=draw(st.sampled_from([None, "gpt-4o-transcribe", "whisper-1"])),
        transcription_language=draw(st.sampled_from([None, "en", "de"])),
        turn_detection=detection,
        output_modalities=draw(st.sampled_from([("audio",), ("text",)])),
        noise_reduction=draw(st.sampled_from([None, "near_field", "far_field"])),
        tools=tools,
        tool_choice=draw(st.sampled_from([None, "auto", "none", "required"])),
        max_append_bytes=draw(st.integers(2, 4000)),
    )


pts_steps = st.integers(0, 3)


@st.composite
def frames(draw: st.DrawFn, pts: int = 0) -> AudioFrame:
    n = draw(st.integers(0, 600), label="samples")
    seed = draw(st.integers(0, 2**32 - 1))
    pcm = np.random.default_rng(seed).integers(-32768, 32768, n).astype(np.int16)
    return AudioFrame.from_pcm(pcm, FMT, pts=pts)


def batch_of(frame_list: list[AudioFrame]) -> FrameBatch:
    """Re-number pts so the frames are contiguous."""
    out, pts = [], 0
    for f in frame_list:
        out.append(AudioFrame.from_pcm(f.pcm, FMT, pts=pts))
        pts += f.samples
    return FrameBatch(tuple(out))


controls = st.one_of(
    st.just(CommitInput()),
    st.just(ClearInput()),
    st.just(EndOfInput()),
    st.builds(CreateReply, st.none() | texts),
    st.builds(CancelReply, st.none() | ids),
    st.builds(TruncateItem, ids, st.integers(0, 10**7), st.integers(0, 3)),
    st.builds(SendText, texts),
    st.builds(ToolResult, ids, texts),
)
link_inputs: st.SearchStrategy[LinkInput] = st.one_of(
    controls, frames(), st.lists(frames(), max_size=4).map(batch_of)
)


# ------------------------------------------------------------------ encoding


@settings(max_examples=150, deadline=None)
@given(codec=codecs(), instructions=texts, msgs=st.lists(link_inputs, max_size=12))
def test_every_encoded_client_event_validates_against_the_openai_models(
    codec: OpenAIRealtimeCodec, instructions: str, msgs: list[LinkInput]
) -> None:
    wires = list(codec.connect_messages(instructions))
    for msg in msgs:
        wires += codec.encode(msg)
    events = [oracle_ok(w) for w in wires]
    assert events[0]["type"] == "session.update"
    ids_seen = [e["event_id"] for e in events]
    assert len(set(ids_seen)) == len(ids_seen), "client event ids repeat"


@settings(max_examples=60, deadline=None)
@given(codec=codecs(), instructions=texts)
def test_session_update_declares_24k_pcm_and_the_configuration(
    codec: OpenAIRealtimeCodec, instructions: str
) -> None:
    (wire,) = codec.connect_messages(instructions)
    session = oracle_ok(wire)["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["output_modalities"] == list(codec.output_modalities)
    expected_instructions = instructions.encode("utf-16", "surrogatepass").decode(
        "utf-16", "replace"
    )
    assert session["instructions"] == expected_instructions
    detection = session["audio"]["input"]["turn_detection"]
    if codec.turn_detection is None:
        assert detection is None  # explicit null turns the service's default VAD off
    else:
        # voxtrio decides barge-in itself: the service never cancels on speech.
        assert detection == {**codec.turn_detection.to_wire(), "interrupt_response": False}
    transcription = session["audio"]["input"]["transcription"]
    if codec.transcription_model is None:
        assert transcription is None
    else:
        assert transcription["model"] == codec.transcription_model
    assert session["audio"]["output"].get("voice") == codec.voice
    assert "model" not in session  # the model is in the URL and cannot change


def test_session_update_matches_the_documented_shape() -> None:
    codec = OpenAIRealtimeCodec(
        model="gpt-realtime", voice="marin", transcription_model="whisper-1"
    )
    (wire,) = codec.connect_messages("Be brief.")
    assert json.loads(wire) == {
        "type": "session.update",
        "event_id": "vx_1",
        "session": {
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": True,
                        "interrupt_response": False,  # the session decides barge-in
                    },
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
            },
        },
    }


def appended_pcm(wires: list[str]) -> np.ndarray:
    chunks = []
    for w in wires:
        event = oracle_ok(w)
        assert event["type"] == "input_audio_buffer.append"
        chunks.append(np.frombuffer(base64.b64decode(event["audio"]), "<i2"))
    return np.concatenate([np.zeros(0, np.int16), *chunks]).astype(np.int16)


@settings(max_examples=120, deadline=None)
@given(frame_list=st.lists(frames(), max_size=8), limit=st.integers(2, 3000))
def test_audio_round_trips_through_appends(frame_list: list[AudioFrame], limit: int) -> None:
    codec = OpenAIRealtimeCodec(max_append_bytes=limit)
    batch = batch_of(frame_list)
    wires = codec.encode(batch)
    expected = np.concatenate([np.zeros(0, np.int16), *(f.pcm[:, 0] for f in batch.frames)])
    assert np.array_equal(appended_pcm(wires), expected)


@settings(max_examples=120, deadline=None)
@given(frame_list=st.lists(frames(), max_size=8), limit=st.integers(2, 3000))
def test_appends_respect_the_size_limit_and_are_as_few_as_possible(
    frame_list: list[AudioFrame], limit: int
) -> None:
    codec = OpenAIRealtimeCodec(max_append_bytes=limit)
    batch = batch_of(frame_list)
    wires = codec.encode(batch)
    total = 2 * sum(f.samples for f in batch.frames)
    step = limit - limit % 2
    sizes = [len(base64.b64decode(json.loads(w)["audio"])) for w in wires]
    assert all(0 < s <= step and s % 2 == 0 for s in sizes)
    assert len(wires) == -(-total // step)  # ceil: no needless split, no empty append


def test_a_huge_batch_stays_below_the_15_mib_append_limit() -> None:
    codec = OpenAIRealtimeCodec(max_append_bytes=MAX_APPEND_BYTES)
    n = MAX_APPEND_BYTES // 2 + 24_000  # a little over one append's worth
    frame = AudioFrame.from_pcm(np.ones(n, np.int16), FMT)
    wires = codec.encode(FrameBatch((frame,)))
    assert len(wires) == 2
    assert all(len(w.encode()) < 15 * 1024 * 1024 for w in wires)


@pytest.mark.parametrize(("rate", "channels"), [(48_000, 1), (16_000, 1), (24_000, 2), (44_100, 2)])
def test_audio_in_another_format_is_refused(rate: int, channels: int) -> None:
    codec = OpenAIRealtimeCodec()
    good = AudioFrame.from_pcm(np.ones(480, np.int16), FMT)
    bad = AudioFrame.from_pcm(np.ones((480, channels), np.int16), AudioFormat(rate, channels))
    with pytest.raises(ValueError, match="24000 Hz mono"):
        codec.encode(bad)
    with pytest.raises(ValueError, match="24000 Hz mono"):
        codec.encode(FrameBatch((good, bad)))  # refused whole: nothing half-sent
    # the refusals changed nothing: the next append is the first audio
    assert codec.input_pts(0) is None
    (wire,) = codec.encode(good)
    assert np.array_equal(appended_pcm([wire]), good.pcm[:, 0])


def test_empty_audio_sends_nothing() -> None:
    codec = OpenAIRealtimeCodec()
    empty = AudioFrame.from_pcm(np.zeros(0, np.int16), FMT)
    assert codec.encode(empty) == []
    assert codec.encode(FrameBatch(())) == []
    assert codec.encode(FrameBatch((empty, empty))) == []


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (CommitInput(), {"type": "input_audio_buffer.commit"}),
        (ClearInput(), {"type": "input_audio_buffer.clear"}),
        (CreateReply(), {"type": "response.create"}),
        (
            CreateReply("Say hi."),
            {"type": "response.create", "response": {"instructions": "Say hi."}},
        ),
        (CancelReply(), {"type": "response.cancel"}),
        (CancelReply("resp_1"), {"type": "response.cancel", "response_id": "resp_1"}),
        (
            TruncateItem("item_9", 1500, 0),
            {
                "type": "conversation.item.truncate",
                "item_id": "item_9",
                "content_index": 0,
                "audio_end_ms": 1500,
            },
        ),
        (
            SendText("hello"),
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hello"}],
                },
            },
        ),
        (
            ToolResult("call_1", '{"ok": true}'),
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": "call_1",
                    "output": '{"ok": true}',
                },
            },
        ),
    ],
)
def test_controls_encode_to_their_client_events(msg: LinkInput, expected: dict[str, Any]) -> None:
    (wire,) = OpenAIRealtimeCodec().encode(msg)
    event = oracle_ok(wire)
    del event["event_id"]
    assert event == expected


def test_truncate_at_zero_ms_sends_nothing_and_negative_is_misuse() -> None:
    codec = OpenAIRealtimeCodec()
    assert codec.encode(TruncateItem("item_1", 0)) == []
    with pytest.raises(ValueError, match="cannot truncate"):
        codec.encode(TruncateItem("item_1", -5))


def test_encode_rejects_what_is_not_a_link_input() -> None:
    with pytest.raises(TypeError):
        OpenAIRealtimeCodec().encode("hello")  # type: ignore[arg-type]


def commits(wires: list[str]) -> int:
    return sum(json.loads(w)["type"] == "input_audio_buffer.commit" for w in wires)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.integers(0, 1500), max_size=6))
def test_end_of_input_commits_only_a_turn_the_service_would_accept(chunks: list[int]) -> None:
    # manual turns: a commit needs >= 100 ms (2400 samples) since the last commit
    codec = OpenAIRealtimeCodec(turn_detection=None)
    pts = 0
    for n in chunks:
        codec.encode(AudioFrame.from_pcm(np.ones(n, np.int16), FMT, pts=pts))
        pts += n
    wires = codec.encode(EndOfInput())
    assert commits(wires) == (1 if sum(chunks) >= 2400 else 0)
    assert codec.encode(EndOfInput()) == []  # nothing new since


def test_end_of_input_with_server_vad_sends_trailing_silence_never_a_commit() -> None:
    codec = OpenAIRealtimeCodec()  # server VAD, silence_duration_ms=500
    codec.encode(AudioFrame.from_pcm(np.ones(4800, np.int16), FMT))
    speech = {"type": "input_audio_buffer.speech_started", "event_id": "e1",
              "audio_start_ms": 10, "item_id": "item_1"}  # fmt: skip
    codec.decode(json.dumps(speech))
    codec.encode(AudioFrame.from_pcm(np.ones(480, np.int16), FMT, pts=4800))
    wires = codec.encode(EndOfInput())
    # The service's VAD closes the turn: no commit that could race its own end of
    # speech, but silence longer than its silence duration, after the last pts.
    assert commits(wires) == 0
    sent = b"".join(base64.b64decode(json.loads(w)["audio"]) for w in wires)
    assert sent == bytes(len(sent))
    assert len(sent) // 2 >= 500 * 24
    assert codec.input_pts(300) == 300 * 24  # the silence made no pts break
    assert codec.encode(EndOfInput()) == []  # nothing appended since
    stopped = {"type": "input_audio_buffer.speech_stopped", "event_id": "e2",
               "audio_end_ms": 500, "item_id": "item_1"}  # fmt: skip
    codec.decode(json.dumps(stopped))
    assert codec.encode(EndOfInput()) == []  # the service closed the turn itself


@settings(max_examples=100, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 2400)), min_size=1, max_size=5),
    probe=st.integers(0, 12_000),
)
def test_server_ms_map_back_to_input_pts_across_gaps(
    runs: list[tuple[int, int]], probe: int
) -> None:
    """Frames may jump in pts (audio dropped in an outage); the service counts only
    what it received. audio_start_ms must map to the pts of that very sample."""
    codec = OpenAIRealtimeCodec()
    pts, received = 0, list[int]()  # received[i] = the input pts of the i-th sample the service got
    for gap, n in runs:
        pts += gap
        codec.encode(AudioFrame.from_pcm(np.ones(n, np.int16), FMT, pts=pts))
        received.extend(range(pts, pts + n))
        pts += n
    ms = probe % (len(received) // 24 + 1)
    assume(ms * 24 < len(received))
    event = {"type": "input_audio_buffer.speech_started", "event_id": "e",
             "audio_start_ms": ms, "item_id": "i"}  # fmt: skip
    (started,) = codec.decode(json.dumps(event))
    assert isinstance(started, SpeechStarted)
    assert started.pts == received[ms * 24]


def test_codec_is_a_wire_codec_with_24k_formats() -> None:
    codec: WireCodec = OpenAIRealtimeCodec()
    assert isinstance(codec, WireCodec)
    assert codec.input_format == AudioFormat(24_000, 1)
    assert codec.output_format == AudioFormat(24_000, 1)
    assert codec.wait_for_ready is False
    assert codec.provider == "openai"
