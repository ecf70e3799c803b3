"""Phone audio through the real pipeline, over sockets on 127.0.0.1:

* OpenAI takes 8 kHz G.711 natively (``audio/pcmu``, ``audio/pcma``): a call's bytes
  reach the loopback server byte-identical, and the reply's bytes reach the caller
  untouched -- through ``open_session(input_format=G.711)`` and through the front door;
* Gemini needs 16 kHz PCM: the call is decoded and resampled (declared rate == real
  rate), the 24 kHz reply resampled to 8 kHz and encoded.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio import ReplyPlayed
from voxtrio.audio import AudioFormat, AudioFrame, concat_frames
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.g711 import alaw_encode, mulaw_encode
from voxtrio.codecs.g711_stream import decode_codes, silence_code
from voxtrio.codecs.media_stream import Start
from voxtrio.runtime.provider import Provider
from voxtrio.telephony import MediaStreamServer, serve_media_streams
from voxtrio.testing import ConnectionScript, OpenAILoopback, open_openai_loopback
from voxtrio.testing.gemini import GeminiLoopback, GeminiScript, open_gemini_loopback, oracle
from voxtrio.testing.openai.replies import reply_tone
from voxtrio.testing.telephony import open_telephony_call

from .loopback_helpers import Recorder

WIRE = {"mulaw": "audio/pcmu", "alaw": "audio/pcma"}
ENCODE = {"mulaw": mulaw_encode, "alaw": alaw_encode}
REPLY_MS = 400
GEMINI_KEY = "AIza-test-Gq7Zr2Wm9Kx4"


def a_call(law: str, *, speech_s: float = 0.6, silence_s: float = 0.8, seed: int = 0) -> bytes:
    """A caller's turn as G.711: loud noisy speech-like audio, then silence (the
    loopback's VAD ends the turn on it)."""
    rng = np.random.default_rng(seed)
    n = int(speech_s * 8000)
    t = np.arange(n) / 8000
    voice = 9000 * np.sin(2 * np.pi * 300 * t) + rng.normal(0, 2000, n)
    pcm = np.concatenate([np.clip(voice, -32768, 32767), np.zeros(int(silence_s * 8000))])
    return ENCODE[law](pcm.astype(np.int16))


def expected_reply(law: str, ms: int = REPLY_MS) -> bytes:
    """The loopback's reply tone as it puts it on the wire in a G.711 session."""
    return ENCODE[law](np.ascontiguousarray(reply_tone(ms, 440.0)[::3]))


