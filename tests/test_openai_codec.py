"""codecs.openai_realtime: the OpenAI Realtime GA codec, checked against the openai
package's own models (the oracle) and against junk."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    ConversationItemInputAudioTranscriptionFailedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RateLimitsUpdatedEvent,
    RealtimeClientEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
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
from pydantic import BaseModel, TypeAdapter

from voxtrio.codecs.audio import AudioFormat, AudioFrame
from voxtrio.codecs.openai_realtime import (
    DEFAULT_BASE_URL,
    MAX_APPEND_BYTES,
    FunctionTool,
    OpenAIRealtimeCodec,
    SemanticVad,
    ServerVad,
    auth_headers,
    realtime_url,
)
from voxtrio.codecs.wire import MAX_ERROR_TEXT, LinkSignal, Ready, WireCodec
from voxtrio.messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    ErrorEvent,
    FrameBatch,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    LinkInput,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    ToolResult,
    TruncateItem,
)
from voxtrio.testing.openai_server import validate_client_event, validate_server_event

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
        assert detection == codec.turn_detection.to_wire()
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
                        "interrupt_response": True,
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


def test_end_of_input_with_server_vad_commits_only_speech_in_progress() -> None:
    codec = OpenAIRealtimeCodec()  # server VAD
    frame = AudioFrame.from_pcm(np.ones(4800, np.int16), FMT)
    codec.encode(frame)
    assert codec.encode(EndOfInput()) == []  # silence so far: the service holds no turn
    speech = {"type": "input_audio_buffer.speech_started", "event_id": "e1",
              "audio_start_ms": 10, "item_id": "item_1"}  # fmt: skip
    codec.decode(json.dumps(speech))
    codec.encode(AudioFrame.from_pcm(np.ones(480, np.int16), FMT, pts=4800))
    assert commits(codec.encode(EndOfInput())) == 1  # the unfinished turn is committed
    stopped = {"type": "input_audio_buffer.speech_stopped", "event_id": "e2",
               "audio_end_ms": 500, "item_id": "item_1"}  # fmt: skip
    codec.decode(json.dumps(stopped))
    codec.encode(AudioFrame.from_pcm(np.ones(480, np.int16), FMT, pts=5280))
    assert codec.encode(EndOfInput()) == []  # the service committed the turn itself


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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": ""},
        {"voice": ""},
        {"transcription_model": "  "},
        {"output_modalities": ("audio", "text")},
        {"output_modalities": ()},
        {"turn_detection": "server_vad"},
        {"noise_reduction": "loud"},
        {"tool_choice": "sometimes"},
        {"max_append_bytes": 1},
        {"max_append_bytes": MAX_APPEND_BYTES + 2},
        {"tools": [FunctionTool("a"), FunctionTool("a")]},
    ],
)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|unique"):
        OpenAIRealtimeCodec(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServerVad(threshold=1.5),
        lambda: ServerVad(silence_duration_ms=-1),
        lambda: SemanticVad(eagerness="eager"),  # type: ignore[arg-type]
        lambda: FunctionTool("has space"),
    ],
)
def test_bad_turn_detection_or_tool_is_a_value_error(make: Any) -> None:
    with pytest.raises(ValueError, match=r"must|'eagerness'"):
        make()


# ------------------------------------------------------------------ URL and headers


def test_realtime_url() -> None:
    assert realtime_url(None, "gpt-realtime") == f"{DEFAULT_BASE_URL}?model=gpt-realtime"
    assert (
        realtime_url("ws://127.0.0.1:8765/v1/realtime", "m")
        == "ws://127.0.0.1:8765/v1/realtime?model=m"
    )
    # other query parameters stay, a model already there is replaced, odd names quoted
    assert (
        realtime_url("wss://h/v1/realtime?a=1&model=old", "new model")
        == "wss://h/v1/realtime?a=1&model=new%20model"
    )
    for bad in ("http://h/v1/realtime", "https://h/", "ws:///nohost"):
        with pytest.raises(ValueError, match=r"ws:// or wss://|no host"):
            realtime_url(bad, "m")
    with pytest.raises(ValueError, match="model"):
        realtime_url(None, "")


def test_auth_headers_send_bearer_and_never_the_beta_header() -> None:
    headers = auth_headers("sk-test-123")
    assert headers == ((b"Authorization", b"Bearer sk-test-123"),)
    assert all(name.lower() != b"openai-beta" for name, _ in headers)


@pytest.mark.parametrize("key", ["", "sk bad", "sk-\nInjected: 1", "sk-\u00e9"])
def test_bad_api_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ValueError, match="API key") as info:
        auth_headers(key)
    if key:
        assert key not in str(info.value)


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
