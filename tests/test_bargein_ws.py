"""The main barge-in test over real time and a real websocket: ``OpenAIRealtime``
against the loopback server on 127.0.0.1. A 3 s reply arrives as a burst; the caller
speaks 1.2 s into its playout."""

from __future__ import annotations

import numpy as np
import trio

import voxtrio
from voxtrio.codecs.openai_realtime import ServerVad
from voxtrio.messages import ErrorEvent, ReplyInterrupted, SpeechStarted
from voxtrio.testing import ConnectionScript

from .loopback_helpers import LOOPBACK_MARKS, provider_for, serve
from .test_bargein import App
from .turns_helpers import OPENAI, tone

pytestmark = LOOPBACK_MARKS

VAD = ServerVad(prefix_padding_ms=0, silence_duration_ms=200, create_response=False)


async def test_barge_in_over_a_real_websocket() -> None:
    with trio.fail_after(30):
        async with serve(default_script=ConnectionScript(reply_ms=3000)) as server:
            provider = provider_for(server.url, turn_detection=VAD)
            async with voxtrio.open_session(provider) as session:
                app = App(session)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(app.read_output)
                    nursery.start_soon(app.read_events)
                    await session.create_reply()
                    await app.first_frame.wait()
                    await trio.sleep_until(app.frames[0][0] + 1.2)
                    speech = tone(300, hz=300.0)
                    for i in range(0, len(speech), 480):
                        await session.send_audio(speech[i : i + 480], OPENAI)
                    await app.cut.wait()
                    await trio.sleep(1.0)  # anything still to play would have by now
                    await session.aclose()
    heard_at = next(t for t, e in app.events if isinstance(e, SpeechStarted))
    after = [f for t, f in app.frames if t > heard_at]
    assert len(after) <= 2  # one in flight at the channel, and the faded one
    played_ms = sum(f.samples for _, f in app.frames) * 1000 // 24_000
    assert 1100 <= played_ms <= 2000  # cut in the middle, not at the end
    assert len(server.all_events("response.cancel")) <= 1
    (truncate,) = server.all_events("conversation.item.truncate")
    assert abs(truncate["audio_end_ms"] - played_ms) <= 20
    (cut,) = app.of(ReplyInterrupted)
    assert cut.played_ms == truncate["audio_end_ms"]
    assert app.of(ErrorEvent) == []
    assert np.abs(after[-1].pcm[-24:]).max() < np.abs(after[-1].pcm[:24]).max()  # faded