def chunked(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def openai(loopback: OpenAILoopback) -> voxtrio.OpenAIRealtime:
    return voxtrio.OpenAIRealtime(model="gpt-realtime", api_key="test", base_url=loopback.url)


def gemini(server: GeminiLoopback) -> voxtrio.GeminiLive:
    return voxtrio.GeminiLive(model="gemini-live-test", api_key=GEMINI_KEY, base_url=server.url)


async def collect(output: trio.MemoryReceiveChannel[AudioFrame], into: list[AudioFrame]) -> None:
    async for frame in output:
        into.append(frame)


def check_openai_wire(loopback: OpenAILoopback, law: str, call: bytes) -> None:
    """The call reached the service byte for byte (then only end-of-input silence),
    with the format declared both ways, and every client event was valid."""
    (conn,) = loopback.connections
    wire = conn.service.wire_audio
    assert wire[: len(call)] == call
    assert set(wire[len(call) :]) <= {silence_code(law)}
    assert not conn.service.invalid_events
    (update,) = loopback.all_events("session.update")
    audio = update["session"]["audio"]
    assert audio["input"]["format"] == audio["output"]["format"] == {"type": WIRE[law]}
    # ... and the service took it as it is (no PCM rate left over from its defaults)
    assert conn.service.session["audio"]["input"]["format"] == {"type": WIRE[law]}
    assert not loopback.internal_errors


# ---------------------------------------------------------------- open_session, OpenAI


async def run_openai_session(
    law: str, pieces: list[bytes]
) -> tuple[OpenAILoopback, list[AudioFrame]]:
    played: list[AudioFrame] = []
    script = ConnectionScript(reply_ms=REPLY_MS)
    async with open_openai_loopback(default_script=script) as loopback:
        fmt = AudioFormat(8000, encoding=law)  # type: ignore[arg-type]
        async with (
            trio.open_nursery() as nursery,
            voxtrio.open_session(
                openai(loopback), input_format=fmt, realtime_playback=False
            ) as session,  # fmt: skip
        ):
            assert session.input_format == fmt  # the provider takes the call as it is
            recorder = Recorder(session.subscribe(max_buffer=100_000))
            nursery.start_soon(recorder.run)
            nursery.start_soon(collect, session.output, played)
            for piece in pieces:
                await session.send_audio(piece)
            await recorder.wait_for(ReplyPlayed)
            await session.end_input()
            nursery.cancel_scope.cancel()
    return loopback, played


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
async def test_a_g711_session_reaches_openai_byte_identical_and_back(law: str) -> None:
    with trio.fail_after(30):
        call = a_call(law)
        loopback, played = await run_openai_session(law, chunked(call, [1, 77, 160, 161, 999]))
        check_openai_wire(loopback, law, call)
        # The reply: the service's bytes, framed in 20 ms, never decoded or resampled.
        assert b"".join(f.to_bytes() for f in played) == expected_reply(law)
        assert {(f.encoding, f.sample_rate) for f in played} == {(law, 8000)}
        assert all(f.samples == 160 for f in played)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    points=st.lists(st.integers(0, 11_200), max_size=20),
    law=st.sampled_from(["mulaw", "alaw"]),
    seed=st.integers(0, 1000),
)
async def test_g711_conservation_across_any_chunking(
    law: str, points: list[int], seed: int
) -> None:
    """Every byte of the call reaches the service exactly once, in order, whatever
    the chunks ``send_audio`` was given; the declared format is the real one."""
    with trio.fail_after(30):
        call = a_call(law, seed=seed)
        loopback, played = await run_openai_session(law, chunked(call, points))
        check_openai_wire(loopback, law, call)
        assert b"".join(f.to_bytes() for f in played) == expected_reply(law)


# ---------------------------------------------------------------- the front door


@asynccontextmanager
async def front_door(
    make: Callable[[Start], Provider], **kw: Any
) -> AsyncIterator[MediaStreamServer]:
    async with trio.open_nursery() as nursery:
        server: MediaStreamServer = await nursery.start(partial(serve_media_streams, make, **kw))
        yield server
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
async def test_a_phone_call_passes_through_to_openai_natively(law: str) -> None:
    """Through ``voxtrio serve``'s front door: the caller's media bytes arrive at the
    service as they were sent, declared as ``audio/pcmu``/``audio/pcma``; the reply
    goes back to the caller as the service's own bytes, in 20 ms media messages."""
    with trio.fail_after(30):
        script = ConnectionScript(reply_ms=REPLY_MS)
        call_audio = a_call(law)
        store = voxtrio.MemoryTranscriptStore()
        async with (
            open_openai_loopback(default_script=script) as loopback,
            front_door(lambda _s: openai(loopback), store=store) as server,
        ):
            async with open_telephony_call(server.url, call_sid=f"CA-{law}", encoding=law) as call:
                await call.send_audio(call_audio, realtime=False)
                await call.wait_for(lambda c: c.media_bytes >= len(expected_reply(law)))
                await call.hang_up()
            assert call.close_code == 1000
            check_openai_wire(loopback, law, call_audio)
        assert b"".join(call.media) == expected_reply(law)
        assert all(len(m) == 160 for m in call.media)
        (done,) = server.finished
        assert done.samples_in == len(call_audio)
        assert done.samples_out == len(expected_reply(law))


# ---------------------------------------------------------------- Gemini


