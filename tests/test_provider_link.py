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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import hypothesis
import numpy as np
import pytest
import trio
import trio.testing
import wsproto
import wsproto.events
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


# ----------------------------------------------------- giving up loses nothing silently


@asynccontextmanager
async def gated_refusals(status: int, gate: trio.Event) -> AsyncIterator[tuple[str, list[int]]]:
    """A websocket server on 127.0.0.1 that refuses every handshake with ``status``,
    each only once ``gate`` is set (so a test decides when the link runs out).
    Yields its URL and a list with the number of handshakes it refused."""
    refused = [0]

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
            while not any(isinstance(e, wsproto.events.Request) for e in ws.events()):
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
            await gate.wait()
            await stream.send_all(ws.send(wsproto.events.RejectConnection(status_code=status)))
            refused[0] += 1

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", refused
        nursery.cancel_scope.cancel()


async def start_unconnected_link(
    nursery: trio.Nursery,
    url: str,
    input_rx: trio.MemoryReceiveChannel[LinkInput],
    events_tx: trio.MemorySendChannel[Event],
    policy: ReconnectPolicy,
    *,
    live_input: bool = True,
) -> None:
    """Start the OpenAI link alone toward :func:`gated_refusals`' ``url``, where no
    connection ever comes up (so nothing may ask for instructions)."""

    async def instructions() -> str:
        raise AssertionError("no connection is ever up")

    await nursery.start(
        partial(
            provider_link.run,
            input_rx,
            events_tx,
            name="openai",
            codec_factory=OpenAIRealtimeCodec,
            target=ConnectTarget(url, headers=auth_headers(KEY), secrets=(KEY,)),
            instructions=instructions,
            policy=policy,
            live_input=live_input,
        )
    )


async def link_until_it_gives_up(
    inputs: Sequence[LinkInput],
    status: int,
    policy: ReconnectPolicy,
    *,
    live_input: bool,
    events_buffer: int = 100,
) -> list[Event]:
    """Run the link alone against :func:`gated_refusals`: ``inputs`` are queued
    before it starts; the server refuses only once everything stopped moving (the
    link took what it could), and the events are read only once everything stopped
    moving again after that. Returns every event, up to the link's end."""
    gate = trio.Event()
    async with gated_refusals(status, gate) as (url, refused):
        input_tx, input_rx = trio.open_memory_channel[LinkInput](len(inputs))
        events_tx, events_rx = trio.open_memory_channel[Event](events_buffer)
        for msg in inputs:
            input_tx.send_nowait(msg)
        async with trio.open_nursery() as nursery:
            await start_unconnected_link(
                nursery, url, input_rx, events_tx, policy, live_input=live_input
            )
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
            # A refusal for good ends the link before anything else moves.
            await trio.testing.wait_all_tasks_blocked()
            got = [event async for event in events_rx]
        assert refused[0] == (policy.max_attempts if status == 503 else 1)
    return got


def batches(seconds: float, per_batch: int = 10) -> list[FrameBatch]:
    """``seconds`` of noise in 20 ms frames, ``per_batch`` frames a batch."""
    frames = [
        AudioFrame.from_pcm(chunk, OPENAI, pts=i * 480)
        for i, chunk in enumerate(np.split(noise(seconds, 3), round(seconds * 50)))
    ]
    return [FrameBatch(tuple(frames[i : i + per_batch])) for i in range(0, len(frames), per_batch)]


@pytest.mark.parametrize("live", [True, False])
async def test_out_of_retries_the_audio_never_sent_is_reported_before_the_final_error(
    live: bool,
) -> None:
    """The link never connects (503 until it runs out of retries) with 1 s of audio
    (five batches of ten 20 ms frames) and an end of input given, and a 0.3 s
    outage buffer.

    Live audio: the outage buffer drops the oldest 35 frames as they come (a report
    per batch); the newest 15 wait in the outbox until the link gives up, and are
    reported before the final error. A file (not live): the outbox takes two
    batches (0.4 s: then it is full), the pump holds the third, two wait in the
    input channel; all 50 frames are reported before the final error."""
    policy = ReconnectPolicy(
        initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=3, outage_buffer_s=0.3
    )
    with trio.fail_after(30):
        got = await link_until_it_gives_up(
            [*batches(1.0), voxtrio.messages.EndOfInput()], 503, policy, live_input=live
        )
    final = got[-1]
    assert isinstance(final, ErrorEvent)
    assert (final.code, final.recoverable) == ("connection_failed", False)
    assert "after 3 failed attempts" in final.message
    reported = [e for e in got if isinstance(e, voxtrio.AudioDropped)]
    assert all(d.edge == "link_buffer" for d in reported)
    assert got[-2] is reported[-1]  # right before the final error
    assert [type(e) for e in got[-4:-2]] == [SessionReconnecting] * 2
    assert reported[-1].total_frames == 50  # dropped by policy + never sent == all
    assert sum(d.frames for d in reported) == 50
    assert sum(d.samples for d in reported) == 50 * 480
    if live:
        assert [d.frames for d in reported] == [5, 10, 10, 10, 15]  # by policy, then the end
    else:
        assert len(reported) == 1  # nothing dropped by policy: a file waits


async def test_refused_for_good_while_a_drop_report_waits_to_go_out() -> None:
    """Nobody reads the link's events when the outage buffer drops live audio, so
    the pump's first report (5 frames) waits to go out and the pump takes no more;
    then the key is refused (401). The report cut short by the link's end is not
    lost: one AudioDropped counts all 50 frames (the 5 dropped by the buffer, the
    15 in the outbox, the 30 still in the input channel), then the final error."""
    policy = ReconnectPolicy(initial_backoff_s=0.01, max_attempts=3, outage_buffer_s=0.3)
    with trio.fail_after(30):
        got = await link_until_it_gives_up(
            batches(1.0), 401, policy, live_input=True, events_buffer=0
        )
    assert [type(e).__name__ for e in got] == ["AudioDropped", "ErrorEvent"]
    dropped, final = got
    assert isinstance(dropped, voxtrio.AudioDropped)
    assert isinstance(final, ErrorEvent)
    assert (dropped.frames, dropped.samples, dropped.total_frames) == (50, 50 * 480, 50)
    assert (final.code, final.recoverable) == ("handshake_rejected", False)
    assert KEY not in final.message


async def test_a_deliberate_close_reports_no_drop() -> None:
    """The app closes (the link is cancelled) while its audio waits for a
    connection: not a loss to report -- no AudioDropped, no final error."""
    gate = trio.Event()  # never set: every handshake waits
    with trio.fail_after(30):
        async with gated_refusals(503, gate) as (url, _):
            input_tx, input_rx = trio.open_memory_channel[LinkInput](10)
            events_tx, events_rx = trio.open_memory_channel[Event](100)
            for batch in batches(0.4):
                input_tx.send_nowait(batch)
            async with trio.open_nursery() as nursery:
                await start_unconnected_link(nursery, url, input_rx, events_tx, FAST)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()  # the session closing
            got = [event async for event in events_rx]
    assert got == []
