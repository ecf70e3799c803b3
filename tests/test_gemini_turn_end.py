"""The end of the user's turn with Gemini Live: ``SpeechStopped`` from the codec, and
``TurnMetrics`` that measure from it.

Gemini sends no speech-stopped signal; the codec reports the end of a user turn when
it first learns of it (the rule is in :mod:`voxtrio.codecs.gemini_live.decode` and
docs/turn-taking.md). Unit rules on the codec, one property over any order of
server messages, and a whole session against the loopback server (real sockets).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig
from voxtrio.codecs.wire import LinkSignal
from voxtrio.messages import (
    Event,
    InputTranscriptionCompleted,
    ReplyDone,
    ReplyPlayed,
    ReplyStarted,
    SpeechStopped,
    ToolCall,
    TurnMetrics,
)
from voxtrio.testing.gemini import open_gemini_loopback

from .loopback_helpers import Recorder, drain

KEY = "AIza-test-turn-end"


def codec() -> GeminiLiveCodec:
    return GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test"), id_prefix="t")


def msg(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


def heard(text: str, finished: bool = False) -> str:
    body: dict[str, Any] = {"text": text}
    if finished:
        body["finished"] = True
    return msg({"serverContent": {"inputTranscription": body}})


def audio(samples: int = 240) -> str:
    data = base64.b64encode(np.ones(samples, "<i2").tobytes()).decode()
    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
    return msg({"serverContent": {"modelTurn": {"parts": [part]}}})


SAID = msg({"serverContent": {"outputTranscription": {"text": "Hi"}}})
DONE = msg({"serverContent": {"turnComplete": True}})
INTERRUPTED = msg({"serverContent": {"interrupted": True}})
TOOL = msg({"toolCall": {"functionCalls": [{"id": "c1", "name": "clock", "args": {}}]}})


def decode_all(c: GeminiLiveCodec, messages: list[str]) -> list[Event]:
    """The events of ``messages`` (link signals left out)."""
    out: list[Event] = []
    for m in messages:
        out += [e for e in c.decode(m) if not isinstance(e, LinkSignal)]
    return out


def test_the_model_turn_ends_the_user_turn_before_the_reply_starts() -> None:
    events = decode_all(codec(), [heard("Hel"), heard("lo"), audio(), DONE])
    kinds = [type(e).__name__ for e in events]
    assert kinds[:4] == ["InputTranscriptionDelta", "InputTranscriptionDelta",
                         "SpeechStopped", "InputTranscriptionCompleted"]  # fmt: skip
    assert kinds[4] == "ReplyStarted"
    assert events[2] == SpeechStopped("t-u1")


def test_a_finished_transcription_ends_the_turn_at_once() -> None:
    c = codec()
    assert decode_all(c, [heard("yes", finished=True)])[1:] == [
        SpeechStopped("t-u1"), InputTranscriptionCompleted("t-u1", "yes")
    ]  # fmt: skip
    # The reply that follows has nothing more to end.
    assert not [e for e in decode_all(c, [audio(), DONE]) if isinstance(e, SpeechStopped)]


def test_a_tool_call_or_a_turn_complete_without_a_reply_ends_the_turn() -> None:
    tool = decode_all(codec(), [heard("what time"), TOOL])
    assert [type(e) for e in tool[1:]] == [SpeechStopped, InputTranscriptionCompleted, ToolCall]
    done = decode_all(codec(), [heard("hm"), DONE])
    assert [type(e) for e in done[1:]] == [SpeechStopped, InputTranscriptionCompleted]


def test_pieces_that_trail_a_reply_get_no_speech_stopped() -> None:
    # Their speech ended before the reply began; a SpeechStopped now would date the
    # next reply's wait from this moment.
    events = decode_all(codec(), [audio(), SAID, heard("late"), DONE])
    assert not [e for e in events if isinstance(e, SpeechStopped)]
    assert InputTranscriptionCompleted("t-u1", "late") in events


def test_after_a_barge_in_the_next_turn_ends_before_its_reply() -> None:
    events = decode_all(codec(), [audio(), INTERRUPTED, heard("stop"), audio(), DONE])
    stopped = [i for i, e in enumerate(events) if isinstance(e, SpeechStopped)]
    started = [i for i, e in enumerate(events) if isinstance(e, ReplyStarted)]
    assert len(stopped) == 1
    assert started[0] < stopped[0] < started[1]


MESSAGES = st.sampled_from(
    [heard("a"), heard("b", finished=True), audio(), SAID, DONE, INTERRUPTED, TOOL,
     msg({"serverContent": {"generationComplete": True}})]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(MESSAGES, max_size=30))
def test_speech_stopped_rules_hold_in_any_order(messages: list[str]) -> None:
    """At most one SpeechStopped per user turn, always just before that turn's
    transcript, never while a reply is in progress; and every turn that ends with no
    reply in progress has one."""
    events = decode_all(codec(), messages)
    in_reply = False
    seen: set[str | None] = set()
    for i, event in enumerate(events):
        match event:
            case ReplyStarted():
                in_reply = True
            case ReplyDone():
                in_reply = False
            case SpeechStopped(item_id=item_id):
                assert not in_reply
                assert item_id not in seen
                seen.add(item_id)
                nxt = events[i + 1]
                assert isinstance(nxt, InputTranscriptionCompleted)
                assert nxt.item_id == item_id
            case InputTranscriptionCompleted(item_id=item_id):
                assert (item_id in seen) == (not in_reply)


def tone16(ms: int, amplitude: int = 6000) -> np.ndarray:
    t = np.arange(ms * 16) / 16_000
    return (amplitude * np.sin(2 * np.pi * 220.0 * t)).astype(np.int16).reshape(-1, 1)


def silence16(ms: int) -> np.ndarray:
    return np.zeros((ms * 16, 1), np.int16)


async def test_a_gemini_loopback_session_reports_one_turn_metrics_per_turn() -> None:
    """Two utterances, each answered by the loopback's own VAD turns: two TurnMetrics,
    each measured from the end of its user turn (SpeechStopped), first audio after it."""
    speech = np.concatenate(
        [silence16(300), tone16(800), silence16(1200), tone16(600), silence16(1200)]
    )
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY) as server:
            provider = voxtrio.GeminiLive(
                model="gemini-live-test", api_key=KEY, base_url=server.url
            )
            capture = voxtrio.ArrayCapture(speech, voxtrio.AudioFormat(16_000, 1))
            async with (
                trio.open_nursery() as nursery,
                voxtrio.open_session(provider, capture=capture, realtime_playback=False) as session,
            ):
                recorder = Recorder(session.subscribe(max_buffer=100_000))
                nursery.start_soon(recorder.run)
                nursery.start_soon(drain, session.output)
                await recorder.wait_until(lambda: len(recorder.of(ReplyPlayed)) >= 2)
                await recorder.wait_until(lambda: len(recorder.of(TurnMetrics)) >= 2)
                stats = session.stats()
                await session.aclose()
    stopped = recorder.of(SpeechStopped)
    assert [s.item_id for s in stopped] == [
        t.item_id for t in recorder.of(InputTranscriptionCompleted)
    ]
    assert len(stopped) == 2
    metrics = recorder.of(TurnMetrics)
    assert len(metrics) == 2
    assert [m.response_id for m in metrics] == [r.response_id for r in recorder.of(ReplyStarted)]
    for m in metrics:
        assert m.speech_to_first_audio_s is not None
        assert m.first_audio_to_played_s is not None
        assert m.speech_to_played_s is not None
        assert m.speech_to_first_audio_s >= 0  # the first audio came after the turn ended
        assert m.first_audio_to_played_s >= 0
        assert m.speech_to_played_s >= m.speech_to_first_audio_s
        assert m.reply_played_ms == 400
        assert not m.interrupted
    assert stats.turns.turns == 2
    assert stats.turns.speech_to_played_p50_s is not None
