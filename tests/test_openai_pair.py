"""End-to-end checks of the OpenAI client codec against the fake service, wired in
memory by voxtrio.testing.openai.OpenAICodecPair: no socket, no event loop, time
moved by hand -- each runs in milliseconds."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs.audio import AudioFormat, AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad
from voxtrio.codecs.wire import ConnectionExpiry, LinkSignal, Ready
from voxtrio.messages import (
    CancelReply,
    CommitInput,
    CreateReply,
    EndOfInput,
    ErrorEvent,
    Event,
    FrameBatch,
    InputTranscriptionCompleted,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDone,
    SpeechStarted,
    SpeechStopped,
    TruncateItem,
)
from voxtrio.testing.openai import ConnectionScript, LoopbackClosedError, OpenAICodecPair

from .openai_server_helpers import silence, tone

FMT = AudioFormat(24_000)
PACED = ConnectionScript(pace_replies=True, reply_ms=2000, reply_chunk_ms=100)
Decoded = list[Event | LinkSignal]
T = TypeVar("T")


def frames(pcm: np.ndarray, sizes: list[int] | None = None, pts: int = 0) -> list[AudioFrame]:
    """``pcm`` as frames: 20 ms each, or of the given sizes in turn (0 = empty)."""
    cuts = itertools.cycle(sizes or [480])
    out, at = [], 0
    while at < len(pcm):
        n = next(cuts)
        out.append(AudioFrame.from_pcm(pcm[at : at + n], FMT, pts=pts + at))
        at += n
    return out


def feed(
    pair: OpenAICodecPair,
    pcm: np.ndarray,
    batch: int = 10,
    sizes: list[int] | None = None,
    pts: int = 0,
) -> Decoded:
    got: Decoded = []
    all_frames = frames(pcm, sizes, pts)
    for i in range(0, len(all_frames), batch):
        got += pair.send(FrameBatch(tuple(all_frames[i : i + batch])))
    return got


def of(kind: type[T], events: Sequence[object]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def check(pair: OpenAICodecPair) -> None:
    """Every client event validated; every server event matches the openai models."""
    assert pair.service.invalid_events == []
    assert pair.server_event_problems() == []
    assert pair.service.shared.internal_errors == []


# ------------------------------------------------------------------ session, turns


def test_connect_configures_the_service_as_the_codec_asked() -> None:
    pair = OpenAICodecPair(OpenAIRealtimeCodec(voice="cedar", transcription_model="whisper-1"))
    events = pair.connect("Be brief.")
    # session.created (ready, and when the session ends), session.updated
    assert [type(e) for e in events] == [Ready, ConnectionExpiry, Ready]
    expiry = events[1]
    assert isinstance(expiry, ConnectionExpiry)
    assert expiry.at_unix_s == int(pair.service.created_at + 3600)  # the service's 60 minutes
    assert pair.codec.configured
    assert pair.service.instructions == ["Be brief."]
    assert pair.service.session["audio"]["output"]["voice"] == "cedar"
    assert pair.service.session["audio"]["input"]["transcription"] == {"model": "whisper-1"}
    check(pair)


def test_speech_in_gives_a_transcript_and_a_reply_out() -> None:
    script = ConnectionScript(transcripts=("what time is it",), reply_text="It is noon.")
    pair = OpenAICodecPair(script=script)
    pair.connect("x")
    events = feed(pair, np.concatenate([silence(500), tone(1000), silence(800)]), pts=48_000)
    (started,) = of(SpeechStarted, events)
    (stopped,) = of(SpeechStopped, events)
    assert started.audio_start_ms == 500 - 300  # onset minus the prefix padding
    assert started.pts == 48_000 + 200 * 24  # mapped back to the input's pts
    assert stopped.audio_end_ms is not None
    assert 1500 + 500 <= stopped.audio_end_ms <= 1500 + 520
    (done,) = of(InputTranscriptionCompleted, events)
    assert (done.item_id, done.transcript) == (started.item_id, "what time is it")
    audio = np.concatenate([e.pcm for e in of(ReplyAudio, events)])
    assert audio.shape == (script.reply_ms * 24, 1)
    assert [e.text for e in of(ReplyTextDone, events)] == ["It is noon."]
    assert events[-1] == ReplyDone(of(ReplyStarted, events)[0].response_id, "completed")
    check(pair)


def test_manual_turns_commit_only_what_the_service_will_take() -> None:
    pair = OpenAICodecPair(OpenAIRealtimeCodec(turn_detection=None))
    pair.connect("x")
    assert feed(pair, tone(50)) == []
    before = len(pair.client_messages)
    assert pair.send(EndOfInput()) == []  # 50 ms: the codec knows the service would refuse
    assert len(pair.client_messages) == before
    (refused,) = pair.send(CommitInput())  # asked explicitly: the service refuses
    assert isinstance(refused, ErrorEvent)
    assert refused.code == "input_audio_buffer_commit_empty"
    feed(pair, tone(150))
    (done,) = of(InputTranscriptionCompleted, pair.send(EndOfInput()))
    assert done.item_id
    assert of(ReplyDone, pair.send(CreateReply())) != []
    check(pair)


# ------------------------------------------------------------------ audio, as a property


@settings(max_examples=50, deadline=None)
@given(
    pcm=st.lists(st.integers(-32768, 32767), max_size=3000).map(
        lambda xs: np.array(xs, dtype=np.int16)
    ),
    sizes=st.lists(st.integers(0, 700), min_size=1, max_size=6).filter(any),
    batch=st.integers(1, 12),
    max_append=st.integers(2, 4000),
)
def test_the_service_hears_exactly_the_audio_encoded_whatever_the_chunking(
    pcm: np.ndarray, sizes: list[int], batch: int, max_append: int
) -> None:
    codec = OpenAIRealtimeCodec(turn_detection=None, max_append_bytes=max_append)
    pair = OpenAICodecPair(codec)
    pair.connect("x")
    feed(pair, pcm, batch=batch, sizes=sizes)
    assert np.array_equal(pair.service.audio[:, 0], pcm)
    assert pair.service.audio_samples == len(pcm)
    check(pair)


@st.composite
def speechy(draw: st.DrawFn) -> np.ndarray:
    runs = draw(st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1, max_size=6))
    return np.concatenate([tone(n * 10) if loud else silence(n * 10) for loud, n in runs])


@settings(max_examples=30, deadline=None)
@given(pcm=speechy(), sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=5))
def test_what_the_app_hears_back_does_not_depend_on_the_chunking(
    pcm: np.ndarray, sizes: list[int]
) -> None:
    whole = OpenAICodecPair()
    whole.connect("x")
    expected = feed(whole, pcm, sizes=[len(pcm)])
    split = OpenAICodecPair()
    split.connect("x")
    assert feed(split, pcm, sizes=sizes, batch=3) == expected
    check(split)


# ------------------------------------------------------------------ truncate, cancel


def played_ms(events: Sequence[object]) -> int:
    return sum(int(e.pcm.shape[0]) for e in of(ReplyAudio, events)) // 24


def test_truncate_is_checked_against_the_audio_that_played() -> None:
    pair = OpenAICodecPair(OpenAIRealtimeCodec(turn_detection=None), script=PACED)
    pair.connect("x")
    events = pair.send(CreateReply()) + pair.advance(250)
    item_id = of(ReplyAudio, events)[0].item_id
    assert item_id is not None
    played = played_ms(events)
    assert played == 300  # chunks at 0, 100 and 200 ms
    assert pair.send(TruncateItem(item_id, played)) == []  # truncated: nothing to report
    assert pair.server_events[-1]["type"] == "conversation.item.truncated"
    (past,) = pair.send(TruncateItem(item_id, played + 1000))
    assert isinstance(past, ErrorEvent)
    assert past.code == "invalid_value"
    assert past.event_id == f"vx_{len(pair.client_messages)}"  # names our event
    before = len(pair.client_messages)
    assert pair.send(TruncateItem(item_id, 0)) == []  # at 0 ms: not sent at all
    assert len(pair.client_messages) == before
    check(pair)


def test_cancel_ends_the_reply_and_a_second_cancel_is_refused() -> None:
    pair = OpenAICodecPair(OpenAIRealtimeCodec(turn_detection=None), script=PACED)
    pair.connect("x")
    (started,) = of(ReplyStarted, pair.send(CreateReply()))
    pair.advance(150)
    tail = pair.send(CancelReply())
    assert tail[-1] == ReplyDone(started.response_id, "cancelled")
    assert of(ReplyInterrupted, tail) == []  # the app cancelled: not an interruption
    assert pair.advance(10_000) == []  # nothing more of it ever comes
    (refused,) = pair.send(CancelReply())
    assert isinstance(refused, ErrorEvent)
    assert refused.code == "response_cancel_not_active"
    check(pair)


def test_speech_over_a_playing_reply_leaves_the_cut_to_the_session() -> None:
    # The codec asks the service not to cancel on speech (interrupt_response false):
    # the session decides barge-in (tests/test_bargein.py), so the service reports
    # the speech and goes on with the reply.
    pair = OpenAICodecPair(OpenAIRealtimeCodec(turn_detection=ServerVad()), script=PACED)
    pair.connect("x")
    (started,) = of(ReplyStarted, pair.send(CreateReply()))
    events = feed(pair, tone(300))
    assert type(events[0]) is SpeechStarted
    assert of(ReplyInterrupted, events) == []
    assert ReplyDone(started.response_id, "cancelled") not in events
    check(pair)


# ------------------------------------------------------------------ junk, drops, stalls


@pytest.mark.parametrize(
    ("junk", "why"),
    [
        ("{malformed", "malformed JSON"),
        (b"\x00\x01", "binary frame"),
        ("[1, 2]", "not an object"),
        ({"type": "input_audio_buffer.speech_started", "audio_start_ms": 5}, "item_id"),
    ],
)
def test_server_junk_becomes_a_protocol_error_and_the_pair_goes_on(
    junk: str | bytes | dict[str, object], why: str
) -> None:
    pair = OpenAICodecPair()
    pair.connect("x")
    (error,) = pair.inject(junk)
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.source) == ("protocol_error", "link")
    assert why in error.message
    assert pair.inject({"type": "x-unknown.event"}) == []  # unknown types are ignored
    assert of(ReplyDone, pair.send(CreateReply())) != []


def test_client_junk_is_refused_by_the_service_with_its_event_id() -> None:
    pair = OpenAICodecPair()
    pair.connect("x")
    (error,) = pair.send_raw('{"type": "input_audio_buffer.append", "event_id": "j1"}')
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.event_id) == ("invalid_event", "j1")
    (record,) = pair.service.invalid_events
    assert record.type == "input_audio_buffer.append"


def test_a_scripted_drop_closes_the_pair_and_a_stall_queues_until_resumed() -> None:
    dropped = OpenAICodecPair(script=ConnectionScript(drop_after=2))
    dropped.connect("x")
    feed(dropped, tone(20))
    assert (dropped.closed_by, dropped.close_code) == ("dropped", 1006)
    with pytest.raises(LoopbackClosedError):
        feed(dropped, tone(20))

    stalled = OpenAICodecPair(OpenAIRealtimeCodec(turn_detection=None),
                              script=ConnectionScript(stall_after=1))  # fmt: skip
    stalled.connect("x")
    assert feed(stalled, tone(200)) == []
    assert stalled.service.audio_samples == 0  # unread
    assert stalled.send(CommitInput()) == []
    resumed = stalled.resume()
    assert stalled.service.audio_samples == 200 * 24
    assert of(InputTranscriptionCompleted, resumed) != []
