"""A loopback Gemini Live server on 127.0.0.1: the fake service over the shared
websocket transport (:mod:`voxtrio.testing.wsserver`).

Each connection runs a sans-IO :class:`~voxtrio.testing.gemini.service.GeminiService`
(sessions shared through one :class:`~voxtrio.testing.gemini.service.GeminiSessions`,
so resumption works across connections); this module is only the adapter: the path,
the key check, the per-connection scripts, the clock of paced replies. By default
the service takes turns by itself, as the real one does with automatic activity
detection (:mod:`voxtrio.testing.gemini.turns`: it hears speech in the audio and
answers with a canned transcript and reply); ``GeminiScript(turns=None)`` keeps it
silent unless the test speaks for it::

    async with open_gemini_loopback(api_key="test") as server:
        provider = GeminiLive(model="gemini-live-test", api_key="test", base_url=server.url)
        async with open_session(provider) as session:
            conn = await server.wait_for_connection()
            await conn.send(conn.service.transcribe(["Hel", "lo"]))

A handshake whose ``x-goog-api-key`` differs from ``api_key`` is accepted and then
closed with 1008, as the service does. JSON goes out in binary frames unless the
script says otherwise. :meth:`GeminiConnection.drop` closes the TCP stream at once
(what the server had not read is lost); :meth:`GeminiConnection.close` sends a close
frame and records what the client sends until its close reply.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Final

import attrs
import trio
from wsproto.events import Request

from ..wsserver import Pacer, Rejection, WsConnection, WsServer, serve_ws
from .service import CloseConnection, GeminiService, GeminiSessions, Outgoing
from .turns import GeminiTurns

__all__ = [
    "GeminiConnection",
    "GeminiLoopback",
    "GeminiScript",
    "GeminiToolCall",
    "open_gemini_loopback",
]

PATH: Final = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@attrs.frozen
class GeminiToolCall:
    """A ``toolCall`` the server sends right after the ``after``-th client message
    (the ``setup`` is the first)."""

    name: str
    args: Mapping[str, Any] = attrs.field(factory=dict)
    after: int = 1
    call_id: str = "call_1"


@attrs.frozen
class GeminiScript:
    """How the server treats one connection (connections take scripts in order).

    Counts are of client messages on the connection, the ``setup`` included.

    Attributes:
        reject_status: refuse the handshake with this HTTP status.
        resumption_every: send a resumable ``sessionResumptionUpdate`` after every
            this many client messages.
        go_away_after: send ``goAway`` after this many client messages.
        go_away_time_left_s: its ``timeLeft``.
        close_after: send a close frame (``close_code``/``close_reason``) after this
            many client messages.
        drop_after: drop the TCP stream after this many client messages.
        binary: JSON in binary frames (the real service's way); else text frames.
        refuse_resumption: close a ``setup`` that names a handle (1011).
        tool_calls: tool calls to make (:class:`GeminiToolCall`).
        answer_tool_results: after each ``toolResponse``, a model turn whose
            transcript says what the tools returned (``"The <name> tool returned
            <response as JSON>."``), as the model goes on by itself.
        turns: how the service takes turns by itself (:class:`GeminiTurns`: VAD,
            canned transcripts and replies, pacing); None: never by itself.
    """

    reject_status: int | None = None
    resumption_every: int | None = None
    go_away_after: int | None = None
    go_away_time_left_s: float = 5.0
    close_after: int | None = None
    close_code: int = 1011
    close_reason: str = "Internal error encountered."
    drop_after: int | None = None
    binary: bool = True
    refuse_resumption: bool = False
    tool_calls: tuple[GeminiToolCall, ...] = ()
    answer_tool_results: bool = True
    turns: GeminiTurns | None = attrs.field(factory=GeminiTurns)


class GeminiConnection(WsConnection):
    """One client connection, and the handle a test scripts it with (the socket
    side -- close codes, drop, close, stall -- is :class:`WsConnection`'s).

    Attributes:
        service: the fake service of this connection (its records, audio, setup).
        setup_at, go_away_at: ``trio.current_time()`` when the setup arrived, and
            when a scripted goAway went out.
    """

    def __init__(
        self, server: GeminiLoopback, index: int, script: GeminiScript, request: Request
    ) -> None:
        super().__init__(server, index, request)
        self.server: GeminiLoopback = server
        self.script = script
        self.service = GeminiService(
            sessions=server.sessions,
            binary=script.binary,
            refuse_resumption=script.refuse_resumption,
            turns=script.turns,
        )
        self._pacer = Pacer(self.service)
        self.setup_at: float | None = None
        self.go_away_at: float | None = None

    def __repr__(self) -> str:
        return f"GeminiConnection(index={self.index}, closed_by={self.closed_by!r})"

    async def wait_for_messages(self, n: int) -> None:
        """Until ``n`` client messages arrived (the setup included) or it closed."""
        await self.server.wait_until(lambda: len(self.service.records) >= n or self.closed.is_set())

    async def send(self, outgoing: Iterable[Outgoing]) -> None:
        """Send what a :class:`GeminiService` scripting method returned (a
        :class:`CloseConnection` among them closes the connection)."""
        async with self._send_lock:
            for item in outgoing:
                if isinstance(item, CloseConnection):
                    await self._close_locked(item.code, item.reason)
                    return
                await self._send_locked(item)

    async def _run_open(self) -> None:
        key = self.server.api_key
        if key is not None and self.header("x-goog-api-key") != key:
            async with self._send_lock:
                await self._close_locked(1008, "API key not valid. Please pass a valid API key.")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pacer.run, self.send, self.server._changed)
            await self._read_loop()
            nursery.cancel_scope.cancel()

    async def _on_message(self, data: str | bytes) -> None:
        answered = len(self.service.tool_responses)
        await self.send(self.service.receive(data, now=trio.current_time()))
        self._pacer.rescheduled()  # the message may have scheduled (or cut) a turn
        new = self.service.tool_responses[answered:]
        if new and self.script.answer_tool_results:
            said = " ".join(
                f"The {r.get('name')} tool returned "
                f"{json.dumps(r.get('response'), separators=(',', ':'))}."
                for r in new
            )
            await self.send(self.service.reply(transcript=[said]))
        self.server._changed()
        n = len(self.service.records)
        if n == 1 and self.setup_at is None:
            self.setup_at = trio.current_time()
        s = self.script
        if s.resumption_every and n > 1 and (n - 1) % s.resumption_every == 0:
            await self.send(self.service.resumption_update())
        if s.go_away_after == n:
            self.go_away_at = trio.current_time()
            await self.send(self.service.go_away(s.go_away_time_left_s))
        if s.close_after == n:
            await self.send([CloseConnection(s.close_code, s.close_reason)])
        for call in s.tool_calls:
            if call.after == n:
                await self.send(self.service.tool_call(call.name, call.args, call.call_id))
        if s.drop_after == n:
            self._finish("dropped", 1006, "scripted drop")
            self._scope.cancel()


class GeminiLoopback(WsServer[GeminiConnection]):
    """The running loopback server (see :func:`open_gemini_loopback`).

    Attributes:
        url: pass it as ``GeminiLive(base_url=...)``.
        connections: every connection, in handshake order.
        scripts, default_script: per connection, in order; then the default.
        sessions: the sessions resumption handles restore.
        api_key: when set, a connection without it in ``x-goog-api-key`` is closed
            with 1008.
    """

    def __init__(
        self,
        *,
        scripts: Sequence[GeminiScript] = (),
        default_script: GeminiScript | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        self.scripts = list(scripts)
        self.default_script = default_script or GeminiScript()
        self.api_key = api_key
        self.sessions = GeminiSessions()

    def __repr__(self) -> str:
        return f"GeminiLoopback(url={self.url!r}, connections={len(self.connections)})"

    @property
    def url(self) -> str:
        """The server's websocket URL, for ``GeminiLive(base_url=...)``."""
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def _connection(self, index: int, request: Request) -> GeminiConnection:
        script = self.scripts[index] if index < len(self.scripts) else self.default_script
        return GeminiConnection(self, index, script, request)

    def _rejection(self, conn: GeminiConnection) -> Rejection | None:
        status = conn.script.reject_status
        if status is None and conn.path.split("?", 1)[0] != PATH:
            status = 404
        return None if status is None else (status, [], b"")


@contextlib.asynccontextmanager
async def open_gemini_loopback(
    *,
    scripts: Sequence[GeminiScript] = (),
    default_script: GeminiScript | None = None,
    api_key: str | None = None,
) -> AsyncIterator[GeminiLoopback]:
    """Run a loopback Gemini Live server on 127.0.0.1 (a free port).

    On exit every open connection gets a close frame (1001) and its TCP stream is
    closed; no task outlives the block.
    """
    server = GeminiLoopback(scripts=scripts, default_script=default_script, api_key=api_key)
    async with serve_ws(server):
        yield server
