"""A lean trio websocket server for the benchmarks' loopback servers in other processes.

The benchmarks that measure the client (``bench_capacity``, ``bench_link``'s
"server in another process" row) need a server whose own cost stays low, so that it
is never the slow end. wsproto reads frames in pure Python (its unmasking alone is
~39 us for a 12.8 KB message), so only the handshake is wsproto's here: once the
connection is open, :class:`FrameReader` parses the client's frames itself (RFC 6455
section 5.2: FIN, RSV, opcode, mask bit, 7-, 16- and 64-bit lengths) and unmasks the
payloads with numpy, reassembles fragmented messages, answers pings with pongs and a
close with a close. Server frames are never masked, so writing them is one header.

:func:`serve_sink` runs a handler per connection; the handler reads whole messages
with :meth:`SinkConnection.receive` and writes with :meth:`SinkConnection.send`, in
one task. No extension or subprotocol is ever negotiated (none is accepted), so no
RSV bit may be set.

The client must wait for the handshake's reply before it sends frames (RFC 6455
section 4.1 asks it to): bytes sent ahead of the 101 are not read.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeAlias

import trio
import wsproto
import wsproto.utilities
from wsproto.events import AcceptConnection, Request

from voxtrio.actors.link.transport import frame_header, xor_mask

__all__ = [
    "Close",
    "FrameReader",
    "Message",
    "Ping",
    "Pong",
    "ProtocolError",
    "SinkConnection",
    "serve_sink",
    "server_frame",
    "unmask",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

_READ_SIZE: Final = 65536
_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Message:
    """A whole client message: ``text`` (opcode 1) or binary, its payload unmasked.

    A text payload is the UTF-8 bytes as received (not decoded here: ``json.loads``
    takes bytes); :meth:`as_text` decodes it.
    """

    text: bool
    data: bytes

    def as_text(self) -> str:
        """The payload decoded as UTF-8 (raises ``UnicodeDecodeError`` if it is not)."""
        return self.data.decode("utf-8")


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping from the client (its payload, at most 125 bytes)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong from the client (its payload)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The client's close frame: its status code (None: no code) and reason."""

    code: int | None
    reason: str


Event: TypeAlias = Message | Ping | Pong | Close


class ProtocolError(Exception):
    """The client broke RFC 6455; ``code`` is the close code to answer with, ``events``
    what the same bytes completed before the broken frame."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events: list[Event] = []


def unmask(buf: bytes | bytearray, offset: int, n: int, key: bytes) -> bytes:
    """``buf[offset:offset + n]`` XORed with the 4-byte ``key`` repeated (the link's
    own masking, :func:`voxtrio.actors.link.transport.xor_mask`: ~4 us for 12.8 KB)."""
    return xor_mask(buf, key, offset, n)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame as a server writes it."""
    return frame_header(0x80 | opcode, len(payload), masked=False) + payload


