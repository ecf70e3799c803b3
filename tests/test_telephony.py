"""The media-stream front door over real sockets on 127.0.0.1, against the OpenAI
loopback provider: a recorded call in, transcripts to the store, mu-law reply audio
out in real time, barge-in, the concurrency bound and drain."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import trio
import trio.testing
import trio_websocket

import voxtrio
from voxtrio.codecs.media_stream import MediaFormat, Start
from voxtrio.codecs.transcript import UserItem
from voxtrio.telephony import serve_media_streams
from voxtrio.testing import ConnectionScript, open_openai_loopback
from voxtrio.testing.telephony import open_telephony_call, wav_to_mulaw

from .telephony_helpers import HELLO, loopback_factory, running_server

REPLY_MS = 600


def user_turns(store: voxtrio.TranscriptStore, sid: str) -> list[str]:
    return [i.text for i in store.items(sid) if isinstance(i, UserItem)]


async def test_a_recorded_call_gets_transcripts_and_a_realtime_mulaw_reply() -> None:
    with trio.fail_after(30):
        store = voxtrio.MemoryTranscriptStore()
        script = ConnectionScript(reply_ms=REPLY_MS, transcripts=("hello there",))
        async with open_openai_loopback(default_script=script) as loopback, running_server(
            loopback, store=store
        ) as server:
            async with open_telephony_call(server.url, call_sid="CA-hello") as call:
                await call.send_audio(wav_to_mulaw(HELLO), realtime=True)
                await call.send_silence(0.6)
                await call.wait_for(lambda c: c.media_bytes >= 8 * REPLY_MS)
                await call.hang_up()
            assert call.close_code == 1000
        assert user_turns(store, "CA-hello") == ["hello there"]
        items = store.items("CA-hello")
        assert any("Hello from the loopback" in getattr(i, "text", "") for i in items)
        # The reply came back as 8 kHz mu-law: the loopback's tone, all of it, once.
        reply = call.reply_pcm()
        assert abs(len(reply) - 8 * REPLY_MS) <= 160
        assert all(len(m) == 160 for m in call.media[:-1])  # 20 ms frames
        spectrum = np.abs(np.fft.rfft(reply.astype(np.float64)))
        peak_hz = np.argmax(spectrum) * 8000 / len(reply)
        assert abs(peak_hz - 440.0) < 10
        # In real time: 30 frames spread over ~0.6 s, not a burst.
        span = call.media_times[-1] - call.media_times[0]
        assert 0.45 <= span <= 1.2, span
        # The provider got the caller's audio at its own format (24 kHz) for ~the call.
        got_s = len(loopback.all_audio()) / 24000
        assert got_s >= 3.4
        assert not loopback.internal_errors


@pytest.mark.parametrize("paced", [True, False], ids=["reply-streaming", "reply-queued"])
async def test_barge_in_sends_clear_and_stops_the_reply(paced: bool) -> None:
    """The caller speaks over a 4 s reply: while the provider still streams it
    (paced), or after it sent it all and only playback still holds it (queued)."""
    with trio.fail_after(30):
        script = ConnectionScript(reply_ms=4000, pace_replies=paced)
        async with open_openai_loopback(default_script=script) as loopback, running_server(
            loopback
        ) as server, open_telephony_call(server.url, call_sid="CA-barge") as call:
            await call.send_audio(wav_to_mulaw(HELLO), realtime=False)
            await call.send_silence(0.6, realtime=False)
            await call.wait_for(lambda c: c.media_bytes >= 8 * 300)  # 300 ms played
            await loopback.current.send_event(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": 5000,
                    "item_id": "item_barge",
                }
            )
            await call.wait_for(lambda c: len(c.clears) >= 1)
            (stats,) = server.live.values()
            at_clear = call.media_bytes
            await call.send_silence(1.0)  # a second of the caller, in real time
            after = call.media_bytes - at_clear
            await call.hang_up()
        assert len(call.clears) == 1
        assert stats.clears == 1
        assert after <= 160 * 3, after  # at most what was in flight
        assert call.media_bytes < 8 * 1500  # the 4 s reply was cut short
        # The session cut it: a cancel only while it was still generated, and a
        # truncate at what went out.
        assert len(loopback.all_events("response.cancel")) == (1 if paced else 0)
        assert len(loopback.all_events("conversation.item.truncate")) == 1
        assert not loopback.internal_errors


async def test_max_calls_refuses_with_503_and_frees_the_slot() -> None:
    with trio.fail_after(30):
        async with open_openai_loopback() as loopback, running_server(
            loopback, max_calls=2
        ) as server:
            async with open_telephony_call(server.url) as a, open_telephony_call(server.url) as b:
                await server.wait_for_calls(lambda s: s.active_calls == 2)
                with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                    async with open_telephony_call(server.url):
                        pass
                assert refused.value.status_code == 503
                assert b"capacity" in (refused.value.body or b"")
                await a.hang_up()
                await server.wait_for_calls(lambda s: s.active_calls == 1)
                async with open_telephony_call(server.url) as c:
                    await server.wait_for_calls(lambda s: s.active_calls == 2)
                    await c.hang_up()
                await b.hang_up()
            assert server.stats.refused == 1
            assert server.stats.peak_calls == 2


async def test_start_parameters_marks_and_dtmf_reach_the_call() -> None:
    with trio.fail_after(15):
        seen: list[Start] = []
        async with open_openai_loopback() as loopback:
            make = loopback_factory(loopback)

            def factory(start: Start) -> voxtrio.OpenAIRealtime:
                seen.append(start)
                return make(start)

            async with trio.open_nursery() as nursery:
                server = await nursery.start(partial(serve_media_streams, factory))
                async with open_telephony_call(
                    server.url, call_sid="CA-p", custom_parameters={"lang": "fr"}
                ) as call:
                    await call.send_mark("greeting-done")
                    await call.send_dtmf("7")
                    await call.hang_up()
                nursery.cancel_scope.cancel()
        assert [s.custom_parameters for s in seen] == [{"lang": "fr"}]
        (done,) = server.finished
        assert (done.call_sid, done.marks_played, done.dtmf) == ("CA-p", ["greeting-done"], ["7"])
        assert done.stopped


async def test_unsupported_format_is_closed_with_a_reason() -> None:
    with trio.fail_after(15):
        async with open_openai_loopback() as loopback, running_server(loopback) as server:
            start = Start("MZ1", "CA1", media_format=MediaFormat("audio/x-l16", 16000))
            async with open_telephony_call(server.url, start=start) as call:
                await call.wait_for(lambda c: c.close_code is not None)
        assert call.close_code == 1003
        assert "audio/x-mulaw or audio/x-alaw" in (call.close_reason or "")
        assert not loopback.connections  # no session was opened


async def test_drain_lets_live_calls_finish_then_closes_the_rest() -> None:
    with trio.fail_after(30):
        store = voxtrio.MemoryTranscriptStore()
        async with open_openai_loopback() as loopback, running_server(
            loopback, store=store
        ) as server, open_telephony_call(server.url, call_sid="CA-d1") as quick, \
                    open_telephony_call(server.url, call_sid="CA-d2") as slow:
            await server.wait_for_calls(lambda s: s.active_calls == 2)
            await quick.send_audio(wav_to_mulaw(HELLO), realtime=False)
            await quick.send_silence(0.6, realtime=False)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain, 3.0)
                await trio.testing.wait_all_tasks_blocked()
                assert server.draining
                # New calls are refused while draining (the listener is closed).
                with pytest.raises((OSError, trio_websocket.HandshakeError)):
                    async with open_telephony_call(server.url):
                        pass
                await quick.wait_for(lambda c: c.media_bytes >= 8 * 400)
                await quick.hang_up()  # finished in time: closed normally
                # `slow` never hangs up: the deadline closes it with 1001.
                await slow.wait_for(lambda c: c.close_code is not None)
        assert quick.close_code == 1000
        assert slow.close_code == 1001
        assert user_turns(store, "CA-d1")  # flushed before drain returned
        assert server.stats.finished == 2
