"""The transport the loopback servers share: wsproto over a trio TCP stream the
server owns, with no protocol in it.

A protocol is its sans-IO fake service plus a thin adapter: a
:class:`WsConnection` subclass that hands each whole client message to the
service (:meth:`WsConnection._on_message`) and carries out what comes back, and a
:class:`WsServer` subclass that makes those connections and says which handshakes
to refuse. Everything else is here, once: the handshake (accept or reject with a
status, headers and a body), message reassembly (text and binary, with a size
limit), pings, the close handshake in both directions, a true drop (TCP closed
with no close frame, unread data lost), a stall, shutdown with 1001, and
``wait_until`` on any change.

wsproto is driven directly (rather than a websocket library's server) so that the
server owns the stream: that is what makes a true drop, a stall at the socket, and
a close that loses nothing possible.
"""

from __future__ import annotations

import contextlib
import math
import typing
from collections.abc import AsyncIterator, Callable
from typing import Final, Generic, Literal, TypeAlias, TypeVar

import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = ["ClosedBy", "Rejection", "WsConnection", "WsServer", "serve_ws"]

#: Who or what ended a connection.
ClosedBy: TypeAlias = Literal["client", "server", "dropped", "network", "shutdown"]
#: A refused handshake: HTTP status, extra headers, body (may be empty).
Rejection: TypeAlias = tuple[int, list[tuple[bytes, bytes]], bytes]

_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


