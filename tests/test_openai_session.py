"""``voxtrio.OpenAIRealtime`` against the loopback OpenAI Realtime server on 127.0.0.1:
the declared input rate is the real one, the API key (rejected, missing, from the
environment, echoed by the server) never leaks, and junk from the server is reported
while the session goes on. See :mod:`tests.loopback_helpers` for the checks every test
gets on the way out.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import trio
import trio.testing

import voxtrio
from voxtrio import (
    AudioFormat,
    ErrorEvent,
    MissingApiKeyError,
    ReplyDone,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    SpeechStarted,
    SpeechStopped,
)
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.codecs.openai_realtime import ServerVad
from voxtrio.testing import (
    ConnectionScript,
    Outgoing,
    open_openai_loopback,
)

from .loopback_helpers import (
    KEY,
    LOOPBACK_MARKS,
    OPENAI,
    WAV_FMT,
    WAV_PATH,
    WAV_PCM,
    _sockets_closed,  # noqa: F401 - an autouse fixture
    completed_sent,
    noise,
    openai_session,
    provider_for,
    push,
    serve,
    silence,
    tone,
    transcription_completed,
    wait_for_audio,
)

pytestmark = LOOPBACK_MARKS


# -------------------------------------------------------------------- declared rate


def _at(fmt: AudioFormat) -> np.ndarray:
    """0.5 s silence, 0.5 s tone, 1.0 s silence at ``fmt``."""
    return np.concatenate([silence(0.5, fmt), tone(0.5, fmt), silence(1.0, fmt)])


@pytest.mark.parametrize(
    "fmt", [AudioFormat(16_000), AudioFormat(44_100), AudioFormat(48_000, 2)], ids=str
)
async def test_declared_rate_is_the_real_rate(fmt: AudioFormat) -> None:
    """The rate declared in ``session.update`` is the rate of the audio sent: two
    seconds of input arrive as two seconds at the declared rate, and the server's VAD,
    timing the audio by the declared rate, puts the tone where it is in the input."""
    with trio.fail_after(30):
        pcm = _at(fmt)
        vad = ServerVad(prefix_padding_ms=0, silence_duration_ms=200, create_response=False)
        async with (
            serve() as server,
            openai_session(server, capture=voxtrio.ArrayCapture(pcm, fmt), turn_detection=vad) as (
                _,
                recorder,
            ),
        ):
            want = convert_oneshot(pcm, fmt, OPENAI)
            await wait_for_audio(server, len(want))
            stopped = await recorder.wait_for(SpeechStopped)
            started = recorder.of(SpeechStarted)[0]
        (update,) = server.all_events("session.update")
        declared = update["session"]["audio"]["input"]["format"]["rate"]
        assert declared == 24_000
        # After the input, the end of input may add trailing silence (server VAD).
        got = server.all_audio()
        assert np.array_equal(got[: len(want)], want)
        assert not got[len(want) :].any()
        seconds = pcm.shape[0] / fmt.sample_rate
        assert abs(len(want) - seconds * declared) <= 1
        # The VAD hears the tone from 0.5 s to 1.0 s (+200 ms of silence to stop).
        assert started.audio_start_ms is not None
        assert stopped.audio_end_ms is not None
        assert abs(started.audio_start_ms - 500) <= 20
        assert abs(stopped.audio_end_ms - 1200) <= 20
        # ... and voxtrio maps those times back to the input position it sent.
        assert started.pts is not None
        assert abs(started.pts - 12_000) <= 480


# -------------------------------------------------------------------------- API key


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_handshake_is_one_clear_error_and_the_session_ends(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    """401 (the server wants another key) or 403: one non-recoverable ErrorEvent with
    a clear message and no key in it, one connection attempt, and the session ends by
    itself: the app's subscription ends, no retry loop, no hang."""
    caplog.set_level(logging.DEBUG)
    with trio.fail_after(30):
        if status == 401:
            server_cm = serve(api_key="sk-test-the-other-key")
        else:
            server_cm = serve(scripts=(ConnectionScript(reject_status=403),))
        async with server_cm as server:
            capture = voxtrio.WavCapture(WAV_PATH, realtime=True)
            async with openai_session(server, capture=capture) as (session, recorder):
                await recorder.ended.wait()  # the session ended by itself
                assert session.closed
            assert len(server.connections) == 1
        (conn,) = server.connections
        assert conn.rejected_status == status
        assert conn.authorization == f"Bearer {KEY}"  # the key was really sent
        (error,) = recorder.events
        assert isinstance(error, ErrorEvent)
        assert (error.code, error.recoverable, error.source) == (
            "handshake_rejected",
            False,
            "link",
        )
        assert f"HTTP {status}" in error.message
        assert "API key" in error.message
        assert KEY not in error.message
        assert KEY not in caplog.text
        assert "voxtrio.link.transport" in {r.name for r in caplog.records}  # debug logs were on


async def test_missing_api_key_raises_when_the_session_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with trio.fail_after(30):
        async with open_openai_loopback(api_key=KEY) as server:
            provider = provider_for(server.url, api_key=None)  # made fine without a key
            with pytest.raises(MissingApiKeyError, match="OPENAI_API_KEY"):
                async with voxtrio.open_session(provider):
                    raise AssertionError("the session must not open")  # pragma: no cover
            monkeypatch.setenv("OPENAI_API_KEY", "")
            with pytest.raises(MissingApiKeyError):
                async with voxtrio.open_session(provider):
                    raise AssertionError("the session must not open")  # pragma: no cover
            assert server.connections == []  # nothing was attempted


