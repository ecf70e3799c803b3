"""Shared helpers for the tests that run ``voxtrio.OpenAIRealtime`` sessions against
the loopback OpenAI Realtime server on 127.0.0.1 (port 0).

:func:`serve` runs a loopback server and, on the way out, checks that every client
event voxtrio sent validated against the ``openai`` package's models, that every server
event (except junk a test scripted on purpose) validates against its server-event
models, and that the server never stumbled. :func:`openai_session` runs a session
against it with a :class:`Recorder` subscribed from the start, and checks on the way
out that the app's subscriber missed nothing and that the API key is in no event.

Real sockets, so no ``autojump_clock``: backoffs are made short instead, and tests
wait for conditions (server state, recorded events), never for fixed times.
"""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import numpy as np
import pytest
import trio
import trio.testing

import voxtrio
from voxtrio import (
    AudioDropped,
    AudioFormat,
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    OpenAIRealtime,
    ReconnectPolicy,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    SubscriberLagged,
)
from voxtrio.codecs.wav import read_wav
from voxtrio.runtime import Session
from voxtrio.testing import (
    ConnectionScript,
    OpenAILoopback,
    Outgoing,
    open_openai_loopback,
    openai_oracle_available,
    transcription_completed_event,
    validate_server_event,
)

#: A key distinctive enough that finding it anywhere is a leak. The loopback server
#: requires it in the handshake, so it really is in play in every test.
KEY = "sk-test-7Hq2ZkP9vXw4LmN8"
OPENAI = AudioFormat(24_000)
FAST = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8)
WAV_PATH = str(resources.files("voxtrio.data") / "hello_48k_stereo.wav")
WAV_PCM, WAV_FMT = read_wav(WAV_PATH)
CONNECTION_EVENTS = (SessionConnected, SessionReconnecting, SessionReconnected, ErrorEvent)

T = TypeVar("T")


