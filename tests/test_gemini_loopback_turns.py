"""The Gemini loopback takes turns by itself, as the real service does.

Sans-IO first (the fake service with an explicit clock, the codec reading what it
sends), then voxtrio's real session over a websocket on 127.0.0.1: the energy VAD (the
one the OpenAI loopback uses, here at 16 kHz) or the client's activity marks end a
user turn; the service sends the transcript in pieces and a model turn (24 kHz audio
with its transcription, ``generationComplete``, ``turnComplete``); a user who speaks
over a paced model turn interrupts it.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio import (
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    MemoryTranscriptStore,
    ReconnectPolicy,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
    ReplyStarted,
)
from voxtrio.audio import AudioFormat, AudioFrame
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.gemini_live import AutomaticVad, GeminiLiveCodec, GeminiLiveConfig
from voxtrio.codecs.transcript import AssistantItem, UserItem
from voxtrio.codecs.wire import LinkSignal, ResumptionHandle
from voxtrio.messages import EndOfInput, Event, FrameBatch
from voxtrio.runtime import Session
from voxtrio.testing import EnergyVad as TopLevelVad
from voxtrio.testing.canned import reply_tone, split_text
from voxtrio.testing.gemini import (
    GeminiLoopback,
    GeminiScript,
    GeminiService,
    GeminiSessions,
    GeminiTurns,
    open_gemini_loopback,
    oracle,
)
from voxtrio.testing.openai.vad import EnergyVad as OldPathVad
from voxtrio.testing.vad import EnergyVad

from .loopback_helpers import WAV_FMT, WAV_PCM, Recorder, own_garbage_only

KEY = "AIza-test-turns-Hq2Lw8"
FAST = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8)
IN16 = AudioFormat(16_000, 1)
#: The demo file at Gemini's input rate: one utterance, the VAD's stop at 3180 ms.
HELLO16 = convert_oneshot(WAV_PCM, WAV_FMT, IN16)

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


def tone16(ms: int, amplitude: int = 6000) -> np.ndarray:
    t = np.arange(ms * 16) / 16_000
    return np.round(amplitude * np.sin(2 * np.pi * 330 * t)).astype(np.int16).reshape(-1, 1)


def silence16(ms: int) -> np.ndarray:
    return np.zeros((ms * 16, 1), np.int16)


# ---------------------------------------------------------------- the shared VAD


def test_the_openai_path_still_names_the_shared_vad() -> None:
    assert OldPathVad is EnergyVad
    assert TopLevelVad is EnergyVad


@settings(max_examples=40, deadline=None)
@given(
    segments=st.lists(
        st.tuples(st.booleans(), st.integers(1, 120)), min_size=1, max_size=8
    ),  # (loud?, length in 10 ms blocks)
    cuts=st.lists(st.integers(1, 5000), max_size=6),
)
def test_the_vad_hears_the_same_speech_at_16_and_24_khz(
    segments: list[tuple[bool, int]], cuts: list[int]
) -> None:
    """The same signal at Gemini's 16 kHz and OpenAI's 24 kHz gives the same events
    (in ms), however the 16 kHz audio is cut into pushes."""

    def signal(rate: int) -> np.ndarray:
        parts = []
        for loud, blocks in segments:
            n = blocks * rate // 100
            parts.append(np.full(n, 3000 if loud else 20, np.int16))
        return np.concatenate(parts)

    at24 = EnergyVad(rate=24_000).push(signal(24_000))
    x16 = signal(16_000)
    vad16 = EnergyVad(rate=16_000)
    pieces = []
    bounds = [0, *sorted({c % (len(x16) + 1) for c in cuts}), len(x16)]
    for a, b in itertools.pairwise(bounds):
        pieces += vad16.push(x16[a:b])
    assert pieces == at24
    assert pieces == EnergyVad(rate=16_000).push(x16)


def test_the_vad_refuses_a_block_that_is_not_whole_samples() -> None:
    with pytest.raises(ValueError, match="whole samples"):
        EnergyVad(rate=22_050)  # 220.5 samples per 10 ms
    EnergyVad(rate=22_050, block_ms=20)  # 441 samples: fine


def test_the_demo_file_is_one_utterance_at_16_khz() -> None:
    assert EnergyVad(rate=16_000).push(HELLO16) == [("start", 0), ("stop", 3180)]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab  .", max_size=40), n=st.integers(1, 12))
def test_split_text_cuts_into_at_most_n_pieces_that_join_back(text: str, n: int) -> None:
    pieces = split_text(text, n)
    assert "".join(pieces) == text
    assert all(pieces)
    assert len(pieces) == min(n, len(text))


def test_split_text_cuts_before_words_when_it_can() -> None:
    assert split_text("loopback utterance 1", 3) == ["loopback ", "utterance ", "1"]
    with pytest.raises(ValueError, match="pieces must be >= 1"):
        split_text("x", 0)


# ---------------------------------------------------------------- sans-IO: the service


class Driver:
    """The codec and the fake service with turns, on an explicit clock."""

    def __init__(self, turns: GeminiTurns, *, sessions: GeminiSessions | None = None,
                 **config: Any) -> None:  # fmt: skip
        self.codec = GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test", **config))
        self.service = GeminiService(sessions=sessions, turns=turns)
        self.events: list[Event | LinkSignal] = []
        self.now = 0.0
        self.feed(self.codec.connect_messages("base"))

    def feed(self, wire: list[str]) -> None:
        for message in wire:
            oracle.client_message(message)
            self.deliver(self.service.receive(message, now=self.now))

    def deliver(self, outgoing: list[Any]) -> None:
        for item in outgoing:
            oracle.server_message(item)
            self.events += self.codec.decode(item)

    def audio(self, pcm: np.ndarray, chunk_ms: int = 100) -> None:
        """``pcm`` (16 kHz mono) in ``chunk_ms`` messages, each sent once it was
        captured: the clock moves on by its length first."""
        step = chunk_ms * 16
        for i in range(0, len(pcm), step):
            frame = AudioFrame(pcm[i : i + step], 16_000)
            self.run_until(self.now + frame.samples / 16_000)
            self.feed(self.codec.encode(FrameBatch((frame,))))

    def end(self) -> None:
        self.feed(self.codec.encode(EndOfInput()))

    def run_until(self, t: float) -> None:
        while (due := self.service.next_wakeup) is not None and due <= t + 1e-9:
            self.now = due
            self.deliver(self.service.advance_to(due))
        self.now = t

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def sent(self) -> list[str]:
        """The kinds of server content sent, in order."""
        out = []
        for m in self.service.sent:
            for k, v in m.get("serverContent", {}).items():
                out.append(k if k != "modelTurn" else "audio")
                assert v not in (False, None)
        return out


def test_a_vad_turn_is_transcribed_in_pieces_then_answered_in_order() -> None:
    turns = GeminiTurns(transcripts=("What time is it now?",), transcript_pieces=4,
                        reply_text="It is noon.", reply_ms=250, reply_chunk_ms=100)  # fmt: skip
    d = Driver(turns)
    d.audio(np.concatenate([tone16(800), silence16(700)]))
    (turn,) = d.service.user_turns
    assert (turn.transcript, turn.ended_by, turn.end_ms) == ("What time is it now?", "vad", 1300)
    # inputTranscription x4, then 3 chunks (100+100+50 ms) each followed by a piece of
    # the reply's transcription, then generationComplete and turnComplete.
    assert d.sent() == ["inputTranscription"] * 4 + ["audio", "outputTranscription"] * 3 + [
        "generationComplete", "turnComplete"
    ]  # fmt: skip
    heard = [m["serverContent"]["inputTranscription"]["text"] for m in d.service.sent[1:5]]
    assert "".join(heard) == "What time is it now?"
    (done,) = d.of(InputTranscriptionCompleted)
    assert done.transcript == "What time is it now?"
    assert len(d.of(InputTranscriptionDelta)) == 4
    audio = d.of(ReplyAudio)
    assert {a.sample_rate for a in audio} == {24_000}
    np.testing.assert_array_equal(
        np.concatenate([a.pcm for a in audio]).reshape(-1), reply_tone(250, 440.0)
    )
    assert [r.status for r in d.of(ReplyDone)] == ["completed"]
    mimes = {
        p["inlineData"]["mimeType"]
        for m in d.service.sent
        for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    }
    assert mimes == {"audio/pcm;rate=24000"}


def test_silence_and_noise_below_the_threshold_take_no_turn() -> None:
    d = Driver(GeminiTurns())
    rng = np.random.default_rng(3)
    d.audio(rng.integers(-300, 300, (16_000 * 2, 1)).astype(np.int16))
    d.end()
    assert d.service.user_turns == []
    assert d.service.sent == [{"setupComplete": {}}]


def test_audio_stream_end_ends_the_turn_in_progress() -> None:
    d = Driver(GeminiTurns())
    d.audio(tone16(600))  # still speaking: no silence yet
    assert d.service.user_turns == []
    d.end()
    (turn,) = d.service.user_turns
    assert (turn.ended_by, turn.end_ms) == ("audioStreamEnd", 600)
    assert len(d.of(ReplyDone)) == 1


def test_turns_count_on_across_the_servers_connections() -> None:
    sessions = GeminiSessions()
    said = []
    for _ in range(2):
        d = Driver(GeminiTurns(), sessions=sessions)
        d.audio(np.concatenate([tone16(300), silence16(600), tone16(300), silence16(600)]))
        said += [e.transcript for e in d.of(InputTranscriptionCompleted)]
    assert said == [f"loopback utterance {n}" for n in (1, 2, 3, 4)]


def test_the_clients_silence_duration_is_the_vads() -> None:
    gap = np.concatenate([tone16(300), silence16(700), tone16(300), silence16(1300)])
    long = Driver(GeminiTurns(), turn_detection=AutomaticVad(silence_duration_ms=1000))
    long.audio(gap)
    assert [t.end_ms for t in long.service.user_turns] == [2300]  # the 700 ms gap is no end
    short = Driver(GeminiTurns(), turn_detection=AutomaticVad(silence_duration_ms=200))
    short.audio(gap)
    assert [t.end_ms for t in short.service.user_turns] == [500, 1500]


def test_manual_activity_marks_the_turn_and_the_vad_stays_out() -> None:
    d = Driver(GeminiTurns(), turn_detection=None)
    d.audio(np.concatenate([tone16(300), silence16(900), tone16(300)]))
    assert d.service.user_turns == []  # a pause is not an end: the client decides
    assert d.service.activity == ["start"]
    d.end()  # activityEnd
    assert d.service.activity == ["start", "end"]
    (turn,) = d.service.user_turns
    assert (turn.ended_by, turn.end_ms) == ("activityEnd", 1500)
    assert [e.transcript for e in d.of(InputTranscriptionCompleted)] == ["loopback utterance 1"]
    assert len(d.of(ReplyDone)) == 1


def test_without_the_vad_a_turn_is_the_audio_before_each_stream_end() -> None:
    d = Driver(GeminiTurns(vad=False))
    d.audio(np.concatenate([tone16(300), silence16(900), tone16(300)]))
    assert d.service.user_turns == []
    d.end()
    d.end()  # nothing since: no turn (and the codec sends no second end)
    d.audio(silence16(200))
    d.end()
    assert [t.end_ms for t in d.service.user_turns] == [1500, 1700]


PACED = GeminiTurns(reply_ms=1000, reply_chunk_ms=100, pace_replies=True)


def test_a_paced_model_turn_goes_out_in_real_time() -> None:
    d = Driver(PACED)
    d.audio(np.concatenate([tone16(300), silence16(500)]))
    start = d.now
    assert d.sent().count("audio") == 1  # the first chunk at once
    assert d.service.next_wakeup == pytest.approx(start + 0.1)
    d.run_until(start + 0.55)
    assert d.sent().count("audio") == 6
    d.run_until(start + 0.95)
    assert "generationComplete" in d.sent()  # with the last chunk ...
    assert "turnComplete" not in d.sent()  # ... but the turn ends once it played
    d.run_until(start + 1.0)
    assert d.sent()[-2:] == ["generationComplete", "turnComplete"]
    assert d.service.next_wakeup is None
    assert [r.status for r in d.of(ReplyDone)] == ["completed"]


def test_speaking_over_a_paced_model_turn_interrupts_it() -> None:
    d = Driver(PACED)
    d.audio(np.concatenate([tone16(300), silence16(500)]))
    d.audio(silence16(300))  # three more chunks went out meanwhile
    d.audio(tone16(200))
    kinds = d.sent()
    cut = kinds.index("interrupted")
    assert kinds[cut : cut + 2] == ["interrupted", "turnComplete"]
    assert "generationComplete" not in kinds  # not in an interrupted turn
    assert d.service.auto is not None
    assert d.service.auto.interruptions == 1
    assert kinds.count("audio") == 5  # at 0.8, 0.9, 1.0, 1.1 and 1.2 s: then the cut
    d.run_until(d.now + 5)
    assert d.sent() == kinds  # nothing more of that turn
    (cut_event,) = d.of(ReplyInterrupted)
    assert [r.status for r in d.of(ReplyDone)] == ["cancelled"]
    assert cut_event.response_id == d.of(ReplyDone)[0].response_id
    # The interrupting turn is answered in its turn.
    d.audio(silence16(600))
    d.run_until(d.now + 2)
    assert [e.transcript for e in d.of(InputTranscriptionCompleted)] == [
        "loopback utterance 1", "loopback utterance 2"
    ]  # fmt: skip
    assert [r.status for r in d.of(ReplyDone)] == ["cancelled", "completed"]


def test_an_activity_start_interrupts_too() -> None:
    d = Driver(PACED, turn_detection=None)
    d.audio(tone16(300))
    d.end()
    assert d.of(ReplyInterrupted) == []
    d.audio(silence16(100))  # audio after activityEnd: the codec's activityStart first
    assert d.service.activity == ["start", "end", "start"]
    assert len(d.of(ReplyInterrupted)) == 1


def test_no_interruption_answers_the_later_turn_after_the_first() -> None:
    d = Driver(PACED, turn_detection=AutomaticVad(interrupt=False))
    d.audio(np.concatenate([tone16(300), silence16(500)]))
    d.audio(np.concatenate([tone16(200), silence16(500)]))  # spoken over the reply
    assert d.of(ReplyInterrupted) == []
    assert len(d.service.user_turns) == 2
    d.run_until(d.now + 5)
    assert [r.status for r in d.of(ReplyDone)] == ["completed", "completed"]
    # The second transcript (3 pieces each) came after the first turn's turnComplete.
    kinds = d.sent()
    heard = [i for i, k in enumerate(kinds) if k == "inputTranscription"]
    assert len(heard) == 6
    assert heard[3] > kinds.index("turnComplete")
    assert len(d.of(InputTranscriptionCompleted)) == 2


def test_each_turn_complete_is_followed_by_a_resumption_update() -> None:
    """So the client learns what was consumed (it keeps unconfirmed audio for a
    resume, and pushes back past 5 s of it)."""
    d = Driver(GeminiTurns())
    d.audio(np.concatenate([tone16(300), silence16(500)]))
    last = d.service.sent[-1]
    assert d.service.sent[-2]["serverContent"] == {"turnComplete": True}
    update = last["sessionResumptionUpdate"]
    assert update["resumable"] is True
    assert update["lastConsumedClientMessageIndex"] == len(d.service.records) - 1
    (handle,) = d.of(ResumptionHandle)
    assert handle.handle == update["newHandle"]
    # Interrupted turns too; and none when the script says so.
    p = Driver(PACED)
    p.audio(np.concatenate([tone16(300), silence16(500), tone16(100)]))
    assert "sessionResumptionUpdate" in p.service.sent[-1]
    assert p.service.sent[-2]["serverContent"] == {"turnComplete": True}
    quiet = Driver(GeminiTurns(resumption_updates=False))
    quiet.audio(np.concatenate([tone16(300), silence16(500)]))
    assert not [m for m in quiet.service.sent if "sessionResumptionUpdate" in m]


def test_the_turn_script_is_checked() -> None:
    for bad in ({"transcript_pieces": 0}, {"reply_chunk_ms": 0}, {"reply_ms": -1},
                {"vad_rms_threshold": 0.0}, {"reply_tone_hz": float("nan")}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            GeminiTurns(**bad)


# ---------------------------------------------------------------- over the websocket


def check_server(server: GeminiLoopback) -> None:
    """Every client message valid for google-genai and for the fake; every server
    message a LiveServerMessage."""
    assert server.connections, "the test never reached the server"
    for conn in server.connections:
        for record in conn.service.records:
            assert record.problem is None, record
            oracle.client_message(json.dumps(record.message))
        for sent in conn.sent:
            oracle.server_message(sent)


@pytest.fixture(autouse=True)
def _sockets_closed() -> Any:
    yield from own_garbage_only()


@asynccontextmanager
async def session_with(
    server: GeminiLoopback, pcm: np.ndarray, fmt: AudioFormat, played: list[AudioFrame],
    *, store: MemoryTranscriptStore | None = None, **provider: Any,
) -> AsyncIterator[tuple[Session, Recorder]]:  # fmt: skip
    gemini = voxtrio.GeminiLive(
        model="gemini-live-test", api_key=KEY, base_url=server.url, reconnect=FAST, seed=3,
        **provider,
    )  # fmt: skip
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(
            gemini,
            capture=voxtrio.ArrayCapture(pcm, fmt),
            store=store,
            session_id="call-1",
            realtime_playback=False,
        ) as session,
    ):
        recorder = Recorder(session.subscribe(max_buffer=1_000_000))
        nursery.start_soon(recorder.run)

        async def collect() -> None:
            async for frame in session.output:
                played.append(frame)

        nursery.start_soon(collect)
        yield session, recorder


def reply_samples(conn: Any) -> int:
    total = 0
    for m in conn.service.sent:
        for p in m.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            total += len(base64.b64decode(p["inlineData"]["data"])) // 2
    return total


async def test_the_demo_file_gets_one_turn_and_one_reply() -> None:
    turns = GeminiTurns(transcripts=("Hello there, how are you today?",), transcript_pieces=5,
                        reply_text="Fine, thanks for asking.", reply_ms=700)  # fmt: skip
    store = MemoryTranscriptStore()
    played: list[AudioFrame] = []
    with trio.fail_after(30):
        script = GeminiScript(turns=turns)
        async with open_gemini_loopback(api_key=KEY, default_script=script) as server:
            async with session_with(server, WAV_PCM, WAV_FMT, played, store=store) as (_, rec):
                await rec.wait_for(ReplyPlayed)
                await rec.wait_for(ReplyDone)
            check_server(server)
    (conn,) = server.connections
    (turn,) = conn.service.user_turns
    assert (turn.ended_by, turn.end_ms) == ("vad", 3180)
    deltas = rec.of(InputTranscriptionDelta)
    assert len(deltas) == 5
    (done,) = rec.of(InputTranscriptionCompleted)
    assert done.transcript == "Hello there, how are you today?"
    assert {d.item_id for d in deltas} == {done.item_id}
    # The reply: 700 ms at 24 kHz, exactly the scripted tone, played whole.
    assert {f.sample_rate for f in played} == {24_000}
    pcm = np.concatenate([f.pcm for f in played]).reshape(-1)
    np.testing.assert_array_equal(pcm, reply_tone(700, 440.0))
    assert reply_samples(conn) == 700 * 24
    (reply,) = rec.of(ReplyDone)
    assert reply.status == "completed"
    # The transcript: the user, then the assistant.
    items = [i for i in store.items("call-1") if isinstance(i, UserItem | AssistantItem)]
    assert [(type(i).__name__, i.text) for i in items] == [
        ("UserItem", "Hello there, how are you today?"),
        ("AssistantItem", "Fine, thanks for asking."),
    ]


async def test_two_utterances_are_two_turns_and_all_the_audio_arrives() -> None:
    """Longer than the link's 5 s budget of unconfirmed audio: the update after each
    turn lets it go on; each utterance is one transcription and one reply, stored in
    order."""
    pcm = np.concatenate([WAV_PCM, np.zeros((48_000, 2), np.int16), WAV_PCM])
    want = convert_oneshot(pcm, WAV_FMT, IN16)
    store = MemoryTranscriptStore()
    played: list[AudioFrame] = []
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY) as server:
            async with session_with(server, pcm, WAV_FMT, played, store=store) as (_, rec):
                await rec.wait_for(ReplyPlayed, 2)
                conn = server.connections[0]
                await server.wait_until(lambda: conn.service.audio_stream_ends == 1)
            check_server(server)
    np.testing.assert_array_equal(conn.service.connection_audio, want)
    stops = [ms for kind, ms in EnergyVad(rate=16_000).push(want) if kind == "stop"]
    assert len(stops) == 2
    assert [t.end_ms for t in conn.service.user_turns] == stops
    assert [e.transcript for e in rec.of(InputTranscriptionCompleted)] == [
        "loopback utterance 1", "loopback utterance 2"
    ]  # fmt: skip
    assert [d.status for d in rec.of(ReplyDone)] == ["completed", "completed"]
    assert sum(f.samples for f in played) == 2 * 400 * 24
    items = [i for i in store.items("call-1") if isinstance(i, UserItem | AssistantItem)]
    assert [i.text for i in items] == [
        "loopback utterance 1", "Hello from the loopback provider.",
        "loopback utterance 2", "Hello from the loopback provider.",
    ]  # fmt: skip


async def test_manual_activity_takes_the_turn_at_activity_end() -> None:
    """GeminiLive(turn_detection=None): the codec brackets the input in activityStart /
    activityEnd; the service's VAD stays out, so the turn ends at the end of the input
    (3441 ms), not at the VAD's 3180 ms."""
    store = MemoryTranscriptStore()
    played: list[AudioFrame] = []
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY) as server:
            async with session_with(
                server, WAV_PCM, WAV_FMT, played, store=store, turn_detection=None
            ) as (_, rec):
                await rec.wait_for(ReplyDone)
                await rec.wait_for(ReplyPlayed)
            check_server(server)
    (conn,) = server.connections
    setup = conn.service.setup
    assert setup is not None
    assert setup["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": True}
    assert conn.service.activity == ["start", "end"]
    (turn,) = conn.service.user_turns
    assert turn.ended_by == "activityEnd"
    assert turn.end_ms == HELLO16.shape[0] * 1000 // 16_000
    assert [e.transcript for e in rec.of(InputTranscriptionCompleted)] == ["loopback utterance 1"]
    assert sum(f.samples for f in played) == 400 * 24
    items = [i for i in store.items("call-1") if isinstance(i, UserItem | AssistantItem)]
    assert [i.text for i in items] == ["loopback utterance 1", "Hello from the loopback provider."]


