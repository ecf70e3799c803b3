"""Barge-in with Gemini Live: the service's ``interrupted`` (ReplyInterrupted from the
codec) cuts playback within a frame, under ``autojump_clock``. Gemini has no cancel
and no truncation (its capabilities say so): nothing is sent back, the cut is local."""

from __future__ import annotations

import numpy as np
import trio
import trio.testing

from voxtrio.messages import FrameBatch, ReplyInterrupted, TruncateItem
from voxtrio.runtime import open_session

from .test_bargein import App
from .turns_helpers import GeminiPairProvider, rms, tone


async def test_gemini_interrupted_stops_playback_within_a_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = GeminiPairProvider()
    assert not provider.capabilities.truncation
    with trio.fail_after(60):
        async with open_session(provider) as session:
            app = App(session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app.read_output)
                nursery.start_soon(app.read_events)
                await provider.connected.wait()
                await provider.say(provider.service.reply(tone(3000), ["Hello"], complete=False))
                await app.first_frame.wait()
                await trio.sleep_until(app.frames[0][0] + 1.2)
                cut_at = trio.current_time()
                await provider.say(provider.service.interrupt())
                # Pieces the service still had in flight open a new turn (the codec's
                # rule): a later reply plays normally.
                await trio.sleep(1)
                await provider.say(provider.service.reply(tone(200, hz=300.0)))
                await trio.sleep(3)
                await session.aclose()
    after = [f for t, f in app.frames if cut_at < t < cut_at + 1]
    assert len(after) == 1  # the faded frame
    assert rms(after[0]) > 0
    (cut,) = app.of(ReplyInterrupted)
    assert cut.played_ms is not None
    assert abs(cut.played_ms - 1200) <= 40  # the frame due at that instant, and the fade
    assert not [c for c in provider.controls if isinstance(c, TruncateItem | FrameBatch)]
    later = np.concatenate([f.pcm for t, f in app.frames if t >= cut_at + 1])
    assert len(later) == 200 * 24