#: The marks of every module that runs sessions against the loopback server.
LOOPBACK_MARKS = [
    pytest.mark.skipif(
        not openai_oracle_available(), reason="the openai package is the test oracle"
    ),
    # A socket the link forgot to close is found when it is collected.
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _sockets_closed() -> Iterator[None]:
    """A socket the link forgot to close fails the test that opened it (autouse in
    every module that imports it)."""
    yield from own_garbage_only()


def own_garbage_only() -> Iterator[None]:
    """For an autouse fixture: before the test, collect what earlier tests left behind
    (quietly: not this test's doing); after it, collect again, so that an unclosed
    socket of this test raises its ``ResourceWarning`` in this test's teardown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    yield
    gc.collect()


def _scripted(server: OpenAILoopback) -> list[Outgoing]:
    scripts = [*server.scripts, server.default_script]
    return [out for script in scripts for _, out in script.send_after]


def check_server(server: OpenAILoopback) -> None:
    """Every client event was valid (openai's models, unknown fields rejected); every
    server event validates against openai's server-event models unless the test
    scripted it as junk; the server never failed to process an event."""
    assert server.connections, "the test never reached the server"
    for conn in server.connections:
        bad = [(r.index, r.type, r.problem) for r in conn.events if not r.valid]
        assert bad == [], f"connection {conn.index} got invalid client events: {bad}"
    scripted = _scripted(server)
    for conn in server.connections:
        for message in conn.sent:
            try:
                event: Any = json.loads(message)
            except ValueError:
                event = None
            problem = validate_server_event(event) if event is not None else "not JSON"
            if problem is None:
                continue
            # Only junk a test asked for may fail: compare without the filled-in id.
            if isinstance(event, dict):
                event = {k: v for k, v in event.items() if k != "event_id"}
            assert message in scripted or event in scripted, (message, problem)
    assert server.internal_errors == []


@asynccontextmanager
async def serve(
    *,
    scripts: tuple[ConnectionScript, ...] = (),
    default_script: ConnectionScript | None = None,
    api_key: str | None = KEY,
    session_lifetime_s: float | None = None,
) -> AsyncIterator[OpenAILoopback]:
    """A loopback server that requires ``KEY``, checked by :func:`check_server` on
    the way out."""
    async with open_openai_loopback(
        scripts=scripts,
        default_script=default_script,
        api_key=api_key,
        session_lifetime_s=session_lifetime_s,
    ) as server:
        yield server
    check_server(server)


class Recorder:
    """Reads one subscription (or any channel of events) to its end, keeping every
    event."""

    def __init__(self, sub: trio.abc.ReceiveChannel[Event]) -> None:
        self.sub = sub
        self.events: list[Event] = []
        self.ended = trio.Event()
        self._lot = trio.lowlevel.ParkingLot()

    async def run(self) -> None:
        async for event in self.sub:
            self.events.append(event)
            self._lot.unpark_all()
        self.ended.set()
        self._lot.unpark_all()

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    def connection_events(self) -> list[Event]:
        return [e for e in self.events if isinstance(e, CONNECTION_EVENTS)]

    def transcripts(self) -> list[tuple[str | None, str]]:
        return [(e.item_id, e.transcript) for e in self.of(InputTranscriptionCompleted)]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self.ended.is_set():
                raise AssertionError(f"the session ended first; events: {self.events}")
            await self._lot.park()

    async def wait_for(self, kind: type[T], count: int = 1) -> T:
        await self.wait_until(lambda: len(self.of(kind)) >= count)
        return self.of(kind)[count - 1]

    async def wait_for_error(self, code: str) -> ErrorEvent:
        await self.wait_until(lambda: any(e.code == code for e in self.of(ErrorEvent)))
        return next(e for e in self.of(ErrorEvent) if e.code == code)


async def drain(channel: trio.abc.ReceiveChannel[Any]) -> None:
    async for _ in channel:
        pass


def provider_for(
    url: str,
    *,
    reconnect: ReconnectPolicy = FAST,
    api_key: str | None = KEY,
    **options: Any,
) -> OpenAIRealtime:
    return voxtrio.OpenAIRealtime(
        model="gpt-realtime",
        api_key=api_key,
        base_url=url,
        reconnect=reconnect,
        seed=7,
        **options,
    )


@asynccontextmanager
async def recorded_session(
    provider: voxtrio.Provider, key: str, **session_options: Any
) -> AsyncIterator[tuple[Session, Recorder]]:
    """``open_session(provider, **session_options)`` with a recorder subscribed
    before the first checkpoint (so it sees every event) and the output drained.
    On the way out: no event was missed and none mentions ``key``."""
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(provider, **session_options) as session,
    ):
        recorder = Recorder(session.subscribe(max_buffer=1_000_000))
        nursery.start_soon(recorder.run)
        nursery.start_soon(drain, session.output)
        yield session, recorder
    assert recorder.ended.is_set()
    assert recorder.of(SubscriberLagged) == []
    for event in recorder.events:
        assert key not in repr(event)
        assert key not in str(event)


@asynccontextmanager
async def openai_session(
    server: OpenAILoopback,
    *,
    capture: voxtrio.WavCapture | voxtrio.ArrayCapture | None = None,
    instructions: str = "You are a test assistant.",
    reconnect: ReconnectPolicy = FAST,
    live_input: bool | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Session, Recorder]]:
    """A session with ``OpenAIRealtime`` against ``server``: :func:`recorded_session`."""
    provider = provider_for(server.url, reconnect=reconnect, **options)
    async with recorded_session(
        provider, KEY, instructions=instructions, capture=capture, live_input=live_input
    ) as pair:
        yield pair


def tone(seconds: float, fmt: AudioFormat = OPENAI, *, amplitude: int = 8000) -> np.ndarray:
    n = round(seconds * fmt.sample_rate)
    t = np.arange(n) / fmt.sample_rate
    mono = np.round(amplitude * np.sin(2 * np.pi * 300.0 * t)).astype(np.int16)
    return np.repeat(mono.reshape(-1, 1), fmt.channels, axis=1)


def silence(seconds: float, fmt: AudioFormat = OPENAI) -> np.ndarray:
    return np.zeros((round(seconds * fmt.sample_rate), fmt.channels), np.int16)


def noise(seconds: float, seed: int) -> np.ndarray:
    """Quiet 24 kHz mono noise (below the loopback VAD's threshold)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-300, 300, (round(seconds * 24_000), 1)).astype(np.int16)


async def push(session: Session, pcm: np.ndarray, fmt: AudioFormat = OPENAI) -> None:
    """Send ``pcm`` in 20 ms chunks."""
    step = fmt.sample_rate // 50
    for i in range(0, pcm.shape[0], step):
        await session.send_audio(pcm[i : i + step], fmt)


#: A valid transcription-completed server event, for ``send_after`` scripts.
transcription_completed = transcription_completed_event


def completed_sent(server: OpenAILoopback, index: int | None = None) -> list[tuple[str, str]]:
    """``(item_id, transcript)`` of every completed input transcription the server
    sent (on connection ``index``, or on all), in order."""
    conns = server.connections if index is None else [server.connections[index]]
    out = []
    for conn in conns:
        for message in conn.sent:
            try:
                event = json.loads(message)
            except ValueError:
                continue
            if (
                isinstance(event, dict)
                and event.get("type") == "conversation.item.input_audio_transcription.completed"
                and isinstance(event.get("transcript"), str)
            ):
                out.append((event["item_id"], event["transcript"]))
    return out


def received(server: OpenAILoopback) -> int:
    return sum(c.audio_samples for c in server.connections)


async def wait_for_audio(server: OpenAILoopback, samples: int) -> None:
    await server.wait_until(lambda: received(server) >= samples)


async def wait_all_closed(server: OpenAILoopback) -> None:
    await server.wait_until(lambda: all(c.closed.is_set() for c in server.connections))


def drops(recorder: Recorder) -> list[AudioDropped]:
    found = recorder.of(AudioDropped)
    assert all(d.edge == "link_buffer" for d in found), found
    return found
