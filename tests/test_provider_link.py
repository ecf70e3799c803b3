"""The provider link, end to end: ``voxtrio.open_session(voxtrio.OpenAIRealtime(...))``
over a real websocket to the loopback OpenAI Realtime server on 127.0.0.1.

What is OpenAI's here: the transcript folded into the instructions on reconnect at
a hypothesis-chosen cut in the middle of the loopback VAD's turns, an outage after
a stalled server, what the server said before it closed reaching the app under
backpressure, and TLS. The protocol-neutral link tests (exact audio across a forced
reconnect, the outage buffer, running out of retries, cancellation at every stage)
run for both providers in test_both_providers.py. See :mod:`tests.loopback_helpers`
for the checks every test gets on the way out.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import hypothesis
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio import (
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    ReconnectPolicy,
    ReplyDone,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
)
from voxtrio.actors import provider_link
from voxtrio.actors.provider_link import ConnectTarget
from voxtrio.codecs import AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec, ServerVad, auth_headers
from voxtrio.messages import FrameBatch, LinkInput
from voxtrio.testing import (
    ConnectionScript,
)

from .loopback_helpers import (
    FAST,
    KEY,
    LOOPBACK_MARKS,
    OPENAI,
    _sockets_closed,  # noqa: F401 - an autouse fixture
    completed_sent,
    drops,
    noise,
    openai_session,
    provider_for,
    push,
    serve,
    silence,
    tone,
    transcription_completed,
)

pytestmark = LOOPBACK_MARKS


# ------------------------------------------------------- reconnect and transcript


UTTERANCES = np.concatenate([np.concatenate([tone(0.2), silence(0.6)]) for _ in range(5)])


@settings(max_examples=25, deadline=None)
@example(after=12, how="close")
@example(after=12, how="drop")
@example(after=1, how="drop")
@given(after=st.integers(1, 20), how=st.sampled_from(["close", "drop"]))
def test_a_connection_lost_at_any_point_keeps_the_conversation(after: int, how: str) -> None:
    """The server drops the TCP connection (or closes it) after ``after`` client
    messages, in the middle of 4 s of speech with five utterances, right after a
    burst of transcripts. The session reconnects; the second ``session.update``
    carries every transcript completed on the first connection; the app sees the
    recoverable error, the reconnect, and every transcription the server sent, each
    exactly once, in order."""
    burst = tuple(
        (after, transcription_completed(f"item_burst_{i}", f"burst {i} before the cut"))
        for i in range(4)
    )
    if how == "drop":
        script = ConnectionScript(drop_after=after, send_after=burst)
    else:
        script = ConnectionScript(close_after=after, send_after=burst)
    vad = ServerVad(create_response=False)  # replies only when asked: the last is ours

    async def main() -> None:
        with trio.fail_after(30):
            async with (
                serve(scripts=(script,)) as server,
                openai_session(server, turn_detection=vad) as (session, recorder),
            ):
                # In one piece, so the link sends it as 20 appends of 10 frames
                # (200 ms): every cut point lies inside the audio, and from the
                # 5th message on, after the end of at least one utterance.
                await session.send_audio(UTTERANCES, OPENAI)
                await recorder.wait_for(SessionReconnected)
                # A server acts on nothing it reads after its close frame, so ask
                # for a reply on the new connection: once it is done, every
                # transcript the server sent has been delivered.
                await session.create_reply()
                await recorder.wait_for(ReplyDone)
            first, second = server.accepted
            before = completed_sent(server, first.index)
            hypothesis.event(f"VAD transcripts before the cut: {len(before) - 4}")
            if after >= 5:  # appends 1..4 carried 0.8 s; the first utterance ended at 0.7
                assert len(before) > 4
            assert [t for _, t in before[-4:]] == [f"burst {i} before the cut" for i in range(4)]
            (carried,) = second.instructions
            for _, text in before:
                assert json.dumps(text) in carried
            assert recorder.transcripts() == completed_sent(server)
            assert len(set(recorder.transcripts())) == len(recorder.transcripts())
            kinds = [type(e) for e in recorder.connection_events()]
            assert kinds == [SessionConnected, ErrorEvent, SessionReconnecting, SessionReconnected]
            lost = recorder.of(ErrorEvent)[0]
            assert (lost.code, lost.recoverable) == ("connection_lost", True)
            assert recorder.of(SessionReconnecting)[0].attempt == 1
            assert first.closed_by == ("dropped" if how == "drop" else "server")

    trio.run(main)


# ------------------------------------------------------------- outage buffer


async def test_an_outage_after_a_stall_drops_oldest_instead_of_blocking_the_app() -> None:
    """The server stops reading until everything between it and the app is full
    (the outbox included), then drops the connection and refuses to come back for a
    while. During that outage the app's audio must not be blocked: the link drops
    the oldest audio, reports it, and sends the newest 0.3 s once it is back."""
    policy = ReconnectPolicy(
        initial_backoff_s=0.01, max_backoff_s=0.03, max_attempts=10_000, outage_buffer_s=0.3
    )
    second = noise(1.0, 9)
    with trio.fail_after(30):
        async with (
            serve(
                scripts=(ConnectionScript(stall_after=2),),
                default_script=ConnectionScript(reject_status=503),
            ) as server,
            openai_session(server, reconnect=policy) as (session, recorder),
        ):
            chunk = noise(1.0, 8)
            async with trio.open_nursery() as pusher:

                async def push_forever() -> None:
                    while True:
                        await session.send_audio(chunk, OPENAI)

                pusher.start_soon(push_forever)
                # Everything blocks only once the app's pushes do: the socket
                # buffers, the outbox and the session's channels are full.
                await trio.testing.wait_all_tasks_blocked()
                pusher.cancel_scope.cancel()
            stalled = session.stats()
            assert stalled.edges["convert"].queued > 0  # the link stopped taking audio
            first = server.connections[0]
            await first.drop()
            await recorder.wait_for_error("connection_lost")
            with trio.fail_after(5):  # must not wait for the server to come back
                await push(session, second)
            await trio.testing.wait_all_tasks_blocked()
            server.default_script = ConnectionScript()  # the server is back
            await recorder.wait_for(SessionReconnected)
            back = server.accepted[1]
            await server.wait_until(lambda: back.audio_samples >= 7_200)
            stats = session.stats()
        # The newest 0.3 s, nothing older, went out once the server was back.
        assert np.array_equal(back.audio, second[-7_200:])
        dropped = sum(d.samples for d in drops(recorder))
        assert dropped >= len(second) - 7_200
        # What neither arrived nor was dropped was lost in the socket buffers when
        # the connection was dropped (never more than was sent).
        sent = stats.edges["convert"].samples
        assert first.audio_samples + back.audio_samples + dropped <= sent


# ------------------------------------------------------------- the link alone


async def test_what_the_server_sent_before_closing_is_delivered_under_backpressure() -> None:
    """The link's event channel is full (nobody reads it) when the server sends two
    transcripts and closes, while the link is still sending audio. The writer sees
    the close first; the transcripts must still reach the reader's consumer, in
    order, before the connection-lost error."""
    script = ConnectionScript(
        send_after=(
            (3, transcription_completed("item_t1", "first")),
            (3, transcription_completed("item_t2", "second")),
        ),
        close_after=3,
    )
    frames = [
        AudioFrame.from_pcm(chunk, OPENAI, pts=i * 480)
        for i, chunk in enumerate(np.split(noise(20.0, 5), 1000))
    ]
    with trio.fail_after(30):
        async with serve(scripts=(script,)) as server:
            input_tx, input_rx = trio.open_memory_channel[LinkInput](len(frames))
            events_tx, events_rx = trio.open_memory_channel[Event](0)
            for i in range(0, len(frames), 10):
                input_tx.send_nowait(FrameBatch(tuple(frames[i : i + 10])))

            async def instructions() -> str:
                await trio.lowlevel.checkpoint()
                return "Base."

            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(
                        provider_link.run,
                        input_rx,
                        events_tx,
                        name="openai",
                        codec_factory=OpenAIRealtimeCodec,
                        target=ConnectTarget(
                            server.url + "?model=gpt-realtime",
                            headers=auth_headers(KEY),
                            secrets=(KEY,),
                        ),
                        instructions=instructions,
                        policy=attrs.evolve(FAST, outage_buffer_s=60.0),  # keeps all 20 s
                    )
                )
                got: list[Event] = [await events_rx.receive()]  # SessionConnected
                first = await server.wait_for_connection(1)
                await first.wait_closed()
                # Let the link run into the close with its event channel full.
                await trio.testing.wait_all_tasks_blocked()
                async for event in events_rx:
                    got.append(event)
                    if isinstance(event, SessionReconnected):
                        break
                nursery.cancel_scope.cancel()
        assert first.close_code == 1011
        assert len(first.audio) < 20 * 24_000  # it closed while audio was still going out
        kinds = [type(e).__name__ for e in got]
        assert kinds[0] == "SessionConnected"
        assert got[1:3] == [
            InputTranscriptionCompleted("item_t1", "first"),
            InputTranscriptionCompleted("item_t2", "second"),
        ], kinds
        assert kinds[3:] == ["ErrorEvent", "SessionReconnecting", "SessionReconnected"]


# ----------------------------------------------------- TLS and early hang-ups


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no default trust store accepts."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@asynccontextmanager
async def tls_server(cert: Path, key: Path) -> AsyncIterator[tuple[str, list[int]]]:
    """A TLS server on 127.0.0.1 with ``cert`` that hangs up right after the TLS
    handshake (or its failure). Yields its wss:// URL and a list with the number of
    TCP connections it accepted."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    accepted = [0]

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        accepted[0] += 1
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.do_handshake()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, handler, 0, context, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        yield f"wss://127.0.0.1:{port}/v1/realtime", accepted
        nursery.cancel_scope.cancel()


