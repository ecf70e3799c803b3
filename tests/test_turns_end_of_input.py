"""No phantom turns: the end of the input closes the last turn once, and it gets one
reply -- with server VAD (the service closes the turn on the trailing silence the codec
sends) and with manual turns (the codec commits). Under ``autojump_clock`` with the
codec and the fake service in process, and over a real websocket with a file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import trio
import trio.testing

import voxtrio
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad
from voxtrio.messages import (
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    ReplyDone,
    ReplyPlayed,
    SpeechStopped,
)
from voxtrio.runtime import open_session
from voxtrio.testing import ConnectionScript

from .loopback_helpers import LOOPBACK_MARKS, WAV_PATH, provider_for, serve
from .test_cli import voxtrio_cli
from .turns_helpers import OPENAI, PairProvider, tone

T = TypeVar("T")
VAD = ServerVad(prefix_padding_ms=0, silence_duration_ms=300)
SCRIPT = ConnectionScript(transcripts=("one", "two"), reply_ms=200)


async def run(provider: PairProvider, pcm: np.ndarray, *, manual: bool) -> list[Event]:
    events: list[Event] = []
    async with open_session(provider) as session:
        sub = session.subscribe(max_buffer=100_000)
        async with trio.open_nursery() as nursery:

            async def read_output() -> None:
                async for _ in session.output:
                    pass

            nursery.start_soon(read_output)
            for i in range(0, len(pcm), 480):
                await session.send_audio(pcm[i : i + 480], OPENAI)
                await trio.sleep(0.02)
            await session.end_input()
            if manual:
                await session.create_reply()
            async for event in sub:
                events.append(event)
                if isinstance(event, ReplyPlayed):
                    break
            await trio.sleep(5)  # time enough for a phantom turn to show up
            await session.aclose()
            events += [e async for e in sub]
    return events


def speech_then(silence_ms: int, *, count: int = 1) -> np.ndarray:
    parts = []
    for n in range(count):
        parts.append(tone(400, hz=300.0 + 50 * n))
        if n < count - 1:
            parts.append(np.zeros((600 * 24, 1), np.int16))
    parts.append(np.zeros((silence_ms * 24, 1), np.int16))
    return np.concatenate(parts)


def of(events: list[Event], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("silence_ms", [0, 100, 1000], ids=["right-after", "short", "mid-silence"])
async def test_server_vad_end_of_input_makes_one_turn_and_one_reply(
    autojump_clock: trio.testing.MockClock, silence_ms: int
) -> None:
    provider = PairProvider(OpenAIRealtimeCodec(turn_detection=VAD), script=SCRIPT)
    with trio.fail_after(60):
        events = await run(provider, speech_then(silence_ms), manual=False)
    assert [e.transcript for e in of(events, InputTranscriptionCompleted)] == ["one"]
    assert len(of(events, SpeechStopped)) == 1
    assert len(of(events, ReplyDone)) == 1
    assert provider.client_events("input_audio_buffer.commit") == []
    assert of(events, ErrorEvent) == []


async def test_two_utterances_then_the_end_make_two_turns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = PairProvider(OpenAIRealtimeCodec(turn_detection=VAD), script=SCRIPT)
    pcm = speech_then(0, count=2)
    with trio.fail_after(60):
        events: list[Event] = []
        async with open_session(provider) as session:
            sub = session.subscribe(max_buffer=100_000)
            async with trio.open_nursery() as nursery:

                async def read_output() -> None:
                    async for _ in session.output:
                        pass

                nursery.start_soon(read_output)
                for i in range(0, len(pcm), 480):
                    await session.send_audio(pcm[i : i + 480], OPENAI)
                    await trio.sleep(0.02)
                await session.end_input()
                await trio.sleep(5)
                await session.aclose()
                events = [e async for e in sub]
    assert [e.transcript for e in of(events, InputTranscriptionCompleted)] == ["one", "two"]
    assert len(of(events, ReplyDone)) == 2


@pytest.mark.parametrize("silence_ms", [0, 1000], ids=["right-after", "mid-silence"])
async def test_manual_turns_end_of_input_commits_once(
    autojump_clock: trio.testing.MockClock, silence_ms: int
) -> None:
    provider = PairProvider(OpenAIRealtimeCodec(turn_detection=None), script=SCRIPT)
    with trio.fail_after(60):
        events = await run(provider, speech_then(silence_ms), manual=True)
    assert len(provider.client_events("input_audio_buffer.commit")) == 1
    assert [e.transcript for e in of(events, InputTranscriptionCompleted)] == ["one"]
    assert len(of(events, ReplyDone)) == 1
    assert of(events, ErrorEvent) == []


@pytest.mark.parametrize("silence_ms", [0, 1000], ids=["right-after", "mid-silence"])
@LOOPBACK_MARKS[0]
async def test_a_file_read_fast_over_a_websocket_makes_one_turn_and_one_reply(
    silence_ms: int,
) -> None:
    pcm = speech_then(silence_ms)
    with trio.fail_after(30):
        async with serve(default_script=SCRIPT) as server:
            provider = provider_for(server.url, turn_detection=VAD, transcription_model="whisper-1")
            capture = voxtrio.ArrayCapture(pcm, OPENAI)
            async with voxtrio.open_session(provider, capture=capture) as session:
                sub = session.subscribe(max_buffer=100_000)
                events: list[Event] = []
                async with trio.open_nursery() as nursery:

                    async def read_output() -> None:
                        async for _ in session.output:
                            pass

                    nursery.start_soon(read_output)
                    async for event in sub:
                        events.append(event)
                        if isinstance(event, ReplyPlayed):
                            break
                    await trio.sleep(1.0)  # time enough for a phantom turn to show up
                    await session.aclose()
                    events += [e async for e in sub]
    assert [e.transcript for e in of(events, InputTranscriptionCompleted)] == ["one"]
    assert len(of(events, ReplyDone)) == 1
    assert server.all_events("input_audio_buffer.commit") == []


def test_the_fast_demo_run_prints_one_user_turn(tmp_path: Path) -> None:
    """``python -m voxtrio run <wav> --provider loopback --fast``: one utterance in
    the file, one "user said" and one reply, and the run exits by itself."""
    result = voxtrio_cli(
        "run", WAV_PATH, "--provider", "loopback", "--fast", "--out", str(tmp_path / "o"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("user said") == 1
    assert result.stdout.count("reply done") == 1