async def test_the_key_from_the_environment_is_used_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with trio.fail_after(30):
        async with (
            serve() as server,
            openai_session(server, api_key=None) as (session, recorder),
        ):
            await recorder.wait_for(SessionConnected)
            assert KEY not in repr(session.provider)
            assert KEY not in repr(session)
        assert server.connections[0].authorization == f"Bearer {KEY}"
        assert KEY not in caplog.text
        provider = provider_for(server.url)
        assert KEY not in repr(provider)
        assert KEY not in repr(provider.target())


async def test_a_provider_error_that_echoes_the_key_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real service echoes (part of) a bad key in its error messages; voxtrio
    never passes the key on."""
    caplog.set_level(logging.DEBUG)
    echo = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "message": f"Incorrect API key provided: {KEY}.",
            "param": None,
            "event_id": None,
        },
    }
    with trio.fail_after(30):
        async with (
            serve(scripts=(ConnectionScript(send_after=((1, echo),)),)) as server,
            openai_session(server) as (session, recorder),
        ):
            await push(session, noise(0.1, 3))
            error = await recorder.wait_for(ErrorEvent)
        assert error.code == "invalid_api_key"
        assert error.source == "provider"
        assert KEY not in error.message
        assert "Incorrect API key provided" in error.message
        assert KEY not in caplog.text


# ------------------------------------------------------------------- hostile server


async def test_the_session_survives_junk_from_the_server() -> None:
    """Malformed JSON, a binary frame, an unknown event type, an ``error`` event and a
    known event with missing fields: each reported as it should be (protocol errors,
    the provider's own code, nothing for the unknown type), on the same connection,
    while the audio keeps flowing and later transcripts still arrive."""
    junk: tuple[tuple[int, Outgoing], ...] = (
        (2, '{"type": "session.updated", '),
        (2, b"\x00\x01binary"),
        (2, {"type": "x-future.event", "detail": 1}),
        (
            2,
            {
                "type": "error",
                "error": {
                    "type": "rate_limit_error",
                    "code": "rate_limit_exceeded",
                    "message": "Slow down.",
                    "param": None,
                    "event_id": None,
                },
            },
        ),
        (2, {"type": "conversation.item.input_audio_transcription.completed", "item_id": "x"}),
        (3, transcription_completed("item_later", "after the junk")),
    )
    vad = ServerVad(create_response=False)  # replies only when asked: the last is ours
    with trio.fail_after(30):
        want = convert_oneshot(WAV_PCM, WAV_FMT, OPENAI)
        async with (
            serve(scripts=(ConnectionScript(send_after=junk),)) as server,
            openai_session(server, turn_detection=vad) as (session, recorder),
        ):
            await push(session, WAV_PCM, WAV_FMT)
            await session.commit()  # flushes the converter's tail, ends the turn
            await session.create_reply()
            # Asked for after everything else: once its reply is done, all the
            # server said before it has been delivered.
            await recorder.wait_for(ReplyDone)
        assert len(server.connections) == 1  # junk is no reason to reconnect
        assert np.array_equal(server.all_audio(), want)
        errors = recorder.of(ErrorEvent)
        assert [(e.code, e.source, e.recoverable) for e in errors] == [
            ("protocol_error", "link", True),
            ("protocol_error", "link", True),
            ("rate_limit_exceeded", "provider", True),
            ("protocol_error", "link", True),
        ]
        assert "malformed JSON" in errors[0].message
        assert "binary" in errors[1].message
        assert errors[2].message == "Slow down."
        assert "transcript" in errors[3].message
        assert not any("x-future" in e.message for e in errors)
        # The scripted transcript after the junk, and the turns of the server's VAD
        # (and of the commit), all arrived, each once.
        assert recorder.transcripts()[0] == ("item_later", "after the junk")
        assert len(recorder.transcripts()) >= 2
        assert recorder.transcripts() == completed_sent(server)
        assert recorder.of(SessionReconnecting) == []


async def test_the_link_logs_its_connections_without_the_key_or_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Connect, loss and reconnect are logged on ``voxtrio.link`` with the URL
    without its query string; nothing the link logs holds the key."""
    caplog.set_level(logging.DEBUG, logger="voxtrio")
    with trio.fail_after(30):
        async with (
            serve(scripts=(ConnectionScript(close_after=2),)) as server,
            openai_session(server) as (session, recorder),
        ):
            await push(session, silence(0.2))
            await recorder.wait_for(SessionReconnected)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "voxtrio.link"]
    url = server.url  # no query: the model travels in ?model=...
    assert ("INFO", f"openai: connected to {url}") in lines
    assert ("INFO", f"openai: reconnected to {url}") in lines
    retries = [message for level, message in lines if level == "WARNING"]
    assert retries
    assert retries[0].startswith("openai: retry 1 in ")
    assert "1011" in retries[0]
    assert all("model=" not in message and KEY not in message for _, message in lines)
