"""Barge-in end to end: the real OpenAI codec and the fake service's VAD, replies and
truncation checks, under ``autojump_clock`` (tests/turns_helpers.PairProvider) and over
a real websocket (the loopback server).

A 3 s reply arrives as a burst; the caller speaks 1.2 s into its playout. Playback
stops within one frame (the next frame fades out, nothing more of the reply plays),
the service gets no ``response.cancel`` (the reply was complete) and exactly one
truncate at the played position, and ``ReplyInterrupted`` tells the app.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import pytest
import trio
import trio.testing

from voxtrio.audio import AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad
from voxtrio.messages import (
    ErrorEvent,
    Event,
    ReplyInterrupted,
    ReplyPlayed,
    SpeechStarted,
    TurnMetrics,
)
from voxtrio.runtime import Session, open_session
from voxtrio.testing.openai.scripts import ConnectionScript

from .turns_helpers import OPENAI, PairProvider, rms, tone

VAD = ServerVad(prefix_padding_ms=0, silence_duration_ms=200, create_response=False)
REPLY_MS = 3000
CUT_AT_S = 1.2


@attrs.define
class App:
    """Reads the output (each frame with the time it was handed over) and events."""

    session: Session
    frames: list[tuple[float, AudioFrame]] = attrs.Factory(list)
    events: list[tuple[float, Event]] = attrs.Factory(list)
    first_frame: trio.Event = attrs.Factory(trio.Event)
    cut: trio.Event = attrs.Factory(trio.Event)

    async def read_output(self) -> None:
        async for frame in self.session.output:
            self.frames.append((trio.current_time(), frame))
            self.first_frame.set()

    async def read_events(self) -> None:
        async for event in self.session.subscribe(max_buffer=100_000):
            self.events.append((trio.current_time(), event))
            if isinstance(event, ReplyInterrupted):
                self.cut.set()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def frames_after(self, t: float) -> list[AudioFrame]:
        return [f for at, f in self.frames if at > t]


def pair(**script: Any) -> PairProvider:
    options: dict[str, Any] = {"reply_ms": REPLY_MS, "pace_replies": False, **script}
    return PairProvider(OpenAIRealtimeCodec(turn_detection=VAD), script=ConnectionScript(**options))


async def speak(session: Session, ms: int = 300) -> None:
    """The caller speaks (and then is silent long enough for the VAD to stop)."""
    for chunk in (tone(ms, hz=300.0), np.zeros((400 * 24, 1), np.int16)):
        for i in range(0, len(chunk), 480):
            await session.send_audio(chunk[i : i + 480], OPENAI)
            await trio.sleep(0.02)


async def barge_in_over_a_burst(
    provider: PairProvider, *, interruptible: bool | None = None
) -> tuple[App, float]:
    """A 3 s reply; the caller speaks 1.2 s into its playout. (app, time of the speech)"""
    async with open_session(provider) as session:
        app = App(session)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app.read_output)
            nursery.start_soon(app.read_events)
            await trio.sleep(0.1)
            await session.create_reply(interruptible=interruptible)
            await app.first_frame.wait()
            start = app.frames[0][0]
            await trio.sleep_until(start + CUT_AT_S)
            spoke_at = trio.current_time()
            await speak(session)
            await trio.sleep(REPLY_MS / 1000)  # long enough for the rest to have played
            await session.aclose()
    return app, spoke_at


async def test_barge_in_stops_playback_within_a_frame_and_truncates_at_the_played_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        provider = pair()
        app, spoke_at = await barge_in_over_a_burst(provider)
    after = app.frames_after(spoke_at)
    assert len(after) == 1  # the frame that was due next, faded out: then silence
    assert rms(after[0]) > 0
    assert np.abs(after[0].pcm[-24:]).max() < np.abs(after[0].pcm[:24]).max()
    played_ms = sum(f.samples for _, f in app.frames) * 1000 // 24_000
    # Up to the frame due at the very instant of the speech, and the faded one.
    assert played_ms == pytest.approx(CUT_AT_S * 1000, abs=40)
    assert provider.client_events("response.cancel") == []  # the reply was complete
    (truncate,) = provider.client_events("conversation.item.truncate")
    assert abs(truncate["audio_end_ms"] - played_ms) <= 20  # within one frame
    assert truncate["audio_end_ms"] <= played_ms
    assert provider.server_events("conversation.item.truncated")  # the service took it
    assert app.of(ErrorEvent) == []
    (cut,) = app.of(ReplyInterrupted)
    assert cut.item_id == truncate["item_id"]
    assert cut.played_ms == truncate["audio_end_ms"]
    (metrics,) = app.of(TurnMetrics)
    assert metrics.interrupted
    assert metrics.interrupted_at_ms == cut.played_ms
    assert metrics.reply_played_ms == played_ms
    # The cut was decided on the SpeechStarted: the event came first.
    kinds = [type(e) for _, e in app.events]
    assert kinds.index(SpeechStarted) < kinds.index(ReplyInterrupted)


async def test_barge_in_while_the_reply_is_generated_cancels_it_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        provider = pair(pace_replies=True, reply_chunk_ms=100)
        app, spoke_at = await barge_in_over_a_burst(provider)
    assert len(app.frames_after(spoke_at)) <= 1
    assert len(provider.client_events("response.cancel")) == 1
    (truncate,) = provider.client_events("conversation.item.truncate")
    played_ms = sum(f.samples for _, f in app.frames) * 1000 // 24_000
    assert abs(truncate["audio_end_ms"] - played_ms) <= 20
    assert app.of(ErrorEvent) == []  # the truncate was within what was received
    (played,) = app.of(ReplyPlayed)
    assert played.played_ms == played_ms


async def test_barge_in_before_any_audio_played_sends_no_truncate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        provider = PairProvider(
            OpenAIRealtimeCodec(turn_detection=VAD),
            script=ConnectionScript(reply_ms=REPLY_MS, pace_replies=True),
            reply_latency_s=1.0,  # the reply started; its audio is a second away
        )
        async with open_session(provider) as session:
            app = App(session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app.read_output)
                nursery.start_soon(app.read_events)
                await trio.sleep(0.1)
                await session.create_reply()
                await trio.sleep(0.5)  # speaks before the reply has said anything
                await speak(session)
                await trio.sleep(5)
                await session.aclose()
    assert provider.client_events("conversation.item.truncate") == []
    assert len(provider.client_events("response.cancel")) == 1
    assert app.frames == []  # its audio arrived after the cut: none of it played
    assert app.of(ErrorEvent) == []
    (cut,) = app.of(ReplyInterrupted)
    assert cut.played_ms in (None, 0)


async def test_a_not_interruptible_reply_plays_to_the_end_and_interrupt_still_cuts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        provider = pair()
        app, _ = await barge_in_over_a_burst(provider, interruptible=False)
    played_ms = sum(f.samples for _, f in app.frames) * 1000 // 24_000
    assert played_ms == REPLY_MS
    assert app.of(ReplyInterrupted) == []
    assert provider.client_events("conversation.item.truncate") == []
    assert provider.service.audio_samples > 300 * 24  # the caller's audio was still sent
    assert app.of(SpeechStarted)

    with trio.fail_after(60):
        provider = pair()
        async with open_session(provider, interruptible=False) as session:
            app = App(session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app.read_output)
                nursery.start_soon(app.read_events)
                await trio.sleep(0.1)
                await session.create_reply()
                await app.first_frame.wait()
                await trio.sleep(0.5)
                cut_at = trio.current_time()
                await session.interrupt()
                await trio.sleep(REPLY_MS / 1000)
                await session.aclose()
    assert len(app.frames_after(cut_at)) <= 1
    (cut,) = app.of(ReplyInterrupted)
    (truncate,) = provider.client_events("conversation.item.truncate")
    assert truncate["audio_end_ms"] == cut.played_ms
    assert abs(cut.played_ms - 500) <= 40  # the frame due at that instant, and the fade
