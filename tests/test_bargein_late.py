"""Late deltas of a cut reply never reach the output, whatever their timing and
number, and the next reply plays in full (hypothesis, under a mock clock); and the
TurnMetrics figures equal the scripted delays."""

from __future__ import annotations

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxtrio.audio import AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad
from voxtrio.messages import (
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
    ReplyStarted,
    SpeechStarted,
    SpeechStopped,
    TruncateItem,
    TurnMetrics,
)
from voxtrio.runtime import open_session
from voxtrio.testing import RecordingProvider
from voxtrio.testing.openai.scripts import ConnectionScript

from .turns_helpers import OPENAI, PairProvider, tone


def audio(pcm: np.ndarray, rid: str, iid: str) -> ReplyAudio:
    return ReplyAudio(pcm, 24_000, rid, iid)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    late=st.lists(st.tuples(st.floats(0, 0.3), st.integers(1, 4800)), max_size=6),
    cut_after=st.integers(1, 20),
)
def test_late_deltas_of_a_cut_reply_never_reach_the_output(
    late: list[tuple[float, int]], cut_after: int
) -> None:
    async def main() -> None:
        provider = RecordingProvider()
        r1 = tone(1000, hz=500.0)
        r2 = tone(400, hz=700.0, amplitude=3000)
        got: list[AudioFrame] = []
        with trio.fail_after(60):
            async with open_session(provider) as session:
                await provider.connected.wait()
                sub = session.subscribe(max_buffer=10_000)
                await provider.emit(ReplyStarted("r1"))
                await provider.emit(audio(r1, "r1", "i1"))
                async for frame in session.output:
                    got.append(frame)
                    if len(got) == cut_after:
                        break
                await provider.emit(SpeechStarted("u1"))
                async for event in sub:
                    if isinstance(event, ReplyInterrupted):
                        break
                before = len(got)
                async with trio.open_nursery() as nursery:

                    async def stale() -> None:
                        for delay, n in late:
                            await trio.sleep(delay)
                            await provider.emit(audio(r1[:n], "r1", "i1"))
                        await provider.emit(ReplyDone("r1", "cancelled"))

                    nursery.start_soon(stale)
                    await provider.emit(ReplyStarted("r2"))
                    await provider.emit(audio(r2, "r2", "i2"))
                    await provider.emit(ReplyDone("r2"))
                    async for frame in session.output:
                        got.append(frame)
                        if sum(f.samples for f in got[before + 1 :]) >= len(r2):
                            break
                await trio.sleep(1)
                await session.aclose()
                async for frame in session.output:
                    got.append(frame)
        # After the cut: at most the one faded frame of r1, then exactly r2, nothing else.
        tail = np.concatenate([f.pcm for f in got[before:]])
        fade = len(tail) - len(r2)
        assert fade in (0, 480)
        assert np.array_equal(tail[fade:], r2)
        played_r1 = (before * 480 + fade) * 1000 // 24_000
        truncates = [c for c in provider.controls if isinstance(c, TruncateItem)]
        assert truncates == [TruncateItem("i1", played_r1)]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_turn_metrics_equal_the_scripted_delays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    vad = ServerVad(prefix_padding_ms=0, silence_duration_ms=200)  # replies by itself
    provider = PairProvider(
        OpenAIRealtimeCodec(turn_detection=vad),
        script=ConnectionScript(reply_ms=600),
        reply_latency_s=0.35,
    )
    events = []
    with trio.fail_after(60):
        async with open_session(provider) as session:
            sub = session.subscribe(max_buffer=10_000)
            async with trio.open_nursery() as nursery:

                async def read_output() -> None:
                    async for _ in session.output:
                        pass

                nursery.start_soon(read_output)
                await trio.sleep(0.1)
                for chunk in (tone(300), np.zeros((300 * 24, 1), np.int16)):
                    for i in range(0, len(chunk), 480):
                        await session.send_audio(chunk[i : i + 480], OPENAI)
                        await trio.sleep(0.02)
                async for event in sub:
                    events.append((trio.current_time(), event))
                    if isinstance(event, TurnMetrics):
                        break
                stats = session.stats()
                await session.aclose()
    stopped_at = next(t for t, e in events if isinstance(e, SpeechStopped))
    (metrics,) = [e for _, e in events if isinstance(e, TurnMetrics)]
    assert metrics.speech_to_first_audio_s == pytest.approx(0.35)
    assert metrics.first_audio_to_played_s == pytest.approx(0.0)
    assert metrics.speech_to_played_s == pytest.approx(0.35)
    assert metrics.reply_played_ms == 600
    assert not metrics.interrupted
    assert metrics.underruns == 0
    played = next(e for _, e in events if isinstance(e, ReplyPlayed))
    assert played.played_ms == 600
    assert stopped_at > 0
    assert stats.turns.turns == 1
    assert stats.turns.speech_to_first_audio_p50_s == pytest.approx(0.35)
    assert stats.turns.speech_to_first_audio_p95_s == pytest.approx(0.35)


async def test_underruns_are_counted_when_reply_audio_comes_slower_than_real_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = RecordingProvider()
    with trio.fail_after(60):
        async with open_session(provider) as session:
            await provider.connected.wait()
            sub = session.subscribe(max_buffer=10_000)
            async with trio.open_nursery() as nursery:

                async def read_output() -> None:
                    async for _ in session.output:
                        pass

                nursery.start_soon(read_output)
                await provider.emit(ReplyStarted("r1"))
                for _ in range(3):  # 100 ms of audio every 200 ms: dry twice between
                    await provider.emit(audio(tone(100), "r1", "i1"))
                    await trio.sleep(0.2)
                await provider.emit(ReplyDone("r1"))
                async for event in sub:
                    if isinstance(event, TurnMetrics):
                        metrics = event
                        break
                stats = session.stats()
                await session.aclose()
    assert metrics.underruns == 2
    assert stats.turns.underruns == 2
