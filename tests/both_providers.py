"""One harness over both loopback servers, so a session-level test that is not about
one protocol runs for OpenAI Realtime and for Gemini Live alike.

A :class:`Backend` names a provider and opens its loopback server
(:func:`voxtrio.testing.open_openai_loopback`, :func:`~voxtrio.testing.gemini.open_gemini_loopback`)
as a :class:`Loopback`: the same few verbs on either wire -- the plan of each
connection (:class:`Plan`: refuse, close or drop after N client messages), what a
connection received (audio, the instructions it was configured with), and what
the server says (a user turn's transcript, a reply, a tool call). Both servers
are checked on the way out with their own oracles (the ``openai`` and
``google-genai`` models).

The servers are made to behave alike: the OpenAI loopback's VAD is off (Gemini's
has none). Gemini hands out resumption handles as the service does; a test about
re-seeding the transcript turns them off (``Plan(resumption=False)``), so a
reconnect starts a fresh session seeded with the transcript on both.

Real sockets on 127.0.0.1, port 0; tests wait for conditions, never for times.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import numpy as np

import voxtrio
from voxtrio import AudioFormat, ReconnectPolicy
from voxtrio.runtime import Session
from voxtrio.runtime.websocket_provider import WebsocketProvider
from voxtrio.testing import ConnectionScript, OpenAILoopback, open_openai_loopback
from voxtrio.testing.gemini import GeminiLoopback, GeminiScript, open_gemini_loopback
from voxtrio.testing.gemini import oracle as gemini_oracle
from voxtrio.testing.gemini.server import GeminiConnection
from voxtrio.testing.openai import LoopbackConnection
from voxtrio.testing.wsserver import WsConnection

from . import loopback_helpers
from .loopback_helpers import Recorder, recorded_session

PROVIDERS = ("openai", "gemini")
FAST = ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05, max_attempts=8)
BASE = "You are a test assistant."


@attrs.frozen
class Plan:
    """How the server treats one connection (the same on both wires).

    Attributes:
        reject_status: refuse the handshake with this HTTP status.
        close_after: send a close frame (``close_code``) after this many client
            messages (the configuration counts: it is message 1).
        close_code: the close code for ``close_after``.
        drop_after: drop the TCP stream after this many client messages.
        resumption: (Gemini) hand out a resumption handle, with the consumed
            index, after every client message, as the service does; the link then
            resumes after a close. Off: no handle, so a reconnect starts a fresh
            session seeded with the transcript, as on OpenAI -- and the link keeps
            what it wrote unconfirmed, so it pushes back after
            ``outage_buffer_s`` of audio.
    """

    reject_status: int | None = None
    close_after: int | None = None
    close_code: int = 1011
    drop_after: int | None = None
    resumption: bool = True


class Loopback:
    """A running loopback server of either provider, seen through the same verbs."""

    name: str
    key: str
    fmt: AudioFormat
    server: OpenAILoopback | GeminiLoopback

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def connections(self) -> Sequence[WsConnection]:
        return self.server.connections

    @property
    def accepted(self) -> Sequence[WsConnection]:
        return self.server.accepted

    @property
    def current(self) -> WsConnection:
        accepted = self.server.accepted
        assert accepted, "no connection accepted yet"
        return accepted[-1]

    def set_default(self, plan: Plan) -> None:
        """The plan of every connection from now on (beyond the listed ones)."""
        raise NotImplementedError

    def provider(
        self, *, reconnect: ReconnectPolicy = FAST, api_key: str | None = None
    ) -> WebsocketProvider:
        """A provider for this server (with its key unless ``api_key``)."""
        return Backend(self.name).provider(self.url, reconnect=reconnect, api_key=api_key)

    def audio(self, conn: WsConnection) -> np.ndarray:
        """The input audio ``conn`` received, int16 ``(samples, 1)``."""
        raise NotImplementedError

    def all_audio(self) -> np.ndarray:
        """All input audio received, across connections, in order."""
        return np.concatenate([np.zeros((0, 1), np.int16), *map(self.audio, self.connections)])

    def received(self) -> int:
        return sum(self.audio(c).shape[0] for c in self.connections)

    async def wait_for_audio(self, samples: int) -> None:
        await self.server.wait_until(lambda: self.received() >= samples)

    async def wait_all_closed(self) -> None:
        await self.server.wait_until(lambda: all(c.closed.is_set() for c in self.connections))

    def instructions(self, conn: WsConnection) -> str | None:
        """The instructions ``conn`` was configured with, once it was."""
        raise NotImplementedError

    def messages(self, conn: WsConnection) -> int:
        """How many client messages ``conn`` received."""
        raise NotImplementedError

    async def configured(self, n: int) -> str:
        """The instructions of the ``n``-th accepted connection (1-based), once the
        server has read its configuration."""
        conn = await self.server.wait_for_connection(n)
        await self.server.wait_until(
            lambda: self.instructions(conn) is not None or conn.closed.is_set()
        )
        text = self.instructions(conn)
        assert text is not None, f"connection {conn.index} closed before it was configured"
        return text

    async def user_turn(self, text: str) -> None:
        """The server transcribes a user turn (the turn ends, so it completes)."""
        raise NotImplementedError

    async def reply(self, text: str) -> None:
        """The server sends a whole reply with ``text`` as its transcript."""
        raise NotImplementedError

    async def tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        """The model calls a tool."""
        raise NotImplementedError

    async def wait_for_tool_result(self, call_id: str) -> str:
        """The output the client sent for ``call_id``, once the server has it."""
        raise NotImplementedError

    def check(self) -> None:
        """Every message either side sent validates against the provider's own
        models; every connection was configured first thing."""
        raise NotImplementedError


# ------------------------------------------------------------------ OpenAI


class OpenAIBackend(Loopback):
    name = "openai"
    key = loopback_helpers.KEY
    fmt = AudioFormat(24_000)
    server: OpenAILoopback

    def __init__(self, server: OpenAILoopback) -> None:
        self.server = server

    @staticmethod
    def script(plan: Plan) -> ConnectionScript:
        return ConnectionScript(
            reject_status=plan.reject_status,
            close_after=plan.close_after,
            close_code=plan.close_code,
            drop_after=plan.drop_after,
            vad=False,  # turns come from the test, as on the Gemini loopback
        )

    def set_default(self, plan: Plan) -> None:
        self.server.default_script = self.script(plan)

    def audio(self, conn: WsConnection) -> np.ndarray:
        assert isinstance(conn, LoopbackConnection)
        return conn.audio

    def messages(self, conn: WsConnection) -> int:
        assert isinstance(conn, LoopbackConnection)
        return len(conn.events)

    def instructions(self, conn: WsConnection) -> str | None:
        assert isinstance(conn, LoopbackConnection)
        updates = conn.events_of("session.update")
        return str(updates[0]["session"]["instructions"]) if updates else None

    def _conn(self) -> LoopbackConnection:
        conn = self.current
        assert isinstance(conn, LoopbackConnection)
        return conn

    async def user_turn(self, text: str) -> None:
        await self._conn().send_transcript(text, deltas=True)

    async def reply(self, text: str) -> None:
        await self._conn().send_reply(text)

    async def tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        item = {
            "id": f"item_{call_id}",
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": name,
            "arguments": json.dumps(arguments),
        }
        event = {
            "type": "response.output_item.done",
            "response_id": f"resp_{call_id}",
            "output_index": 0,
            "item": item,
        }
        await self._conn().send_event(event)

    async def wait_for_tool_result(self, call_id: str) -> str:
        conn = self._conn()
        n = 1
        while True:
            created = await conn.wait_for_event("conversation.item.create", n)
            item = created["item"]
            if item.get("type") == "function_call_output" and item.get("call_id") == call_id:
                return str(item["output"])
            n += 1

    def check(self) -> None:
        loopback_helpers.check_server(self.server)
        for conn in self.server.accepted:
            assert isinstance(conn, LoopbackConnection)
            if conn.events:
                assert conn.events[0].type == "session.update"
        for update in self.server.all_events("session.update"):
            audio = update["session"].get("audio")
            if audio is not None:  # the connect configuration: 24 kHz in and out
                assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
                assert audio["output"]["format"] == {"type": "audio/pcm", "rate": 24_000}


# ------------------------------------------------------------------ Gemini


class GeminiBackend(Loopback):
    name = "gemini"
    key = "AIza-both-test-Rk3Vn8Qw2Lp6"
    fmt = AudioFormat(16_000)
    server: GeminiLoopback

    def __init__(self, server: GeminiLoopback) -> None:
        self.server = server

    @staticmethod
    def script(plan: Plan) -> GeminiScript:
        return GeminiScript(
            reject_status=plan.reject_status,
            close_after=plan.close_after,
            close_code=plan.close_code,
            drop_after=plan.drop_after,
            resumption_every=1 if plan.resumption else None,
            answer_tool_results=False,  # as OpenAI: no reply unless asked
        )

    def set_default(self, plan: Plan) -> None:
        self.server.default_script = self.script(plan)

    def _gconn(self, conn: WsConnection) -> GeminiConnection:
        assert isinstance(conn, GeminiConnection)
        return conn

    def audio(self, conn: WsConnection) -> np.ndarray:
        return self._gconn(conn).service.connection_audio

    def all_audio(self) -> np.ndarray:
        """The input audio of every session the server held, in order: a resumed
        session's is what it had consumed when the handle was made, then what the
        resuming connection got (the link resends exactly what it had not)."""
        held: list[GeminiConnection] = []
        for raw in self.server.connections:
            conn = self._gconn(raw)
            if conn.service.setup is None:
                continue  # refused, or closed before it was set up
            if conn.service.resumed_from is not None and held:
                held[-1] = conn  # the same session, carried on
            else:
                held.append(conn)
        return np.concatenate(
            [np.zeros((0, 1), np.int16), *(c.service.session_audio for c in held)]
        )

    def received(self) -> int:
        return int(self.all_audio().shape[0])

    def messages(self, conn: WsConnection) -> int:
        return len(self._gconn(conn).service.records)

    def instructions(self, conn: WsConnection) -> str | None:
        setup = self._gconn(conn).service.setup
        if setup is None:
            return None
        return str(setup.get("systemInstruction", {}).get("parts", [{}])[0].get("text", ""))

    async def user_turn(self, text: str) -> None:
        conn = self._gconn(self.current)
        await conn.send(conn.service.transcribe([text], finished=True))

    async def reply(self, text: str) -> None:
        conn = self._gconn(self.current)
        tone = np.full((2400, 1), 900, np.int16)
        await conn.send(conn.service.reply(tone, [text]))

    async def tool_call(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        conn = self._gconn(self.current)
        await conn.send(conn.service.tool_call(name, arguments, call_id))

    async def wait_for_tool_result(self, call_id: str) -> str:
        conn = self._gconn(self.current)

        def found() -> dict[str, Any] | None:
            for r in conn.service.tool_responses:
                if r.get("id") == call_id:
                    return dict(r)
            return None

        await self.server.wait_until(lambda: found() is not None or conn.closed.is_set())
        response = found()
        assert response is not None, f"no tool result for {call_id}"
        output = response.get("response", {})
        return str(output.get("output", output) if isinstance(output, dict) else output)

    def check(self) -> None:
        assert self.server.connections, "the test never reached the server"
        for raw in self.server.connections:
            conn = self._gconn(raw)
            for i, record in enumerate(conn.service.records):
                assert record.problem is None, record
                assert record.message is not None
                gemini_oracle.client_message(json.dumps(record.message))
                if i == 0:
                    assert "setup" in record.message
            for sent in conn.service.sent:
                gemini_oracle.server_message(json.dumps(sent))


# ------------------------------------------------------------------ the fixture


_BACKENDS: dict[str, type[OpenAIBackend] | type[GeminiBackend]] = {
    "openai": OpenAIBackend,
    "gemini": GeminiBackend,
}


@attrs.frozen
class Backend:
    """A provider whose loopback server a test opens (see :func:`serve`)."""

    name: str

    @property
    def fmt(self) -> AudioFormat:
        """The provider's input format (what the server receives)."""
        return _BACKENDS[self.name].fmt

    @property
    def key(self) -> str:
        return _BACKENDS[self.name].key

    @property
    def refusal(self) -> str:
        """What the message of a refused key names: the HTTP status (OpenAI refuses
        the handshake) or the close code (Gemini accepts, then closes)."""
        return "401" if self.name == "openai" else "1008"

    def provider(
        self, url: str, *, reconnect: ReconnectPolicy = FAST, api_key: str | None = None
    ) -> WebsocketProvider:
        """This provider pointed at ``url`` (any websocket server)."""
        if self.name == "openai":
            return loopback_helpers.provider_for(
                url, reconnect=reconnect, api_key=api_key or self.key
            )
        return voxtrio.GeminiLive(
            model="gemini-live-test",
            api_key=api_key or self.key,
            base_url=url,
            reconnect=reconnect,
            seed=7,
        )

    def serve(
        self,
        plans: Sequence[Plan] = (),
        default: Plan | None = None,
        *,
        require_key: bool = True,
        key: str | None = None,
        reached: bool = True,
    ) -> AbstractAsyncContextManager[Loopback]:
        """Run this provider's loopback server: one :class:`Plan` per connection in
        order, then ``default``; it requires the backend's key (or ``key``) unless
        ``require_key`` is false. Checked on the way out (``reached``: and a
        client must have connected)."""
        return _serve(self.name, plans, default, require_key, key, reached)


