"""codecs.gemini_live: the setup, input encoding and server decoding, without I/O."""

from __future__ import annotations

import base64
import json
import types
from typing import Any

import numpy as np
import pytest
from google.genai import types as gt
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.audio import AudioFrame
from voxtrio.codecs.gemini_live import (
    INPUT_MIME,
    MAX_AUDIO_MESSAGE_BYTES,
    AutomaticVad,
    GeminiLiveCodec,
    GeminiLiveConfig,
    ToolCallCancelled,
    auth_headers,
    live_url,
    parse_duration_s,
)
from voxtrio.codecs.openai_realtime import FunctionTool
from voxtrio.codecs.wire import GoAway, Ready, ResumptionHandle, Verdict, WireCodec
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
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SpeechStopped,
    ToolCall,
    ToolResult,
    TruncateItem,
)
from voxtrio.testing.gemini import oracle


def codec(**kw: object) -> GeminiLiveCodec:
    return GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test", **kw), id_prefix="t")  # type: ignore[arg-type]


def frame(samples: int, rate: int = 16_000, channels: int = 1, pts: int = 0) -> AudioFrame:
    rng = np.random.default_rng(samples)
    pcm = rng.integers(-3000, 3000, size=(samples, channels), dtype=np.int16)
    return AudioFrame(pcm, rate, pts)


def realtime(wire: str) -> gt.LiveClientRealtimeInput:
    rt = oracle.client_message(wire).realtime_input
    assert rt is not None
    return rt


def function_response(wire: str) -> gt.FunctionResponse:
    tr = oracle.client_message(wire).tool_response
    assert tr is not None
    assert tr.function_responses is not None
    (resp,) = tr.function_responses
    return resp


def _audio_bytes(wire: str) -> bytes:
    audio = realtime(wire).audio
    assert audio is not None
    assert audio.data is not None
    return audio.data


def sdict(obj: dict[str, Any]) -> str:
    text = json.dumps(obj)
    oracle.server_message(text)  # every message fed to the codec is a real one
    return text


def setup_of(
    c: GeminiLiveCodec, instructions: str = "be brief", handle: str | None = None
) -> dict[str, Any]:
    (wire,) = c.connect_messages(instructions, resumption_handle=handle)
    oracle.client_message(wire)
    setup: dict[str, Any] = json.loads(wire)["setup"]
    return setup


# ---------------------------------------------------------------- configuration


def test_codec_satisfies_the_wire_protocol() -> None:
    assert isinstance(codec(), WireCodec)


@pytest.mark.parametrize(
    "kw",
    [
        {"model": ""},
        {"model": "two words"},
        {"voice": ""},
        {"response_modalities": ("AUDIO", "TEXT")},
        {"response_modalities": "AUDIO"},
        {"turn_detection": "server_vad"},
        {"tools": [{"name": "x"}]},
        {"tools": [FunctionTool("a"), FunctionTool("a")]},
        {"temperature": -1},
        {"temperature": float("nan")},
        {"compression_trigger_tokens": 0},
        {"compression_trigger_tokens": 100, "compression_target_tokens": 200},
        {"input_transcription": "yes"},
    ],
)
def test_config_rejects_bad_options(kw: dict[str, Any]) -> None:
    kw = {"model": "m", **kw}
    with pytest.raises(ValueError):  # noqa: PT011 - every option raises ValueError
        GeminiLiveConfig(**kw)


def test_vad_rejects_bad_values() -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        AutomaticVad(silence_duration_ms=-1)
    with pytest.raises(ValueError):  # noqa: PT011
        AutomaticVad(start_sensitivity="medium")  # type: ignore[arg-type]