def check_gemini_wire(server: GeminiLoopback) -> None:
    """Every audio message declared 16 kHz PCM (the loopback refuses anything else)
    and was valid for google-genai."""
    for conn in server.connections:
        for record in conn.service.records:
            assert record.problem is None, record
            oracle.client_message(json.dumps(record.message))
            audio = (record.message or {}).get("realtimeInput", {}).get("audio")
            if audio is not None:
                assert audio["mimeType"] == "audio/pcm;rate=16000"


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
async def test_a_g711_session_on_gemini_is_decoded_resampled_and_reencoded(law: str) -> None:
    """Gemini's 16 kHz input is exactly the one-shot conversion of the decoded call
    (2 samples per call sample: declared rate == real rate; nothing lost at the
    segment end); the 24 kHz reply comes back as 8 kHz G.711, one third the samples."""
    with trio.fail_after(30):
        call = a_call(law)
        reply = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(7200) / 24000))
        reply_pcm = reply.astype(np.int16).reshape(-1, 1)
        played: list[AudioFrame] = []
        # The test answers itself: the server's own turns are off.
        quiet = GeminiScript(turns=None)
        async with open_gemini_loopback(api_key=GEMINI_KEY, default_script=quiet) as server:
            fmt = AudioFormat(8000, encoding=law)  # type: ignore[arg-type]
            async with (
                trio.open_nursery() as nursery,
                voxtrio.open_session(
                    gemini(server), input_format=fmt, realtime_playback=False
                ) as session,  # fmt: skip
            ):
                assert session.input_format == AudioFormat(16000)  # decoded, resampled
                recorder = Recorder(session.subscribe(max_buffer=100_000))
                nursery.start_soon(recorder.run)
                nursery.start_soon(collect, session.output, played)
                for piece in chunked(call, [3, 500, 1601]):
                    await session.send_audio(piece)
                await session.end_input()  # the segment ends: the converter's tail goes
                conn = await server.wait_for_connection()
                want = convert_oneshot(
                    decode_codes(call, law), AudioFormat(8000), AudioFormat(16000)
                )
                await server.wait_until(lambda: conn.service.connection_audio.shape[0] >= len(want))
                await conn.send(conn.service.reply(reply_pcm, ["Fine."]))
                await recorder.wait_for(ReplyPlayed)
                nursery.cancel_scope.cancel()
            check_gemini_wire(server)
        got = conn.service.connection_audio
        np.testing.assert_array_equal(got, want)
        assert abs(len(got) - 2 * len(call)) <= 1
        assert {(f.encoding, f.sample_rate) for f in played} == {(law, 8000)}
        out = concat_frames(played)
        assert abs(out.shape[0] - len(reply_pcm) // 3) <= 1
        heard = decode_codes(out, law)[:, 0].astype(np.float64)
        peak_hz = np.argmax(np.abs(np.fft.rfft(heard))) * 8000 / len(heard)
        assert abs(peak_hz - 440) < 15


async def test_an_alaw_phone_call_on_gemini() -> None:
    """An A-law media stream through the front door to Gemini: decoded, resampled to
    16 kHz on the way in; the reply resampled to 8 kHz and A-law encoded on the way out."""
    with trio.fail_after(30):
        call_audio = a_call("alaw")
        reply_pcm = np.full((4800, 1), 3000, np.int16)
        quiet = GeminiScript(turns=None)  # the test answers itself
        async with (
            open_gemini_loopback(api_key=GEMINI_KEY, default_script=quiet) as server,
            front_door(lambda _s: gemini(server), realtime_playback=False) as door,
        ):
            async with open_telephony_call(door.url, call_sid="CA-g", encoding="alaw") as call:
                await call.send_audio(call_audio, realtime=False)
                conn = await server.wait_for_connection()
                # All but what the link and converter hold (under 100 ms) is there
                # while the call goes on.
                await server.wait_until(
                    lambda: conn.service.connection_audio.shape[0] >= 2 * len(call_audio) - 1600
                )
                await conn.send(conn.service.reply(reply_pcm, ["Fine."]))
                await call.wait_for(lambda c: c.media_bytes >= 1600 - 1)
                await call.hang_up()
            check_gemini_wire(server)
        got = conn.service.connection_audio[:, 0]
        want = convert_oneshot(
            decode_codes(call_audio, "alaw"), AudioFormat(8000), AudioFormat(16000)
        )
        np.testing.assert_array_equal(got, want[: len(got), 0])
        heard = call.reply_pcm()  # A-law decoded by the test client
        assert abs(len(heard) - 1600) <= 1
        settled = heard[200:-200]
        assert np.all(np.abs(settled.astype(np.int32) - 3000) < 200)