class FrameReader:
    """Sans-IO reader of a client's frames: bytes in (any chunking), events out.

    :meth:`feed` returns the events the bytes completed, in order: whole
    :class:`Message` s (continuation frames joined), :class:`Ping`, :class:`Pong` and
    :class:`Close` (control frames may come between a message's fragments). After a
    :class:`Close` nothing more is read. A broken frame raises :class:`ProtocolError`
    (then the reader is done too), carrying the events completed before it.
    """

    __slots__ = ("_buf", "_done", "_kind", "_parts")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._kind: bool | None = None  # the fragmented message's text flag, if one is open
        self._parts: list[bytes] = []
        self._done = False

    @property
    def done(self) -> bool:
        """Whether a close frame (or a protocol error) ended the stream."""
        return self._done

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by ``data`` (the next bytes off the socket)."""
        if self._done:
            return []
        buf = self._buf
        buf += data
        out: list[Event] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 2 and not self._done:
                b0, b1 = buf[pos], buf[pos + 1]
                n, head = b1 & 0x7F, 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n, head = (buf[pos + 2] << 8) | buf[pos + 3], 4
                    if n < 126:
                        raise ProtocolError(1002, "16-bit length for a short payload")
                elif n == 127:
                    if end - pos < 10:
                        break
                    (n,) = struct.unpack_from("!Q", buf, pos + 2)
                    head = 10
                    if n >> 63:
                        raise ProtocolError(1002, "64-bit length with its top bit set")
                    if n < 65536:
                        raise ProtocolError(1002, "64-bit length for a short payload")
                if not b1 & 0x80:
                    raise ProtocolError(1002, "unmasked client frame")
                start = pos + head + 4
                if end - start < n:
                    break
                key = bytes(buf[pos + head : start])
                payload = unmask(buf, start, n, key)
                pos = start + n
                self._frame(b0, payload, out)
        except ProtocolError as exc:
            self._done = True
            exc.events = out
            raise
        finally:
            del buf[:pos]
        return out

    def _frame(self, b0: int, payload: bytes, out: list[Event]) -> None:
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if b0 & 0x70:
            raise ProtocolError(1002, "RSV bit set (no extension was negotiated)")
        if opcode >= 0x8:  # control
            if not fin:
                raise ProtocolError(1002, "fragmented control frame")
            if len(payload) > 125:
                raise ProtocolError(1002, "control frame over 125 bytes")
            if opcode == OP_PING:
                out.append(Ping(payload))
            elif opcode == OP_PONG:
                out.append(Pong(payload))
            elif opcode == OP_CLOSE:
                out.append(_close_event(payload))
                self._done = True
            else:
                raise ProtocolError(1002, f"reserved control opcode {opcode:#x}")
        elif opcode == OP_CONTINUATION:
            if self._kind is None:
                raise ProtocolError(1002, "continuation frame with no message open")
            self._parts.append(payload)
            if fin:
                out.append(Message(self._kind, b"".join(self._parts)))
                self._kind, self._parts = None, []
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._kind is not None:
                raise ProtocolError(1002, "new message inside a fragmented one")
            if fin:
                out.append(Message(opcode == OP_TEXT, payload))
            else:
                self._kind, self._parts = opcode == OP_TEXT, [payload]
        else:
            raise ProtocolError(1002, f"reserved data opcode {opcode:#x}")


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise ProtocolError(1002, "close payload of one byte")
    code = (payload[0] << 8) | payload[1]
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "close reason is not UTF-8") from None
    return Close(code, reason)


class SinkConnection:
    """One open server-side websocket, used by one task.

    Attributes:
        path: the request target (path and query).
        close_code: the code of the client's close frame, 1006 if the connection
            ended without one, None while open (or when the close had no code).
        closed_by_client: whether the client sent a close frame.
    """

    def __init__(self, stream: trio.SocketStream, path: str) -> None:
        self.path = path
        self.close_code: int | None = None
        self.closed_by_client = False
        self._stream = stream
        self._reader = FrameReader()
        self._pending: list[Message] = []
        self._at = 0
        self._open = True
        self._closing: bytes | None = None  # the close frame to send once pending is read

    async def send(self, data: str | bytes) -> None:
        """Write one message (text for ``str``, binary for bytes). Raises
        ``trio.BrokenResourceError`` or ``trio.ClosedResourceError`` if the connection
        is gone."""
        if isinstance(data, str):
            wire = server_frame(OP_TEXT, data.encode("utf-8"))
        else:
            wire = server_frame(OP_BINARY, data)
        await self._stream.send_all(wire)

    async def receive(self) -> Message | None:
        """The next whole message, or None once the connection is over.

        Pings are answered with pongs on the way. A client's close frame is answered
        (a close frame echoing its code, then the TCP stream is closed) once every
        message before it was returned; so is a protocol error (a close frame with its
        code). Nothing the client sent before either is lost.
        """
        while self._at >= len(self._pending):
            self._pending, self._at = [], 0
            if self._closing is not None:
                reply, self._closing = self._closing, None
                await self._control(OP_CLOSE, reply)
                await trio.aclose_forcefully(self._stream)
            if not self._open:
                return None
            try:
                data = await self._stream.receive_some(_READ_SIZE)
            except _GONE:
                data = b""
            if not data:
                self._ended(1006)
                return None
            try:
                events = self._reader.feed(data)
            except ProtocolError as exc:
                events = exc.events
                self._closing = struct.pack("!H", exc.code) + exc.reason.encode()
                self._ended(exc.code)
            for event in events:
                if isinstance(event, Message):
                    self._pending.append(event)
                elif isinstance(event, Ping):
                    await self._control(OP_PONG, event.data)
                elif isinstance(event, Close):
                    self._closing = b"" if event.code is None else struct.pack("!H", event.code)
                    self.closed_by_client = True
                    self._ended(event.code)
                # a Pong needs nothing
        message = self._pending[self._at]
        self._at += 1
        return message

    def _ended(self, code: int | None) -> None:
        if self._open:
            self._open, self.close_code = False, code

    async def _control(self, opcode: int, payload: bytes) -> None:
        try:
            await self._stream.send_all(server_frame(opcode, payload))
        except _GONE:
            self._ended(1006)


Handler: TypeAlias = Callable[[SinkConnection], Awaitable[None]]


async def _handle(handler: Handler, handshake_timeout_s: float, stream: trio.SocketStream) -> None:
    try:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        request: Request | None = None
        with trio.move_on_after(handshake_timeout_s):
            while request is None:
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    return
                ws.receive_data(data)
                request = next((e for e in ws.events() if isinstance(e, Request)), None)
        if request is None:
            return
        await stream.send_all(ws.send(AcceptConnection()))
        await handler(SinkConnection(stream, request.target))
    except (*_GONE, wsproto.utilities.RemoteProtocolError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve_sink(
    handler: Handler,
    *,
    handshake_timeout_s: float = 10.0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve websockets on 127.0.0.1 (a free port, reported by ``task_status``) until
    cancelled, ``await handler(connection)`` for each accepted one.

    Every handshake is accepted (after ``handshake_timeout_s`` a silent client is
    dropped). The TCP stream is closed when the handler returns. A connection lost
    mid-way ends its handler's ``receive`` with None (or its ``send`` with
    ``trio.BrokenResourceError``, which only ends that connection).
    """
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_handle, handler, handshake_timeout_s), listeners)
