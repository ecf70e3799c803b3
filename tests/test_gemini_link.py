"""Gemini Live through the real shared link against the loopback server (127.0.0.1,
port 0): audio exactness across goAway and across drops with transparent
resumption, the transcript on a fresh connection and not on a resumed one, a
refused resumption, and tool-call cancellation as an event."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio import (
    ErrorEvent,
    ReconnectPolicy,
    SessionReconnected,
    SessionReconnecting,
    ToolCall,
    ToolCallCancelled,
)
from voxtrio.actors import link
from voxtrio.actors.link import ConnectTarget
from voxtrio.audio import AudioFormat, AudioFrame, concat_frames
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig, auth_headers
from voxtrio.codecs.wav import read_wav
from voxtrio.messages import Event, LinkInput
from voxtrio.runtime import Session
from voxtrio.testing.gemini import GeminiLoopback, GeminiScript, open_gemini_loopback

from .loopback_helpers import WAV_FMT, WAV_PATH, WAV_PCM, Recorder, drain, own_garbage_only
from .test_gemini_session import check_server

KEY = "AIza-link-test-Vb5Tq8Ln3Hs"
GEMINI_IN = AudioFormat(16_000, 1)
#: One 20 ms frame per wire message: the message count, and so a drop point, is
#: fixed by the audio, not by how the writer happened to batch it.
ONE_PER_MESSAGE = ReconnectPolicy(
    initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8, max_batch_frames=1
)
BASE = "You are a test assistant."

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _sockets_closed() -> Any:
    yield from own_garbage_only()


def write_mono_44k(path: Path, seconds: float = 1.3) -> Path:
    """A 44.1 kHz mono WAV: a chirp plus a little noise, so no two frames are alike."""
    rate = 44_100
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(44)
    signal = 9000 * np.sin(2 * np.pi * (200 + 400 * t) * t) + rng.normal(0, 300, t.shape)
    pcm = np.clip(signal, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def expected_audio(path: str | Path) -> np.ndarray:
    pcm, fmt = read_wav(str(path))
    return convert_oneshot(pcm, fmt, GEMINI_IN)


@asynccontextmanager
async def wav_session(
    server: GeminiLoopback, path: str | Path, policy: ReconnectPolicy = ONE_PER_MESSAGE,
    **kw: Any,
) -> AsyncIterator[tuple[Session, Recorder]]:
    provider = voxtrio.GeminiLive(
        model="gemini-live-test",
        api_key=KEY,
        base_url=server.url,
        reconnect=policy,
        seed=5,
    )
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(
            provider,
            instructions=BASE,
            capture=voxtrio.WavCapture(path),
            realtime_playback=False,
            **kw,
        ) as session,
    ):
        recorder = Recorder(session.subscribe(max_buffer=1_000_000))
        nursery.start_soon(recorder.run)
        nursery.start_soon(drain, session.output)
        yield session, recorder


async def session_audio_settled(server: GeminiLoopback, samples: int) -> np.ndarray:
    """The latest connection's session audio once it holds ``samples`` and nothing
    more is moving (a duplicate, had one been sent, has arrived by then)."""
    await server.wait_until(
        lambda: bool(server.accepted)
        and server.accepted[-1].service.session_audio.shape[0] >= samples
    )
    await trio.testing.wait_all_tasks_blocked()
    return server.accepted[-1].service.session_audio


# ------------------------------------------------------------------ goAway


@pytest.mark.parametrize("wav", ["48k-stereo", "44k-mono"])
async def test_audio_is_exact_across_a_go_away(wav: str, tmp_path: Path) -> None:
    """The server asks to move after 40 messages (confirming every 7): the link
    reconnects at once with the latest handle, before ``timeLeft`` runs out; the
    app sees SessionReconnecting/SessionReconnected with the reason and no error;
    the resumed session's audio is the one-shot conversion to 16 kHz mono."""
    path = WAV_PATH if wav == "48k-stereo" else write_mono_44k(tmp_path / "mono44k.wav")
    want = expected_audio(path)
    with trio.fail_after(30):
        scripts = (GeminiScript(resumption_every=7, go_away_after=40, go_away_time_left_s=5),)
        async with open_gemini_loopback(api_key=KEY, scripts=scripts) as server:
            async with wav_session(server, path) as (_, recorder):
                got = await session_audio_settled(server, want.shape[0])
                first, second = server.accepted
            check_server(server)
    np.testing.assert_array_equal(got, want)
    assert second.service.resumed_from is not None
    assert first.closed_by == "client"
    assert not recorder.of(ErrorEvent)
    (going,) = recorder.of(SessionReconnecting)
    assert going.delay_s == 0
    assert "goAway" in going.reason
    (back,) = recorder.of(SessionReconnected)
    assert back.resumed
    # Proactive: the new session was set up before the old one's time ran out.
    assert first.go_away_at is not None
    assert second.setup_at is not None
    assert second.setup_at - first.go_away_at < 5