def test_setup_carries_everything_and_validates() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tool = FunctionTool("lookup", "find a thing", schema)
    c = codec(voice="Kore", language_code="en-US", tools=(tool,), temperature=0.5,
              compression_trigger_tokens=20_000, compression_target_tokens=10_000,
              turn_detection=AutomaticVad("low", "high", 100, 600))
    setup = setup_of(c, "You are terse.", handle="h-1")
    assert setup["model"] == "models/gemini-live-test"
    gen = setup["generationConfig"]
    assert gen["responseModalities"] == ["AUDIO"]
    assert gen["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"
    assert setup["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert setup["inputAudioTranscription"] == {}
    assert setup["outputAudioTranscription"] == {}
    assert setup["sessionResumption"] == {"handle": "h-1", "transparent": True}
    assert setup["contextWindowCompression"] == {
        "slidingWindow": {"targetTokens": 10_000}, "triggerTokens": 20_000
    }
    rt = setup["realtimeInputConfig"]
    assert rt["automaticActivityDetection"] == {
        "disabled": False, "startOfSpeechSensitivity": "START_SENSITIVITY_LOW",
        "endOfSpeechSensitivity": "END_SENSITIVITY_HIGH", "prefixPaddingMs": 100,
        "silenceDurationMs": 600,
    }
    assert rt["activityHandling"] == "START_OF_ACTIVITY_INTERRUPTS"
    gt.RealtimeInputConfig.model_validate(rt)
    (decl,) = setup["tools"][0]["functionDeclarations"]
    assert decl == {"name": "lookup", "description": "find a thing",
                    "parametersJsonSchema": tool.parameters}


def test_setup_defaults_and_manual_turns() -> None:
    setup = setup_of(codec(turn_detection=None, input_transcription=False), "")
    assert "systemInstruction" not in setup  # no empty instruction
    assert "inputAudioTranscription" not in setup
    assert setup["sessionResumption"] == {"transparent": True}  # no handle: a new session
    assert setup["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert setup["contextWindowCompression"] == {"slidingWindow": {}}


def test_sdk_sends_realtime_input_config_in_setup() -> None:
    """The oracle gap, pinned: the SDK itself sends setup.realtimeInputConfig."""
    from google.genai import _live_converters as conv

    cfg = gt.LiveConnectConfig(
        realtime_input_config=gt.RealtimeInputConfig(
            automatic_activity_detection=gt.AutomaticActivityDetection(disabled=True)
        )
    )
    params = gt.LiveConnectParameters(model="models/m", config=cfg).model_dump(exclude_none=True)
    client = types.SimpleNamespace(vertexai=False)
    to_wire = conv._LiveConnectParameters_to_mldev
    wire = to_wire(api_client=client, from_object=params)  # type: ignore[arg-type]
    expected = {"automatic_activity_detection": {"disabled": True}}
    assert wire["setup"]["realtimeInputConfig"] == expected


def test_capabilities() -> None:
    caps = codec().capabilities
    assert caps.resumption
    assert caps.tool_calls
    assert caps.tool_cancellation
    assert caps.server_vad
    assert not (caps.manual_commit)
    assert not (caps.clear_input)
    assert not (caps.truncation)
    assert not (caps.cancel_reply)
    assert not codec(turn_detection=None).capabilities.server_vad
    assert not codec(input_transcription=False).capabilities.input_transcription
    c = codec()
    assert c.wait_for_ready
    assert c.input_format.sample_rate == 16_000
    assert c.output_format.sample_rate == 24_000
    assert c.input_format.channels == 1


@pytest.mark.parametrize(
    ("code", "reason", "verdict"),
    [
        (1000, "session time limit", Verdict.RETRY),
        (1001, "going away", Verdict.RETRY),
        (1011, "Internal error encountered.", Verdict.RETRY),
        (None, None, Verdict.RETRY),
        (1007, "Request contains an invalid argument.", Verdict.FATAL),
        (1008, "policy violation", Verdict.FATAL),
        (1011, "You exceeded your current quota, check your plan and billing", Verdict.FATAL),
        (1011, "API key not valid. Please pass a valid API key.", Verdict.FATAL),
        (1011, "models/nope is not found for API version v1beta", Verdict.FATAL),
    ],
)
def test_classify_close(code: int | None, reason: str | None, verdict: Verdict) -> None:
    assert codec().classify_close(code, reason) is verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(400, Verdict.FATAL), (401, Verdict.FATAL), (403, Verdict.FATAL), (404, Verdict.FATAL),
     (429, Verdict.FATAL), (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY)],
)
def test_classify_rejection(status: int, verdict: Verdict) -> None:
    assert codec().classify_rejection(status) is verdict


def test_url_and_headers_keep_the_key_out_of_urls() -> None:
    assert live_url("ws://127.0.0.1:5/ws/x").startswith("ws://127.0.0.1:5/ws/x")
    assert live_url(None).startswith("wss://generativelanguage.googleapis.com/ws/")
    with pytest.raises(ValueError, match="API key"):
        live_url("wss://h/ws?key=SECRET")
    with pytest.raises(ValueError, match="scheme"):
        live_url("https://h/ws")
    assert auth_headers("abc") == ((b"x-goog-api-key", b"abc"),)
    with pytest.raises(ValueError) as err:  # noqa: PT011
        auth_headers("bad key\n")
    assert "bad key" not in str(err.value)


# ---------------------------------------------------------------- encoding


def test_audio_is_16k_with_the_real_rate_declared() -> None:
    c = codec()
    f = frame(320)
    (wire,) = c.encode(f)
    msg = oracle.client_message(wire)
    assert msg.realtime_input is not None
    assert msg.realtime_input.audio is not None
    assert msg.realtime_input.audio.mime_type == INPUT_MIME == "audio/pcm;rate=16000"
    assert msg.realtime_input.audio.data == f.to_bytes()


@pytest.mark.parametrize(("rate", "channels"), [(24_000, 1), (48_000, 1), (16_000, 2)])
def test_audio_in_another_format_is_refused(rate: int, channels: int) -> None:
    with pytest.raises(ValueError, match="16000 Hz mono"):
        codec().encode(frame(100, rate, channels))


def test_big_batches_split_and_empty_audio_sends_nothing() -> None:
    c = codec()
    n = MAX_AUDIO_MESSAGE_BYTES // 2  # samples in one message
    frames = (frame(n, pts=0), frame(n // 2, pts=n))
    wires = c.encode(FrameBatch(frames))
    assert len(wires) == 2
    data = b"".join(_audio_bytes(w) for w in wires)
    assert data == b"".join(f.to_bytes() for f in frames)
    assert c.encode(AudioFrame(np.zeros((0, 1), np.int16), 16_000)) == []


def test_end_of_input_is_audio_stream_end_once_per_segment() -> None:
    c = codec()
    assert c.encode(EndOfInput()) == []  # nothing sent yet
    c.encode(frame(160))
    (end,) = c.encode(EndOfInput())
    assert realtime(end).audio_stream_end is True
    assert c.encode(EndOfInput()) == []


def test_manual_turns_bracket_each_segment_in_activity() -> None:
    c = codec(turn_detection=None)
    first = c.encode(frame(160))
    assert len(first) == 2
    assert realtime(first[0]).activity_start is not None
    assert len(c.encode(frame(160, pts=160))) == 1  # same segment: audio only
    (end,) = c.encode(EndOfInput())
    assert realtime(end).activity_end is not None
    assert c.encode(EndOfInput()) == []
    assert len(c.encode(frame(160, pts=320))) == 2  # a new segment opens again


def test_text_reply_request_and_tool_result() -> None:
    c = codec()
    (text,) = c.encode(SendText("hello"))
    assert realtime(text).text == "hello"
    (create,) = c.encode(CreateReply("say hi"))
    content = oracle.client_message(create).client_content
    assert content is not None
    assert content.turn_complete is True
    assert content.turns[0].parts[0].text == "say hi"  # type: ignore[index]
    (result,) = c.encode(ToolResult("c1", '{"temp": 21}', name="weather"))
    resp = function_response(result)
    assert (resp.id, resp.name, resp.response) == ("c1", "weather", {"temp": 21})
    (plain,) = c.encode(ToolResult("c2", "sunny", name="weather"))
    resp = function_response(plain)
    assert resp.response == {"output": "sunny"}


def test_tool_result_without_a_name_takes_the_call_s_name() -> None:
    c = codec()
    c.decode(sdict({"toolCall": {"functionCalls": [{"id": "c9", "name": "clock", "args": {}}]}}))
    (wire,) = c.encode(ToolResult("c9", "noon"))
    resp = function_response(wire)
    assert resp.name == "clock"


@pytest.mark.parametrize("msg", [CommitInput(), ClearInput(), CancelReply(), TruncateItem("i", 5)])
def test_controls_gemini_lacks_are_refused(msg: object) -> None:
    with pytest.raises(ValueError, match="capabilities"):
        codec().encode(msg)  # type: ignore[arg-type]


def test_not_a_link_input() -> None:
    with pytest.raises(TypeError):
        codec().encode("audio")  # type: ignore[arg-type]


# ---------------------------------------------------------------- decoding


def test_setup_complete_is_ready_in_text_and_binary_frames() -> None:
    for data in (sdict({"setupComplete": {}}), sdict({"setupComplete": {}}).encode()):
        assert codec().decode(data) == [Ready(None)]
    assert codec().decode(sdict({"setupComplete": {"sessionId": "s-1"}})) == [Ready("s-1")]


def audio_part(pcm: np.ndarray, rate: int = 24_000) -> dict[str, Any]:
    data = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return {"inlineData": {"mimeType": f"audio/pcm;rate={rate}", "data": data}}


def test_a_whole_turn() -> None:
    c = codec()
    pcm = np.arange(-50, 50, dtype=np.int16).reshape(-1, 1)
    events = []
    for piece in ("Hel", "lo"):
        events += c.decode(sdict({"serverContent": {"inputTranscription": {"text": piece}}}))
    events += c.decode(sdict({"serverContent": {"modelTurn": {"parts": [audio_part(pcm)]},
                                                "outputTranscription": {"text": "Hi "}}}))
    events += c.decode(sdict({"serverContent": {"outputTranscription": {"text": "there"}}}))
    events += c.decode(sdict({"serverContent": {"generationComplete": True}}))
    events += c.decode(sdict({"serverContent": {"turnComplete": True},
                              "usageMetadata": {"totalTokenCount": 3}}))
    assert events == [
        InputTranscriptionDelta("Hel", "t-u1"),
        InputTranscriptionDelta("lo", "t-u1"),
        SpeechStopped("t-u1"),  # the user's turn ended: first known at the model's turn
        InputTranscriptionCompleted("t-u1", "Hello"),
        ReplyStarted("t-r1"),
        ReplyAudio(pcm, 24_000, "t-r1", "t-r1"),
        ReplyTextDelta("Hi ", "t-r1", "t-r1"),
        ReplyTextDelta("there", "t-r1", "t-r1"),
        ReplyAudioDone("t-r1", "t-r1"),
        ReplyTextDone("Hi there", "t-r1", "t-r1"),
        ReplyDone("t-r1", "completed"),
    ]


def test_interrupted_cancels_the_reply_and_late_pieces_open_a_new_turn() -> None:
    c = codec()
    c.decode(sdict({"serverContent": {"outputTranscription": {"text": "Well"}}}))
    events = c.decode(sdict({"serverContent": {"interrupted": True}}))
    assert events == [ReplyInterrupted("t-r1"), ReplyTextDone("Well", "t-r1", "t-r1"),
                      ReplyDone("t-r1", "cancelled")]
    events = c.decode(sdict({"serverContent": {"inputTranscription": {"text": "stop"}}}))
    events += c.decode(sdict({"serverContent": {"turnComplete": True}}))
    assert events == [InputTranscriptionDelta("stop", "t-u1"), SpeechStopped("t-u1"),
                      InputTranscriptionCompleted("t-u1", "stop")]
    assert c.decode(sdict({"serverContent": {"interrupted": True}})) == []  # nothing open


def test_finished_transcription_ends_the_user_turn() -> None:
    c = codec()
    heard = {"text": "yes", "finished": True}
    events = c.decode(sdict({"serverContent": {"inputTranscription": heard}}))
    assert events[-1] == InputTranscriptionCompleted("t-u1", "yes")
    assert c.decode(sdict({"serverContent": {"turnComplete": True}})) == []


def test_text_replies_use_model_text_parts_and_skip_thoughts() -> None:
    c = codec(response_modalities=("TEXT",), output_transcription=False)
    events = c.decode(sdict({"serverContent": {"modelTurn": {"parts": [
        {"text": "thinking...", "thought": True}, {"text": "Answer"}]}}}))
    assert events == [ReplyStarted("t-r1"), ReplyTextDelta("Answer", "t-r1", "t-r1")]
    # in audio mode text parts are not the reply
    assert codec().decode(sdict({"serverContent": {"modelTurn": {"parts": [{"text": "x"}]}}})) == []


def test_tool_call_and_cancellation() -> None:
    c = codec()
    events = c.decode(sdict({"toolCall": {"functionCalls": [
        {"id": "a", "name": "f", "args": {"x": 1}}, {"id": "b", "name": "g"}]}}))
    assert events == [ToolCall("a", "f", '{"x":1}'), ToolCall("b", "g", "{}")]
    assert c.decode(sdict({"toolCallCancellation": {"ids": ["a"]}})) == [ToolCallCancelled(("a",))]


def test_go_away_and_durations() -> None:
    assert codec().decode(sdict({"goAway": {"timeLeft": "9.5s"}})) == [GoAway(9.5)]
    assert codec().decode(sdict({"goAway": {}})) == [GoAway(None)]
    assert parse_duration_s("10s") == 10.0
    assert parse_duration_s("soon") is None


def test_resumption_indexes_count_from_after_the_setup() -> None:
    c = codec()
    c.connect_messages("", resumption_handle="old")
    upd = {"newHandle": "h2", "resumable": True, "lastConsumedClientMessageIndex": 4}
    assert c.decode(sdict({"sessionResumptionUpdate": upd})) == [ResumptionHandle("h2", True, 3)]
    assert c.resumption_handle == "h2"
    # not resumable now: the handle held stays the one to resume with
    upd = {"newHandle": "", "resumable": False, "lastConsumedClientMessageIndex": 0}
    assert c.decode(sdict({"sessionResumptionUpdate": upd})) == [ResumptionHandle("h2", False, -1)]
    (sig,) = c.decode(sdict({"sessionResumptionUpdate": {"newHandle": "h3", "resumable": True}}))
    assert sig == ResumptionHandle("h3", True, None)
    assert "h3" not in repr(sig)


BAD_BASE64 = {"mimeType": "audio/pcm", "data": "@@"}
ODD_BYTES = {"mimeType": "audio/pcm", "data": "AAAA"}  # 3 bytes: not whole samples


@pytest.mark.parametrize(
    "data",
    [
        "not json", "[1, 2]", b"\xff\xfe", '{"serverContent": 5}',
        json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": BAD_BASE64}]}}}),
        json.dumps({"serverContent": {"modelTurn": {"parts": [{"inlineData": ODD_BYTES}]}}}),
        '{"toolCall": {"functionCalls": [{"name": "f"}]}}',
        '{"sessionResumptionUpdate": {"lastConsumedClientMessageIndex": "x"}}',
        '{"serverContent": {"turnComplete": "yes"}}',
    ],
)
def test_junk_is_a_protocol_error(data: str | bytes) -> None:
    events = codec().decode(data)
    assert events
    assert isinstance(events[-1], ErrorEvent)
    assert events[-1].code == "protocol_error"


def test_unknown_fields_are_ignored() -> None:
    assert codec().decode('{"somethingNew": {"a": 1}}') == []


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                              lambda kids: st.lists(kids, max_size=3)
                              | st.dictionaries(st.sampled_from(
                                  ["serverContent", "modelTurn", "parts", "inlineData", "data",
                                   "mimeType", "text", "toolCall", "functionCalls", "id", "name",
                                   "args", "goAway", "timeLeft", "sessionResumptionUpdate",
                                   "newHandle", "resumable", "inputTranscription",
                                   "outputTranscription", "turnComplete", "interrupted",
                                   "setupComplete", "lastConsumedClientMessageIndex"]),
                                  kids, max_size=4), max_leaves=12).map(json.dumps)))
def test_decode_never_raises(data: str | bytes) -> None:
    for item in codec().decode(data):
        if isinstance(item, ErrorEvent):
            assert item.code == "protocol_error"
