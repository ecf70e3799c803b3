"""One connection of the loopback server: wsproto over a trio TCP stream, driving a
:class:`~voxtrio.testing.openai.service.FakeRealtimeService`.

The connection owns the socket and the time; the service owns every decision. The
connection hands the service each whole client message and, when a paced reply has
a step due, the current time (``trio.current_time()``), and carries out what comes
back in order, under one lock, so that nothing another task sends can come between.
"""

from __future__ import annotations

import contextlib
import math
import typing
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Request, TextMessage

from .events import error_event
from .scripts import (
    ClientEventRecord,
    Close,
    CloseKind,
    ConnectionScript,
    Drop,
    LoopbackClosedError,
    Outgoing,
    Send,
    ServiceOutput,
    Stall,
)
from .service import FakeRealtimeService

if TYPE_CHECKING:
    from .server import OpenAILoopback

__all__ = ["LoopbackClosedError", "LoopbackConnection"]


class LoopbackConnection:
    """One client connection to the loopback server, and the handle to script it.

    Attributes:
        index: 0-based, in handshake order (rejected handshakes count).
        path: the request path, query included.
        model: the ``model`` query parameter.
        rejected_status: the HTTP status the handshake was rejected with, if it was.
        service: the fake service behind this connection (its state is all here).
        sent: every message the server sent, in order (text or bytes).
        close_code: the websocket close code, once closed (1006: no close frame).
        closed_by: ``client``, ``server``, ``dropped``, ``network`` or ``shutdown``.
        closed: set once the connection is over.
    """

    def __init__(
        self,
        server: OpenAILoopback,
        index: int,
        script: ConnectionScript,
        request: Request | None,
    ) -> None:
        self.server = server
        self.index = index
        self.script = script
        self.path = request.target if request is not None else ""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.model: str | None = query.get("model", [None])[0]
        self._headers: list[tuple[bytes, bytes]] = (
            list(request.extra_headers) if request is not None else []
        )
        self.service = FakeRealtimeService(
            script, model=self.model, index=index, shared=server.counters, now=trio.current_time()
        )
        self.rejected_status: int | None = None
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: CloseKind | None = None
        self.closed = trio.Event()
        self._done = trio.Event()  # the TCP stream is closed
        self._ws: wsproto.WSConnection | None = None
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._readable = trio.Event()
        self._readable.set()
        self._rescheduled = trio.Event()  # the service may have a new wake-up time
        self._scope = trio.CancelScope()

    def __repr__(self) -> str:
        return (
            f"LoopbackConnection(index={self.index}, events={len(self.events)}, "
            f"audio_samples={self.audio_samples}, closed_by={self.closed_by!r})"
        )

    # ------------------------------------------------------------- reading state

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header the client sent (it holds a key: never log it)."""
        return self.header("authorization")

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        wanted = name.lower().encode("ascii")
        for key, value in self._headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    @property
    def events(self) -> list[ClientEventRecord]:
        """Every client message, in order."""
        return self.service.events

    @property
    def session(self) -> dict[str, Any]:
        """The effective session configuration."""
        return self.service.session

    @property
    def instructions(self) -> list[str]:
        """The ``instructions`` of each ``session.update`` that set them."""
        return self.service.instructions

    @property
    def audio(self) -> np.ndarray:
        """All input audio received on this connection: int16 ``(samples, 1)``."""
        return self.service.audio

    @property
    def audio_samples(self) -> int:
        return self.service.audio_samples

    @property
    def invalid_events(self) -> list[ClientEventRecord]:
        return self.service.invalid_events

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The parsed client events of type ``kind``, in order."""
        return self.service.events_of(kind)

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self._ws.state is ConnectionState.OPEN

    async def wait_for_messages(self, n: int) -> None:
        """Wait until ``n`` client messages were received (or the connection ended)."""
        await self.server.wait_until(lambda: len(self.events) >= n or self.closed.is_set())

    async def wait_for_event(self, kind: str, count: int = 1) -> dict[str, Any]:
        """Wait for the ``count``-th client event of type ``kind`` and return it.

        Raises:
            LoopbackClosedError: the connection ended first.
        """
        await self.server.wait_until(
            lambda: len(self.events_of(kind)) >= count or self.closed.is_set()
        )
        found = self.events_of(kind)
        if len(found) < count:
            raise LoopbackClosedError(
                f"connection {self.index} closed after {len(found)} {kind} event(s)"
            )
        return found[count - 1]

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # ------------------------------------------------------------- scripting

    async def send_event(self, event: Outgoing) -> None:
        """Send an event (``event_id`` filled in if missing), raw text, or bytes.

        Raises:
            LoopbackClosedError: the connection is not open.
        """
        await self._emit_or_raise([Send(self.service.serialize(event))])

    async def send_error(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        event_id: str | None = None,
    ) -> None:
        """Send an ``error`` event."""
        await self.send_event(error_event(message, code, error_type, event_id))

    async def send_transcript(
        self, transcript: str, *, item_id: str | None = None, deltas: bool = False
    ) -> str:
        """Send a completed input transcription (optionally its deltas first) for
        ``item_id`` (a new item id when None); returns the item id."""
        item_id, outputs = self.service.send_transcript(transcript, item_id=item_id, deltas=deltas)
        await self._emit_or_raise(outputs)
        return item_id

    async def send_reply(self, text: str | None = None, *, audio: np.ndarray | None = None) -> str:
        """Send a whole reply: ``response.created`` ... ``response.done``, with
        ``audio`` (int16 mono at 24 kHz; default: the script's tone) and ``text``
        as its transcript; returns the response id once all of it was sent."""
        response_id, outputs = self.service.send_reply(text, audio=audio)
        await self._emit_or_raise(outputs)
        service = self.service
        await self.server.wait_until(
            lambda: service.reply_finished(response_id) or self.closed.is_set()
        )
        if not service.reply_finished(response_id):
            raise LoopbackClosedError(f"connection {self.index} closed during the reply")
        return response_id

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

    async def _emit_or_raise(self, outputs: Sequence[ServiceOutput]) -> None:
        if not await self._emit(outputs):
            raise LoopbackClosedError(f"connection {self.index} is not open")

    async def _emit(self, outputs: Sequence[ServiceOutput]) -> bool:
        """Carry out the service's outputs in order; False if a message was not sent.

        Callers compute the outputs and call this with no checkpoint in between, and
        the lock is FIFO: batches go out in the order the service produced them.
        """
        ok = True
        async with self._send_lock:
            for out in outputs:
                if isinstance(out, Send):
                    ok = await self._send_locked(out.data) and ok
                    # A schedule point per message, as when each took the lock on its
                    # own: the client gets to read what was sent before a scripted
                    # drop resets the connection (a reset loses unread data).
                    await trio.lowlevel.cancel_shielded_checkpoint()
                elif isinstance(out, Stall):
                    self.stall()
                elif isinstance(out, Close):
                    await self._close_locked(out.code, out.reason)
                elif isinstance(out, Drop):
                    self._finish("dropped", 1006, out.reason)
                    self._scope.cancel()
                    break
                else:
                    typing.assert_never(out)
        self._rescheduled.set()
        return ok

    async def _send_locked(self, data: str | bytes) -> bool:
        ws, stream = self._ws, self._stream
        if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
            return False
        frame = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        payload = ws.send(frame)
        self.sent.append(data)
        try:
            await stream.send_all(payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._finish("network", 1006, "send failed")
            return False
        return True

    async def _close_locked(self, code: int, reason: str) -> None:
        ws, stream = self._ws, self._stream
        if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
            return
        payload = ws.send(CloseConnection(code=code, reason=reason))
        self.close_code, self.close_reason = code, reason
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(payload)
        self.server._changed()

    async def _send_control(self, payload: bytes) -> None:
        stream = self._stream
        assert stream is not None
        async with self._send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(payload)

    def _finish(self, by: CloseKind, code: int | None, reason: str | None) -> None:
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
                async with trio.open_nursery() as nursery:
                    if self.script.close_at_once is None:  # else: not a word
                        await self._emit(self.service.start())
                    nursery.start_soon(self._pace)
                    await self._read_loop(ws, stream)
                    nursery.cancel_scope.cancel()
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

    async def _pace(self) -> None:
        """Give the service the time whenever it has a step due (paced replies)."""
        while True:
            self._rescheduled = trio.Event()
            due = self.service.next_wakeup
            with trio.move_on_at(math.inf if due is None else due):
                await self._rescheduled.wait()
            outputs = self.service.advance_to(trio.current_time())
            if outputs:
                await self._emit(outputs)
                self.server._changed()

    async def _read_loop(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        parts: list[str | bytes] = []
        size = 0
        limit = self.server.max_message_bytes
        while True:
            await self._readable.wait()
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
                    piece = event.data if isinstance(event.data, str) else bytes(event.data)
                    parts.append(piece)
                    size += len(piece)
                    if size > limit:
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
                        outputs = self.service.receive(joined, now=trio.current_time())
                        if self.script.close_at_once is not None:  # never a reply
                            outputs = [Close(self.script.close_at_once, "scripted hang-up")]
                        self.server._changed()
                        await self._emit(outputs)
                        if self._scope.cancel_called:
                            return
                elif isinstance(event, Ping):
                    await self._send_control(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the client closed
                        await self._send_control(ws.send(event.response()))
                        self.close_code, self.close_reason = event.code, event.reason
                        self._finish("client", event.code, event.reason)
                    else:  # the reply to our close
                        self._finish("server", self.close_code, self.close_reason)
                    return