@asynccontextmanager
async def _serve(
    name: str,
    plans: Sequence[Plan],
    default: Plan | None,
    require_key: bool,
    key: str | None,
    reached: bool,
) -> AsyncIterator[Loopback]:
    loop: Loopback
    if name == "openai":
        scripts = [OpenAIBackend.script(p) for p in plans]
        async with open_openai_loopback(
            scripts=scripts,
            default_script=OpenAIBackend.script(default or Plan()),
            api_key=(key or OpenAIBackend.key) if require_key else None,
        ) as oserver:
            loop = OpenAIBackend(oserver)
            yield loop
    else:
        gscripts = [GeminiBackend.script(p) for p in plans]
        async with open_gemini_loopback(
            scripts=gscripts,
            default_script=GeminiBackend.script(default or Plan()),
            api_key=(key or GeminiBackend.key) if require_key else None,
        ) as gserver:
            loop = GeminiBackend(gserver)
            yield loop
    if reached or loop.connections:
        loop.check()


@asynccontextmanager
async def session_for(
    server: Loopback,
    *,
    instructions: str = BASE,
    reconnect: ReconnectPolicy = FAST,
    **options: Any,
) -> AsyncIterator[tuple[Session, Recorder]]:
    """A session against ``server``: :func:`loopback_helpers.recorded_session`
    (the output drained, nothing missed, the key in no event)."""
    provider = server.provider(reconnect=reconnect)
    async with recorded_session(
        provider, server.key, instructions=instructions, realtime_playback=False, **options
    ) as pair:
        yield pair


def noise(seconds: float, seed: int, fmt: AudioFormat) -> np.ndarray:
    """Quiet mono noise at ``fmt``'s rate (no loopback hears a turn in it)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * fmt.sample_rate)
    return rng.integers(-300, 300, (n, 1)).astype(np.int16)


async def push(session: Session, pcm: np.ndarray, fmt: AudioFormat) -> None:
    """Send ``pcm`` in 20 ms chunks."""
    step = fmt.sample_rate // 50
    for i in range(0, pcm.shape[0], step):
        await session.send_audio(pcm[i : i + step], fmt)