async def test_speaking_over_a_paced_reply_interrupts_it() -> None:
    """The demo file, a second of silence, the demo file again, as fast as the session
    sends it; the reply to the first turn is paced (10 s of audio), so the second
    utterance reaches the server while it is still being sent: ``interrupted``, and
    the session reports ReplyInterrupted; the second turn is answered next."""
    pcm = np.concatenate([WAV_PCM, np.zeros((48_000, 2), np.int16), WAV_PCM])
    script = GeminiScript(turns=GeminiTurns(reply_ms=10_000, pace_replies=True))
    played: list[AudioFrame] = []
    with trio.fail_after(60):
        async with open_gemini_loopback(api_key=KEY, default_script=script) as server:
            async with session_with(server, pcm, WAV_FMT, played) as (session, rec):
                await rec.wait_for(ReplyInterrupted)
                await rec.wait_for(ReplyStarted, 2)
                await rec.wait_for(InputTranscriptionCompleted, 2)
                await session.aclose()
            check_server(server)
    (conn,) = server.connections
    kinds = [k for m in conn.service.sent for k in m.get("serverContent", {})]
    cut = kinds.index("interrupted")
    assert kinds[cut + 1] == "turnComplete"
    assert "generationComplete" not in kinds[:cut]
    assert reply_samples(conn) < 10_000 * 24  # the first reply was cut short
    assert conn.service.auto is not None
    assert conn.service.auto.interruptions == 1
    first = rec.of(ReplyStarted)[0].response_id
    (interrupted,) = rec.of(ReplyInterrupted)
    assert interrupted.response_id == first
    assert [d.status for d in rec.of(ReplyDone)][:1] == ["cancelled"]
    assert [e.transcript for e in rec.of(InputTranscriptionCompleted)] == [
        "loopback utterance 1", "loopback utterance 2"
    ]  # fmt: skip
