"""A loopback Gemini Live server on 127.0.0.1: the fake service over a real websocket.

Each connection runs a sans-IO :class:`~voxtrio.testing.gemini.service.GeminiService`
(sessions shared through one :class:`~voxtrio.testing.gemini.service.GeminiSessions`,
so resumption works across connections); this module is only the transport: a trio
TCP listener, wsproto, scripted drops and closes::

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
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Final, Literal, TypeAlias

import attrs
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.events import CloseConnection as WsClose

from .service import CloseConnection, GeminiService, GeminiSessions, Outgoing

__all__ = ["GeminiConnection", "GeminiLoopback", "GeminiScript", "open_gemini_loopback"]

PATH: Final = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"

_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)

_ClosedBy: TypeAlias = Literal["client", "server", "dropped", "network", "shutdown"]


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


class GeminiConnection:
    """One client connection, and the handle a test scripts it with.

    Attributes:
        index: 0-based, in handshake order (rejected handshakes count).
        path: the request path.
        service: the fake service of this connection (its records, audio, setup).
        close_code, close_reason, closed_by: how it ended, once ``closed`` is set.
    """

    def __init__(
        self, server: GeminiLoopback, index: int, script: GeminiScript, request: Request
    ) -> None:
        self.server = server
        self.index = index
        self.script = script
        self.path = request.target
        self._headers = list(request.extra_headers)
        self.service = GeminiService(
            sessions=server.sessions,
            binary=script.binary,
            refuse_resumption=script.refuse_resumption,
        )
        self.rejected_status: int | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: _ClosedBy | None = None
        #: ``trio.current_time()`` when the setup arrived, and when a goAway went out.
        self.setup_at: float | None = None
        self.go_away_at: float | None = None
        self.closed = trio.Event()
        self._done = trio.Event()
        self._ws: wsproto.WSConnection | None = None
        self._stream: trio.SocketStream | None = None
        self._lock = trio.Lock()
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        return f"GeminiConnection(index={self.index}, closed_by={self.closed_by!r})"

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name (``x-goog-api-key`` holds a
        key: never log it)."""
        wanted = name.lower().encode("ascii")
        return next((v.decode("latin-1") for k, v in self._headers if k.lower() == wanted), None)

    async def wait_for_messages(self, n: int) -> None:
        """Until ``n`` client messages arrived (the setup included) or it closed."""
        await self.server.wait_until(lambda: len(self.service.records) >= n or self.closed.is_set())

    async def send(self, outgoing: Iterable[Outgoing]) -> None:
        """Send what a :class:`GeminiService` scripting method returned (a
        :class:`CloseConnection` among them closes the connection)."""
        for item in outgoing:
            if isinstance(item, CloseConnection):
                await self._start_close(item.code, item.reason)
                return
            await self._send(item)

    async def drop(self) -> None:
        """Close the TCP stream now, with no close frame (a network failure)."""
        if self.closed.is_set():
            return
        self._finish("dropped", 1006, "dropped by the loopback server")
        self._scope.cancel()
        await self._done.wait()

    async def close(self, code: int = 1011, reason: str = "", *, timeout_s: float = 5.0) -> None:
        """Send a close frame and read (recording) until the client's close reply."""
        await self._start_close(code, reason)
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        if not self._done.is_set():
            await self.drop()

    # ------------------------------------------------------------- transport

    async def _send(self, data: str | bytes) -> bool:
        async with self._lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return False
            frame = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
            try:
                await stream.send_all(ws.send(frame))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._finish("network", 1006, "send failed")
                return False
        return True

    async def _start_close(self, code: int, reason: str) -> None:
        async with self._lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return
            self.close_code, self.close_reason = code, reason
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(ws.send(WsClose(code=code, reason=reason)))
        self.server._changed()

    def _finish(self, by: _ClosedBy, code: int | None, reason: str | None) -> None:
        if self.closed.is_set():
            return
        self.closed_by = by
        if self.close_code is None or by in ("dropped", "network"):
            self.close_code, self.close_reason = code, reason
        self.closed.set()
        self.server._changed()

    async def _serve(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        self._ws, self._stream = ws, stream
        try:
            with self._scope:
                key = self.server.api_key
                if key is not None and self.header("x-goog-api-key") != key:
                    await self._start_close(1008, "API key not valid. Please pass a valid API key.")
                await self._read_loop(ws, stream)
        finally:
            with trio.CancelScope(shield=True):
                if self.server._shutting_down and ws.state is ConnectionState.OPEN:
                    with trio.move_on_after(0.5):
                        await self._start_close(1001, "loopback server shutting down")
                    self._finish("shutdown", 1001, "loopback server shutting down")
                await trio.aclose_forcefully(stream)
                self._finish("network", 1006, "connection ended")
                self._done.set()

    async def _read_loop(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        parts: list[str | bytes] = []
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._finish("network", 1006, "connection lost")
                return
            if not data:
                self._finish("network", 1006, "the client closed TCP without a close frame")
                return
            try:
                ws.receive_data(data)
            except wsproto.utilities.RemoteProtocolError as exc:
                self._finish("network", 1002, f"websocket protocol error: {exc}")
                return
            for event in ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    parts.append(event.data if isinstance(event.data, str) else bytes(event.data))
                    if event.message_finished:
                        joined: str | bytes = (
                            "".join(typing.cast("list[str]", parts))
                            if isinstance(event, TextMessage)
                            else b"".join(typing.cast("list[bytes]", parts))
                        )
                        parts = []
                        await self._on_message(joined)
                        if self._scope.cancel_called:
                            return
                elif isinstance(event, Ping):
                    async with self._lock:
                        with contextlib.suppress(*_GONE):
                            await stream.send_all(ws.send(event.response()))
                elif isinstance(event, WsClose):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the client closed
                        async with self._lock:
                            with contextlib.suppress(
                                trio.BrokenResourceError, trio.ClosedResourceError
                            ):
                                await stream.send_all(ws.send(event.response()))
                        self.close_code, self.close_reason = event.code, event.reason
                        self._finish("client", event.code, event.reason)
                    else:  # the reply to our close
                        self._finish("server", self.close_code, self.close_reason)
                    return

    async def _on_message(self, data: str | bytes) -> None:
        await self.send(self.service.receive(data))
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
            await self._start_close(s.close_code, s.close_reason)
        if s.drop_after == n:
            self._finish("dropped", 1006, "scripted drop")
            self._scope.cancel()


class GeminiLoopback:
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
        self.scripts = list(scripts)
        self.default_script = default_script or GeminiScript()
        self.api_key = api_key
        self.sessions = GeminiSessions()
        self.connections: list[GeminiConnection] = []
        self.port = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._shutting_down = False

    def __repr__(self) -> str:
        return f"GeminiLoopback(url={self.url!r}, connections={len(self.connections)})"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    @property
    def accepted(self) -> list[GeminiConnection]:
        return [c for c in self.connections if c.rejected_status is None]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds, re-checked on every change."""
        while not predicate():
            await self._lot.park()

    async def wait_for_connection(self, n: int = 1) -> GeminiConnection:
        """The ``n``-th accepted connection, once it exists."""
        await self.wait_until(lambda: len(self.accepted) >= n)
        return self.accepted[n - 1]

    def _changed(self) -> None:
        self._lot.unpark_all()

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        try:
            request: Request | None = None
            with trio.move_on_after(10):
                while request is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    ws.receive_data(data)
                    request = next((e for e in ws.events() if isinstance(e, Request)), None)
            if request is None:
                return
            index = len(self.connections)
            script = self.scripts[index] if index < len(self.scripts) else self.default_script
            conn = GeminiConnection(self, index, script, request)
            self.connections.append(conn)
            self._changed()
            status = script.reject_status
            if status is None and request.target.split("?", 1)[0] != PATH:
                status = 404
            if status is not None:
                conn.rejected_status = status
                await stream.send_all(ws.send(RejectConnection(status_code=status)))
                conn._finish("server", None, f"handshake rejected with {status}")
                conn._done.set()
                return
            await stream.send_all(ws.send(AcceptConnection()))
            await conn._serve(ws, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError,
                wsproto.utilities.RemoteProtocolError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


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
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server.port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, server._handle, listeners)
        try:
            yield server
        finally:
            server._shutting_down = True
            nursery.cancel_scope.cancel()