class WsConnection:
    """One accepted (or rejected) client connection: the socket side.

    Attributes:
        index: 0-based, in handshake order (rejected handshakes count).
        path: the request path, query included.
        rejected_status: the HTTP status the handshake was refused with, if it was.
        sent: every message the server sent, in order (text or bytes).
        close_code, close_reason: how it ended (1006: no close frame).
        closed_by: ``client``, ``server``, ``dropped``, ``network`` or ``shutdown``.
        closed: set once the connection is over.
    """

    def __init__(self, server: WsServer[typing.Any], index: int, request: Request | None) -> None:
        self.server = server
        self.index = index
        self.path = request.target if request is not None else ""
        self._headers: list[tuple[bytes, bytes]] = (
            list(request.extra_headers) if request is not None else []
        )
        self.rejected_status: int | None = None
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: ClosedBy | None = None
        self.closed = trio.Event()
        self._done = trio.Event()  # the TCP stream is closed
        self._ws: wsproto.WSConnection | None = None
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._readable = trio.Event()
        self._readable.set()
        self._scope = trio.CancelScope()

    # ------------------------------------------------------------- for subclasses

    #: Larger client messages close the connection with 1009 (None: no limit).
    max_message_bytes: int | None = None

    async def _on_message(self, data: str | bytes) -> None:
        """One whole client message (override)."""

    async def _run_open(self) -> None:
        """The accepted connection's life (override to start more tasks); returns
        when the connection ends."""
        await self._read_loop()

    # ------------------------------------------------------------- reading state

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name (it may hold a key: never log it)."""
        wanted = name.lower().encode("ascii")
        return next((v.decode("latin-1") for k, v in self._headers if k.lower() == wanted), None)

    @property
    def is_open(self) -> bool:
        """Whether the websocket is open now."""
        return self._ws is not None and self._ws.state is ConnectionState.OPEN

    async def wait_closed(self) -> None:
        """Wait until the connection has closed."""
        await self.closed.wait()

    # ------------------------------------------------------------- scripting

    async def drop(self) -> None:
        """Close the TCP connection now, without a close frame (like a network
        failure). Whatever the client sent that was not read yet is lost."""
        if self.closed.is_set():
            return
        self._finish("dropped", 1006, "dropped by the loopback server")
        self._scope.cancel()
        await self._done.wait()

    async def close(
        self, code: int = 1011, reason: str = "loopback close", *, timeout_s: float = 5.0
    ) -> None:
        """Send a close frame and record everything the client sends until its close
        reply (nothing is lost); returns once the connection is over. A client that
        does not reply within ``timeout_s`` is dropped."""
        async with self._send_lock:
            await self._close_locked(code, reason)
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        if not self._done.is_set():
            self._finish("dropped", 1006, "no close reply: dropped")
            self._scope.cancel()
            await self._done.wait()

    def stall(self) -> None:
        """Stop reading: the client's messages pile up in the socket buffers."""
        if self._readable.is_set():
            self._readable = trio.Event()

    def resume(self) -> None:
        """Read again after :meth:`stall`."""
        self._readable.set()

    # ------------------------------------------------------------- transport

    async def _send_locked(self, data: str | bytes) -> bool:
        """Send one message (the caller holds ``_send_lock``); False if not sent."""
        ws, stream = self._ws, self._stream
        if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
            return False
        frame = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        payload = ws.send(frame)
        self.sent.append(data)
        try:
            await stream.send_all(payload)
        except _GONE:
            self._finish("network", 1006, "send failed")
            return False
        return True

    async def _close_locked(self, code: int, reason: str) -> None:
        ws, stream = self._ws, self._stream
        if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
            return
        payload = ws.send(CloseConnection(code=code, reason=reason))
        self.close_code, self.close_reason = code, reason
        with contextlib.suppress(*_GONE):
            await stream.send_all(payload)
        self.server._changed()

    async def _send_control(self, payload: bytes) -> None:
        stream = self._stream
        assert stream is not None
        async with self._send_lock:
            with contextlib.suppress(*_GONE):
                await stream.send_all(payload)

    def _finish(self, by: ClosedBy, code: int | None, reason: str | None) -> None:
        if self.closed.is_set():
            return
        self.closed_by = by
        if self.close_code is None or by in ("dropped", "network"):
            self.close_code, self.close_reason = code, reason
        self.closed.set()
        self.server._changed()

    async def _serve(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        """Run the accepted connection until it closes, is dropped or cancelled."""
        self._ws, self._stream = ws, stream
        try:
            with self._scope:
                await self._run_open()
        finally:
            with trio.CancelScope(shield=True):
                if self.server._shutting_down and ws.state is ConnectionState.OPEN:
                    with trio.move_on_after(0.5):
                        async with self._send_lock:
                            await self._close_locked(1001, "loopback server shutting down")
                    self._finish("shutdown", 1001, "loopback server shutting down")
                await trio.aclose_forcefully(stream)
                self._finish("network", 1006, "connection ended")
                self._done.set()

    async def _read_loop(self) -> None:
        ws, stream = self._ws, self._stream
        assert ws is not None
        assert stream is not None
        parts: list[str | bytes] = []
        size = 0
        limit = self.max_message_bytes
        while True:
            await self._readable.wait()
            try:
                data = await stream.receive_some(65536)
            except _GONE:
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
                    piece = event.data if isinstance(event.data, str) else bytes(event.data)
                    parts.append(piece)
                    size += len(piece)
                    if limit is not None and size > limit:
                        async with self._send_lock:
                            await self._close_locked(1009, f"message over {limit} bytes")
                        self._finish("server", 1009, "message too big")
                        return
                    if event.message_finished:
                        joined: str | bytes = (
                            "".join(typing.cast("list[str]", parts))
                            if isinstance(event, TextMessage)
                            else b"".join(typing.cast("list[bytes]", parts))
                        )
                        parts, size = [], 0
                        await self._readable.wait()  # a stall takes effect between messages
                        await self._on_message(joined)
                        if self._scope.cancel_called:
                            return
                elif isinstance(event, Ping):
                    if ws.state is ConnectionState.OPEN:  # not after our close frame
                        await self._send_control(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the client closed
                        await self._send_control(ws.send(event.response()))
                        self.close_code, self.close_reason = event.code, event.reason
                        self._finish("client", event.code, event.reason)
                    else:  # the reply to our close
                        self._finish("server", self.close_code, self.close_reason)
                    return


_Out = TypeVar("_Out")


class PacedService(typing.Protocol[_Out]):
    """A sans-IO fake service with steps due at times of its own (paced replies)."""

    @property
    def next_wakeup(self) -> float | None:
        """When :meth:`advance_to` has something to send (None: nothing waits)."""
        ...

    def advance_to(self, now: float) -> list[_Out]:
        """The steps due by ``now`` (trio time)."""
        ...


class Pacer(Generic[_Out]):
    """Runs a :class:`PacedService`'s due steps on trio's clock, for one connection.

    The connection calls :meth:`rescheduled` after every message the service took
    (it may have scheduled, moved or cut a step), and runs :meth:`run` in its nursery.
    """

    def __init__(self, service: PacedService[_Out]) -> None:
        self.service = service
        self._rescheduled = trio.Event()

    def rescheduled(self) -> None:
        """The service may have a new wake-up time."""
        self._rescheduled.set()

    async def run(
        self, emit: Callable[[list[_Out]], typing.Awaitable[object]], changed: Callable[[], None]
    ) -> None:
        """Forever: wait for the next step (or a reschedule), ``emit`` what is due,
        then tell the server its state ``changed``."""
        while True:
            self._rescheduled = trio.Event()
            due = self.service.next_wakeup
            with trio.move_on_at(math.inf if due is None else due):
                await self._rescheduled.wait()
            outputs = self.service.advance_to(trio.current_time())
            if outputs:
                await emit(outputs)
                changed()


C = TypeVar("C", bound=WsConnection)


class WsServer(Generic[C]):
    """The listener side: handshakes, the connection list, change notification.

    Subclasses make their connections (:meth:`_connection`) and say which
    handshakes to refuse (:meth:`_rejection`).

    Attributes:
        port: the port the kernel chose.
        connections: every connection, in handshake order (rejected ones included).
    """

    handshake_timeout_s: float = 10.0

    def __init__(self) -> None:
        self.connections: list[C] = []
        self.port = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._shutting_down = False

    def _connection(self, index: int, request: Request) -> C:
        raise NotImplementedError

    def _rejection(self, conn: C) -> Rejection | None:
        """Why to refuse ``conn``'s handshake, or None to accept it."""
        return None

    @property
    def accepted(self) -> list[C]:
        """The connections whose handshake was accepted, in arrival order."""
        return [c for c in self.connections if c.rejected_status is None]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked on every change (a
        connection, a message, a close)."""
        while not predicate():
            await self._lot.park()

    async def wait_for_connection(self, n: int = 1) -> C:
        """Wait for the ``n``-th accepted connection and return it."""
        await self.wait_until(lambda: len(self.accepted) >= n)
        return self.accepted[n - 1]

    def _changed(self) -> None:
        self._lot.unpark_all()

    async def _read_request(
        self, ws: wsproto.WSConnection, stream: trio.SocketStream
    ) -> Request | None:
        with trio.move_on_after(self.handshake_timeout_s):
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, Request):
                        return event
        return None

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        try:
            request = await self._read_request(ws, stream)
            if request is None:
                return
            conn = self._connection(len(self.connections), request)
            self.connections.append(conn)
            self._changed()
            rejection = self._rejection(conn)
            if rejection is not None:
                status, headers, body = rejection
                conn.rejected_status = status
                reply = ws.send(
                    RejectConnection(status_code=status, headers=headers, has_body=bool(body))
                )
                if body:
                    reply += ws.send(RejectData(data=body, body_finished=True))
                await stream.send_all(reply)
                conn._finish("server", None, f"handshake rejected with {status}")
                conn._done.set()
                return
            await stream.send_all(ws.send(AcceptConnection()))
            await conn._serve(ws, stream)
        except (*_GONE, wsproto.utilities.RemoteProtocolError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


S = TypeVar("S", bound=WsServer[typing.Any])


@contextlib.asynccontextmanager
async def serve_ws(server: S) -> AsyncIterator[S]:
    """Run ``server`` on 127.0.0.1 (a free port) for the block.

    On exit every open connection gets a close frame (1001) and its TCP stream is
    closed; no task outlives the block.
    """
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server.port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, server._handle, listeners)
        try:
            yield server
        finally:
            server._shutting_down = True
            nursery.cancel_scope.cancel()