# ------------------------------------------------------------------ drops


#: (confirm every N messages, drop after message M): M after the first confirmation
#: (message N + 1, the setup being message 1), within the 173 the WAV takes.
DROP_PLANS = st.integers(1, 6).flatmap(lambda n: st.tuples(st.just(n), st.integers(n + 1, 171)))


@settings(max_examples=12, deadline=None)
@example(plan=(1, 2))
@example(plan=(5, 171))
@given(plan=DROP_PLANS)
def test_audio_is_exact_across_a_drop_with_resumption(plan: tuple[int, int]) -> None:
    """The server confirms every ``confirm_every`` messages and drops TCP after
    message ``drop_at`` (after the first confirmation): the link resumes with the
    last handle and resends exactly the unconsumed messages. The resumed session
    holds the one-shot conversion of the 48 kHz stereo WAV: nothing lost, nothing
    twice."""
    confirm_every, drop_at = plan
    want = expected_audio(WAV_PATH)

    async def main() -> None:
        with trio.fail_after(30):
            scripts = (GeminiScript(resumption_every=confirm_every, drop_after=drop_at),)
            async with open_gemini_loopback(api_key=KEY, scripts=scripts) as server:
                async with wav_session(server, WAV_PATH) as (_, recorder):
                    got = await session_audio_settled(server, want.shape[0])
                    await recorder.wait_for(SessionReconnected)
                first, second = server.accepted[:2]
                check_server(server)
            np.testing.assert_array_equal(got, want)
            assert first.closed_by == "dropped"
            assert second.service.resumed_from is not None
            assert recorder.of(SessionReconnected)[0].resumed

    trio.run(main)


# ------------------------------------------------------------------ late confirmations


