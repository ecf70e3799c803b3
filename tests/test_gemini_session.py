"""``voxtrio.GeminiLive`` sessions against the loopback Gemini Live server on
127.0.0.1 (port 0): real sockets, the shared link, the whole pipeline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
import trio.lowlevel

import voxtrio
from voxtrio import (
    ErrorEvent,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    MemoryTranscriptStore,
    ReconnectPolicy,
    ReplyDone,
    ReplyPlayed,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
)
from voxtrio.audio import AudioFormat, AudioFrame, concat_frames
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.transcript import AssistantItem, UserItem
from voxtrio.runtime import Session
from voxtrio.testing.gemini import GeminiLoopback, GeminiScript, open_gemini_loopback, oracle

from .loopback_helpers import WAV_FMT, WAV_PCM, Recorder, drain, own_garbage_only

KEY = "AIza-test-Gq7Zr2Wm9Kx4"
FAST = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8)
GEMINI_IN = AudioFormat(16_000, 1)

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _sockets_closed() -> Any:
    yield from own_garbage_only()


def check_server(server: GeminiLoopback) -> None:
    """Every client message valid for google-genai and for the fake; every server
    message a LiveServerMessage."""
    assert server.connections, "the test never reached the server"
    for conn in server.connections:
        for record in conn.service.records:
            assert record.problem is None, record
            assert record.message is not None
            oracle.client_message(json.dumps(record.message))
        for sent in conn.service.sent:
            oracle.server_message(json.dumps(sent))


async def _collect(output: trio.MemoryReceiveChannel[AudioFrame], into: list[AudioFrame]) -> None:
    async for frame in output:
        into.append(frame)


@asynccontextmanager
async def gemini_session(
    server: GeminiLoopback, *, api_key: str = KEY, played: list[AudioFrame] | None = None,
    **kw: Any,
) -> AsyncIterator[tuple[Session, Recorder]]:
    """A session against ``server`` with a recorder subscribed from the start; the
    output frames go to ``played`` (or are drained)."""
    provider = voxtrio.GeminiLive(
        model="gemini-live-test", api_key=api_key, base_url=server.url, reconnect=FAST, seed=7
    )
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(
            provider, instructions="You are a test assistant.", realtime_playback=False, **kw
        ) as session,
    ):
        recorder = Recorder(session.subscribe(max_buffer=1_000_000))
        nursery.start_soon(recorder.run)
        if played is None:
            nursery.start_soon(drain, session.output)
        else:
            nursery.start_soon(_collect, session.output, played)
        yield session, recorder
    for event in recorder.events:
        assert KEY not in repr(event)


async def test_a_turn_end_to_end() -> None:
    """48 kHz stereo in arrives as the one-shot 16 kHz conversion; a transcript in
    five pieces is one completed transcription; the reply audio plays. The test
    speaks for the service (no turns of its own)."""
    with trio.fail_after(30):
        silent = GeminiScript(turns=None)
        async with open_gemini_loopback(api_key=KEY, default_script=silent) as server:
            capture = voxtrio.ArrayCapture(WAV_PCM, WAV_FMT)
            played: list[AudioFrame] = []
            store = MemoryTranscriptStore()
            async with gemini_session(
                server, capture=capture, played=played, store=store, session_id="call-1"
            ) as (_, recorder):
                conn = await server.wait_for_connection()
                want = convert_oneshot(WAV_PCM, WAV_FMT, GEMINI_IN)
                await server.wait_until(
                    lambda: conn.service.connection_audio.shape[0] >= want.shape[0]
                )
                pieces = ["Hello ", "there, ", "how ", "are ", "you?"]
                await conn.send(conn.service.transcribe(pieces))
                reply = np.full((4800, 1), 1200, np.int16)
                await conn.send(conn.service.reply(reply, ["Fine, ", "thanks."]))
                await recorder.wait_for(ReplyPlayed)
            check_server(server)
        np.testing.assert_array_equal(conn.service.connection_audio, want)
        setup = conn.service.setup
        assert setup is not None
        assert "You are a test assistant." in setup["systemInstruction"]["parts"][0]["text"]
        assert conn.header("x-goog-api-key") == KEY
        assert KEY not in conn.path
        assert len(recorder.of(InputTranscriptionDelta)) == 5
        (done,) = recorder.of(InputTranscriptionCompleted)
        assert done.transcript == "Hello there, how are you?"
        np.testing.assert_array_equal(concat_frames(played), reply)
        users = [i for i in store.items("call-1") if isinstance(i, UserItem)]
        assert [(u.item_id, u.text) for u in users] == [(done.item_id, done.transcript)]
        said = [i.text for i in store.items("call-1") if isinstance(i, AssistantItem)]
        assert said == ["Fine, thanks."]
        (done_reply,) = recorder.of(ReplyDone)
        assert done_reply.status == "completed"
        assert recorder.of(SessionConnected) == [SessionConnected("gemini", len(
            setup["systemInstruction"]["parts"][0]["text"]))]


async def test_go_away_reconnects_with_the_latest_handle() -> None:
    """After a goAway the link connects again and the new setup names the handle
    the last resumption update gave; the fake service resumes that session."""
    with trio.fail_after(30):
        scripts = (GeminiScript(resumption_every=1, go_away_after=6, go_away_time_left_s=2),)
        async with open_gemini_loopback(api_key=KEY, scripts=scripts) as server:
            async with gemini_session(server) as (session, recorder):
                first = await server.wait_for_connection()
                fmt = AudioFormat(16_000, 1)
                chunk = np.ones((320, 1), np.int16)
                while not first.closed.is_set():
                    await session.send_audio(chunk, fmt)
                    await trio.lowlevel.checkpoint()
                second = await server.wait_for_connection(2)
                await second.wait_for_messages(1)
                await recorder.wait_for(SessionReconnected)
            check_server(server)
        handle = second.service.setup["sessionResumption"]["handle"]  # type: ignore[index]
        assert handle in server.sessions.by_handle
        assert second.service.resumed_from == handle
        assert first.closed_by == "client"
        (back,) = recorder.of(SessionReconnected)
        assert back.reason == "go_away"
        assert back.resumed
        (going,) = recorder.of(SessionReconnecting)
        assert going.reason.startswith("go_away: ")
        assert going.delay_s == 0
        assert not recorder.of(ErrorEvent)
