"""A small server-side websocket over a trio TCP stream, driven with wsproto.

Why wsproto rather than trio-websocket's server: the front door has to decide at the
handshake (a 503 with ``Retry-After`` when it is full, so a load balancer can try
another worker) and has to own its listeners and its connection tasks separately, so
that a drain can stop accepting while the live calls go on. With wsproto the server
owns the stream and every byte of the handshake; it is also what the loopback
servers in :mod:`voxtrio.testing` use.
"""

from __future__ import annotations

import contextlib
from typing import Final

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

__all__ = ["WebSocket", "WebSocketClosed", "read_request", "reject"]

RECEIVE_BYTES: Final = 65536


class WebSocketClosed(Exception):
    """The connection is over (a close frame, or the TCP stream ended)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


async def read_request(
    stream: trio.abc.Stream, ws: wsproto.WSConnection, timeout_s: float
) -> Request | None:
    """Read the upgrade request; None if the peer goes away, sends junk or is slow."""
    with trio.move_on_after(timeout_s):
        while True:
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
                ws.receive_data(bytes(data) or None)
                for event in ws.events():
                    if isinstance(event, Request):
                        return event
            except (trio.BrokenResourceError, wsproto.utilities.RemoteProtocolError):
                return None
            if not data:
                return None
    return None


async def reject(
    stream: trio.abc.Stream, ws: wsproto.WSConnection, status: int, body: str, retry_after_s: int
) -> None:
    """Refuse the handshake with an HTTP ``status`` and a short text body."""
    payload = body.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
        (b"retry-after", str(retry_after_s).encode()),
    ]
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(
            ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            + ws.send(RejectData(data=payload, body_finished=True))
        )


class WebSocket:
    """An accepted connection: one task receives, any task may send (one lock).

    ``receive()`` returns whole messages and answers pings and the peer's close by
    itself; once the connection is over it raises :class:`WebSocketClosed` with the
    close code (1006 when the stream ended without a close frame).
    """

    def __init__(
        self, stream: trio.abc.Stream, ws: wsproto.WSConnection, max_message_bytes: int
    ) -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_bytes
        self._lock = trio.Lock()
        self._pending: list[str | bytes] = []
        self._parts: list[str | bytes] = []
        self._size = 0
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def accept(
        cls, stream: trio.abc.Stream, ws: wsproto.WSConnection, max_message_bytes: int
    ) -> WebSocket:
        await stream.send_all(ws.send(AcceptConnection()))
        return cls(stream, ws, max_message_bytes)

    @property
    def open(self) -> bool:
        return self.close_code is None and self._ws.state is ConnectionState.OPEN

    async def _send_raw(self, event: TextMessage | CloseConnection | wsproto.events.Pong) -> None:
        async with self._lock:
            try:
                data = self._ws.send(event)
            except wsproto.utilities.LocalProtocolError:
                raise WebSocketClosed(self.close_code or 1006, "not open") from None
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._ended(1006, "the stream ended")
                raise WebSocketClosed(1006, "the stream ended") from None

    async def send(self, text: str) -> None:
        """Send one text message; :class:`WebSocketClosed` if the connection is over."""
        if not self.open:
            raise WebSocketClosed(self.close_code or 1006, self.close_reason)
        await self._send_raw(TextMessage(data=text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (if still open) and end the stream. Never raises."""
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(WebSocketClosed):
                await self._send_raw(CloseConnection(code=code, reason=reason[:120]))
        self._ended(code, reason)
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    def _ended(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason

    async def receive(self) -> str | bytes:
        """The next whole message from the peer."""
        while not self._pending:
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code, self.close_reason)
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._ended(1006, "the stream ended")
                continue
            try:
                self._ws.receive_data(bytes(data))
                await self._handle_events()
            except wsproto.utilities.RemoteProtocolError as exc:
                await self.close(1002, f"protocol error: {exc}")
        return self._pending.pop(0)

    async def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                data = event.data if isinstance(event.data, str) else bytes(event.data)
                self._parts.append(data)
                self._size += len(data)
                if self._size > self._max:
                    await self.close(1009, "message too big")
                    return
                if event.message_finished:
                    texts = [p for p in self._parts if isinstance(p, str)]
                    whole: str | bytes = (
                        "".join(texts)
                        if texts
                        else b"".join(p for p in self._parts if isinstance(p, bytes))
                    )
                    self._pending.append(whole)
                    self._parts, self._size = [], 0
            elif isinstance(event, Ping):
                with contextlib.suppress(WebSocketClosed):
                    await self._send_raw(event.response())
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    with contextlib.suppress(WebSocketClosed):
                        await self._send_raw(event.response())
                self._ended(event.code, event.reason or "")