def write_long_48k_stereo(path: Path, seconds: float = 12.0) -> Path:
    """The bundled 48 kHz stereo WAV repeated to ``seconds`` (each copy shifted a
    little, so no two stretches are alike)."""
    rate = WAV_FMT.sample_rate
    n = round(rate * seconds)
    reps = -(-n // WAV_PCM.shape[0])
    copies = [np.clip(WAV_PCM.astype(np.int32) + 7 * k, -32768, 32767) for k in range(reps)]
    pcm = np.concatenate(copies)[:n].astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(WAV_FMT.channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


async def test_a_server_that_never_confirms_gets_all_the_audio(tmp_path: Path) -> None:
    """The server sends no ``sessionResumptionUpdate`` at all: 12 s of 48 kHz stereo
    (more than twice the 5 s outage buffer) still arrive whole, as the one-shot
    16 kHz conversion, with nothing dropped. (Before the retention budget, the
    audio kept for a resend filled the outage buffer and the link stopped at 5 s.)"""
    path = write_long_48k_stereo(tmp_path / "long48k.wav")
    want = expected_audio(path)
    assert want.shape[0] == 12 * 16_000
    with trio.fail_after(60):
        silent = GeminiScript(turns=None)
        async with open_gemini_loopback(api_key=KEY, default_script=silent) as server:
            async with wav_session(server, path) as (_, recorder):
                got = await session_audio_settled(server, want.shape[0])
            check_server(server)
    np.testing.assert_array_equal(got, want)
    assert len(server.accepted) == 1
    assert not recorder.of(voxtrio.AudioDropped)
    assert not recorder.of(ErrorEvent)


async def test_audio_not_kept_for_a_resend_is_reported_as_dropped(tmp_path: Path) -> None:
    """Confirmations every 50 messages (1 s), a resend buffer of 0.2 s, a drop after
    message 130: the written audio beyond the buffer was no longer kept, so the
    resumed session misses it. The app gets AudioDropped for exactly the samples
    the server did not get, and they are one stretch: everything before and after
    it arrives, in order, once."""
    policy = attrs.evolve(ONE_PER_MESSAGE, resend_buffer_s=0.2)
    want = expected_audio(WAV_PATH)
    with trio.fail_after(60):
        scripts = (GeminiScript(resumption_every=50, drop_after=130, turns=None),)
        silent = GeminiScript(turns=None)
        async with open_gemini_loopback(
            api_key=KEY, scripts=scripts, default_script=silent
        ) as server:
            async with wav_session(server, WAV_PATH, policy) as (_, recorder):
                dropped = await recorder.wait_for(voxtrio.AudioDropped)
                lost = dropped.samples
                got = await session_audio_settled(server, want.shape[0] - lost)
                await recorder.wait_for(SessionReconnected)
            check_server(server)
    assert dropped.edge == "link_buffer"
    assert len(recorder.of(voxtrio.AudioDropped)) == 1
    assert 0 < lost < want.shape[0]
    assert got.shape[0] == want.shape[0] - lost  # exactly what was reported, lost
    # One stretch, from where the resumed session's consumed audio ends.
    first, second = server.accepted[:2]
    assert second.service.resumed_from is not None
    start = got.shape[0] - second.service.connection_audio.shape[0]
    np.testing.assert_array_equal(got[:start], want[:start])
    np.testing.assert_array_equal(got[start:], want[start + lost :])
    assert first.closed_by == "dropped"


# ------------------------------------------------------------------ instructions


def system_text(conn: Any) -> str:
    setup = conn.service.setup
    assert setup is not None
    return str(setup.get("systemInstruction", {}).get("parts", [{}])[0].get("text", ""))


async def test_a_drop_without_a_handle_carries_the_transcript_in_the_new_setup() -> None:
    """No resumption updates, so no handle: after a drop the new setup's
    systemInstruction holds the earlier turns (the test's own: the service takes none)."""
    with trio.fail_after(30):
        silent = GeminiScript(turns=None)
        async with open_gemini_loopback(api_key=KEY, default_script=silent) as server:
            async with wav_session(server, WAV_PATH) as (_, recorder):
                first = await server.wait_for_connection()
                await first.wait_for_messages(2)
                await first.send(first.service.transcribe(["What is ", "the weather?"]))
                reply = np.full((2400, 1), 900, np.int16)
                await first.send(first.service.reply(reply, ["Sunny ", "all day."]))
                await recorder.wait_until(
                    lambda: any(e.status == "completed" for e in recorder.of(voxtrio.ReplyDone))
                )
                await first.drop()
                second = await server.wait_for_connection(2)
                await second.wait_for_messages(1)
                await recorder.wait_for(SessionReconnected)
            check_server(server)
    assert "What is the weather?" not in system_text(first)
    text = system_text(second)
    assert BASE in text
    assert "What is the weather?" in text
    assert "Sunny all day." in text
    assert "handle" not in second.service.setup["sessionResumption"]  # type: ignore[index]
    assert not recorder.of(SessionReconnected)[0].resumed


@attrs.define
class LinkHarness:
    send: trio.MemorySendChannel[LinkInput]
    events: list[Event]
    fetched: list[str]


@asynccontextmanager
async def gemini_link(
    server: GeminiLoopback, *, transcript: Callable[[], str]
) -> AsyncIterator[LinkHarness]:
    """The real link with the Gemini codec; ``instructions()`` is the base plus
    whatever ``transcript()`` says, and the base is passed on its own."""
    input_tx, input_rx = trio.open_memory_channel[LinkInput](10_000)
    events_tx, events_rx = trio.open_memory_channel[Event](10_000)
    harness = LinkHarness(input_tx, [], [])

    async def instructions() -> str:
        await trio.lowlevel.checkpoint()
        harness.fetched.append(f"{BASE}\n{transcript()}")
        return harness.fetched[-1]

    async def collect() -> None:
        async for event in events_rx:
            harness.events.append(event)

    config = GeminiLiveConfig(model="gemini-live-test")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await nursery.start(
            partial(
                link.run,
                input_rx,
                events_tx,
                name="gemini",
                codec_factory=lambda: GeminiLiveCodec(config),
                target=ConnectTarget(server.url, headers=auth_headers(KEY), secrets=(KEY,)),
                instructions=instructions,
                base_instructions=BASE,
                policy=ONE_PER_MESSAGE,
                seed=1,
            )
        )
        yield harness
        nursery.cancel_scope.cancel()


def frames(n: int) -> list[AudioFrame]:
    return [
        AudioFrame.from_pcm(np.full((320, 1), i + 1, np.int16), GEMINI_IN, pts=i * 320)
        for i in range(n)
    ]


async def test_a_drop_with_a_handle_resumes_without_repeating_the_transcript() -> None:
    """With a handle the new setup resumes and carries the base instructions only:
    the provider kept the conversation, so the transcript is not sent again."""
    with trio.fail_after(30):
        scripts = (GeminiScript(resumption_every=2, drop_after=9),)
        async with open_gemini_loopback(api_key=KEY, scripts=scripts) as server:
            async with gemini_link(server, transcript=lambda: "[earlier turns here]") as h:
                for frame in frames(20):
                    h.send.send_nowait(frame)
                second = await server.wait_for_connection(2)
                await server.wait_until(lambda: second.service.session_audio.shape[0] >= 6400)
            check_server(server)
    first = server.accepted[0]
    assert system_text(first) == f"{BASE}\n[earlier turns here]"
    assert system_text(second) == BASE
    assert second.service.resumed_from is not None
    assert h.fetched == [f"{BASE}\n[earlier turns here]"]  # fetched for the fresh one only
    want = concat_frames(frames(20))
    np.testing.assert_array_equal(second.service.session_audio, want)


async def test_a_refused_resumption_starts_afresh_with_the_transcript() -> None:
    """The second connection refuses the handle (closes the setup with 1011): the
    third starts a fresh session with no handle, the transcript in its setup, and
    none of the messages written before (the fresh session is seeded instead)."""
    with trio.fail_after(30):
        scripts = (
            GeminiScript(resumption_every=1, drop_after=6),
            GeminiScript(refuse_resumption=True),
        )
        async with (
            open_gemini_loopback(api_key=KEY, scripts=scripts) as server,
            gemini_link(server, transcript=lambda: "[turns]") as h,
        ):
            for frame in frames(5):
                h.send.send_nowait(frame)
            third = await server.wait_for_connection(3)
            await third.wait_for_messages(1)
            for frame in frames(2):
                h.send.send_nowait(frame)
            await server.wait_until(lambda: third.service.session_audio.shape[0] >= 640)
            await trio.testing.wait_all_tasks_blocked()
    second = server.accepted[1]
    assert second.service.setup["sessionResumption"]["handle"]  # type: ignore[index]
    assert second.close_code == 1011
    assert "handle" not in third.service.setup["sessionResumption"]  # type: ignore[index]
    assert system_text(third) == f"{BASE}\n[turns]"
    assert third.service.resumed_from is None
    want = concat_frames(frames(2))
    np.testing.assert_array_equal(third.service.session_audio, want)
    reconnected = [e for e in h.events if isinstance(e, SessionReconnected)]
    assert [e.resumed for e in reconnected] == [False]


# ------------------------------------------------------------------ tools


async def test_a_tool_call_cancellation_reaches_the_app() -> None:
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY) as server:
            async with wav_session(server, WAV_PATH) as (_, recorder):
                conn = await server.wait_for_connection()
                await conn.wait_for_messages(1)
                await conn.send(conn.service.tool_call("lookup", {"q": "x"}, "call-7"))
                await conn.send(conn.service.cancel_tool_calls(["call-7"]))
                cancelled = await recorder.wait_for(ToolCallCancelled)
            check_server(server)
    assert cancelled == ToolCallCancelled(("call-7",))
    (call,) = recorder.of(ToolCall)
    assert recorder.events.index(call) < recorder.events.index(cancelled)


async def test_a_session_that_resumes_sends_the_base_instructions_only() -> None:
    """Through open_session: the first setup carries the transcript so far (none yet:
    the base); after a drop with a handle the resumed setup carries the session's base
    instructions and not the turns the service still holds."""
    with trio.fail_after(30):
        scripts = (GeminiScript(resumption_every=1, turns=None),)  # the test's turns only
        silent = GeminiScript(turns=None)
        async with open_gemini_loopback(
            api_key=KEY, scripts=scripts, default_script=silent
        ) as server:
            async with wav_session(server, WAV_PATH) as (_, recorder):
                first = await server.wait_for_connection()
                await first.wait_for_messages(3)
                await first.send(first.service.transcribe(["Book a ", "table."]))
                reply = np.full((2400, 1), 900, np.int16)
                await first.send(first.service.reply(reply, ["For two?"]))
                await recorder.wait_until(
                    lambda: any(e.status == "completed" for e in recorder.of(voxtrio.ReplyDone))
                )
                await first.drop()
                second = await server.wait_for_connection(2)
                await second.wait_for_messages(1)
                await recorder.wait_for(SessionReconnected)
            check_server(server)
    assert second.service.resumed_from is not None
    assert system_text(second) == BASE
    assert "Book a table." not in system_text(second)
    assert "For two?" not in system_text(second)
    assert recorder.of(SessionReconnected)[0].resumed