async def run_until_it_ends(provider: voxtrio.OpenAIRealtime) -> list[Event]:
    events: list[Event] = []
    async with voxtrio.open_session(provider) as session:
        async for event in session.subscribe():
            events.append(event)
    return events


async def test_a_certificate_that_does_not_verify_is_one_final_error(
    self_signed: tuple[Path, Path],
) -> None:
    """TLS is verified by default: a self-signed certificate ends the session with
    one clear, non-recoverable error, after one attempt (retrying cannot help)."""
    patient = ReconnectPolicy(max_attempts=5, connect_timeout_s=600.0, initial_backoff_s=0.01)
    with trio.fail_after(30):  # far below the connect timeout: nothing waits it out
        async with tls_server(*self_signed) as (url, accepted):
            events = await run_until_it_ends(provider_for(url, reconnect=patient))
    assert accepted == [1]
    [error] = events
    assert isinstance(error, ErrorEvent)
    assert (error.code, error.recoverable, error.source) == (
        "tls_verification_failed",
        False,
        "link",
    )
    assert url in error.message
    assert "does not verify" in error.message


async def test_a_trusted_certificate_passes_and_an_early_hang_up_is_retried(
    self_signed: tuple[Path, Path],
) -> None:
    """With the certificate trusted (ssl_context), TLS succeeds; the server then hangs
    up before the websocket handshake: each attempt fails at once (not after the
    connect timeout) and is retried until max_attempts."""
    cert, _ = self_signed
    trusting = ssl.create_default_context(cafile=str(cert))
    patient = ReconnectPolicy(max_attempts=3, connect_timeout_s=600.0, initial_backoff_s=0.01)
    with trio.fail_after(30):
        async with tls_server(*self_signed) as (url, accepted):
            provider = provider_for(url, reconnect=patient, ssl_context=trusting)
            events = await run_until_it_ends(provider)
    assert accepted == [3]
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [(e.code, e.recoverable) for e in errors] == [("connection_failed", False)]
    assert "websocket handshake" in errors[0].message
    assert [e.attempt for e in events if isinstance(e, SessionReconnecting)] == [1, 2]
