"""The websocket under the link: wsproto driven over a trio stream the link owns.

:func:`open_websocket` opens the TCP (and TLS) stream, does the websocket handshake,
and yields a :class:`WebSocket` to read and write whole messages. The link owns the
stream, so it is closed on every way out -- a refused handshake, a failed or
cancelled connect, a close either side started, a network error -- and the close
handshake is the link's own code: on the way out (cancellation included) it sends a
close frame, waits a bounded time for the server's reply, then closes the stream.

Why wsproto directly rather than trio-websocket: driving wsproto needs no
workaround (the earlier link impersonated a nursery to catch a handshake rejection
raised in a background task, ran a shielded nursery so the close could complete,
and closed the stream by hand after ``aclose``), and it costs nothing:
``benchmarks/bench_transport.py`` measures both against the loopback server in one
run (best of 7 interleaved rounds on a shared 2-core machine: handshake+close
2.88 vs 2.83 ms, sending 10k 2 KB messages 5,991 vs 5,923 msg/s, receiving 15,093
vs 12,948 msg/s -- on par, within the machine's noise).

One background task per connection (the *pump*, in a nursery of
:func:`open_websocket`) reads the socket, answers pings and the server's close at
once, and queues complete messages for :meth:`WebSocket.receive`. The queue holds at
most ``queue_messages`` messages: when whoever receives is slow, the pump stops
reading and TCP pushes back on the server.

A second task (the *keepalive*) watches the pump: when nothing was received for
``keepalive_interval_s`` while the pump was reading (a pump held up by a slow
receiver is backpressure, not silence), it sends a ping (from a task of its own, so a writer stuck
behind a server that stopped reading cannot hold it up), and when still nothing at
all arrived ``keepalive_timeout_s`` later it ends the connection ("lost", no close
code) and closes the stream, which wakes a send stuck in the kernel. A silent
server is therefore noticed at most interval + timeout after its last byte.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import struct
from collections.abc import AsyncIterator

import numpy as np
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from ...codecs.wire import excerpt
from .guard import is_loopback_address, is_loopback_name
from .target import (
    ConnectFailed,
    ConnectionClosed,
    ConnectTarget,
    HandshakeRejected,
    TlsUntrusted,
    host_header,
    split_url,
)

__all__ = [
    "ConnectFailed",
    "ConnectTarget",
    "ConnectionClosed",
    "HandshakeRejected",
    "TlsUntrusted",
    "WebSocket",
    "frame_header",
    "xor_mask",
    "open_websocket",
]

_READ_SIZE = 65536
_KEYS = 1024  # bytes of mask keys drawn from os.urandom at a time (256 frames)


def frame_header(first: int, n: int, *, masked: bool) -> bytes:
    """A frame's header (RFC 6455 section 5.2) up to the masking key: ``first`` is
    the FIN/RSV/opcode byte, ``n`` the payload length (7-, 16- or 64-bit form);
    ``masked``: a client's frame (the mask bit set; the key follows the header)."""
    mask = 0x80 if masked else 0
    if n < 126:
        return bytes((first, mask | n))
    if n < 65536:
        return struct.pack("!BBH", first, mask | 126, n)
    return struct.pack("!BBQ", first, mask | 127, n)


def xor_mask(data: bytes | bytearray, key: bytes, offset: int = 0, n: int | None = None) -> bytes:
    """``data[offset:offset + n]`` XORed with the 4-byte ``key`` repeated: masking
    and unmasking are the same operation (numpy: the key tiled, one vector XOR)."""
    n = len(data) - offset if n is None else n
    if n == 0:
        return b""
    tiled = np.frombuffer(key * (n // 4 + 1), np.uint8, n)
    return (np.frombuffer(data, np.uint8, n, offset) ^ tiled).tobytes()


class _DataFrames:
    """Client data frames (RFC 6455 section 5.2), built here rather than by wsproto.

    A whole text or binary message is one final frame: header, a fresh 4-byte
    masking key, and the payload XORed with the key (numpy: wsproto masks in Python,
    ~10 us for a 1.3 KB message, ~45 us for 12.8 KB, against ~2.5 and ~5 us here).
    Only complete messages with no extension are framed here, so wsproto keeps no
    state about them: it still does the handshake, reads every frame, and writes the
    control frames (ping, pong, close). The keys come from ``os.urandom``, as the RFC
    asks (unpredictable), drawn 256 at a time.
    """

    __slots__ = ("_at", "_keys")

    def __init__(self) -> None:
        self._keys = b""
        self._at = 0

    def _key(self) -> bytes:
        at = self._at
        if at >= len(self._keys):
            self._keys, at = os.urandom(_KEYS), 0
        self._at = at + 4
        return self._keys[at : at + 4]

    def frame(self, data: str | bytes) -> bytes:
        """The wire bytes of one whole message (text for ``str``, binary for bytes)."""
        if isinstance(data, str):
            payload, first = data.encode("utf-8"), 0x81  # FIN + text
        else:
            payload, first = bytes(data), 0x82  # FIN + binary
        key = self._key()
        return frame_header(first, len(payload), masked=True) + key + xor_mask(payload, key)


#: DEBUG lines for the websocket's life (handshake, closes). The URL is logged
#: without its query and with the target's secrets redacted; headers never.
log = logging.getLogger("voxtrio.link.transport")


class WebSocket:
    """An open client websocket: whole messages in and out.

    :meth:`send` and :meth:`receive` may run in two tasks at once. Both raise
    :class:`ConnectionClosed` once the connection is closed; :meth:`receive` first
    returns every message that arrived before the close.
    """

    def __init__(
        self,
        ws: wsproto.WSConnection,
        stream: trio.abc.Stream,
        max_message_size: int,
        queue: int,
        *,
        own_frames: bool = True,
    ) -> None:
        self._ws = ws
        self._stream = stream
        # Data frames built by _DataFrames (no extension was negotiated), else wsproto's.
        self._frames = _DataFrames() if own_frames else None
        self._max_message_size = max_message_size
        self._send_lock = trio.Lock()
        self._in_tx, self._in_rx = trio.open_memory_channel[str | bytes](queue)
        self._closed: ConnectionClosed | None = None
        self._close_done = trio.Event()  # the close handshake completed (or failed)
        self._rx_seen = trio.Event()  # set by the pump whenever bytes arrive
        self._ping_pending = False
        self._delivering = False  # the pump waits for room in the queue (backpressure)
        #: pongs received (tests and diagnostics)
        self.pongs = 0

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the connection is closed, or None while it is open."""
        return self._closed

    async def send(self, data: str | bytes) -> None:
        """Write one message. Raises :class:`ConnectionClosed` (the message was not
        written) once a close was seen or started.

        A checkpoint: cancelled before the write (waiting for the lock included),
        nothing is written.
        """
        # One scheduler pass per message, not two: a free lock is taken without one
        # (checking for a cancel only), and the pass comes after the write (see
        # :meth:`_write`); that pass is when the pump reads what the server sent,
        # a close included, before the next message is written.
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        else:
            try:
                await trio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                lock.release()
                raise
        try:
            if self._closed is not None or self._ws.state is not ConnectionState.OPEN:
                raise self._closed or ConnectionClosed(None, None)
            if self._frames is not None:
                wire = self._frames.frame(data)
            else:
                event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data)
                wire = self._ws.send(event)
            try:
                await self._write(wire)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._ended(None, "connection lost while sending")
                raise self._closed or ConnectionClosed(None, None) from None
        finally:
            lock.release()

    async def _write(self, wire: bytes) -> None:
        """Write all of ``wire`` (the send lock held). On a plain TCP stream, first
        straight into the socket (the kernel takes a live frame at once): trio's
        ``send_all`` and its context managers, ~70k instructions a message, are only
        for what the kernel did not take. The pass after the write is kept: it is
        when the pump reads what the server sent meanwhile (see :meth:`send`)."""
        stream = self._stream
        if isinstance(stream, trio.SocketStream):
            fd = stream.socket.fileno()  # -1 once closed: never a reused descriptor
            if fd >= 0:
                try:
                    sent = os.write(fd, wire)
                except BlockingIOError:
                    sent = 0
                except OSError as exc:  # reset, broken pipe: the connection is gone
                    raise trio.BrokenResourceError(str(exc)) from None
                if sent == len(wire):
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                wire = wire[sent:]
        await stream.send_all(wire)

    async def receive(self) -> str | bytes:
        """The next message; raises :class:`ConnectionClosed` after the last one."""
        try:
            return await self._in_rx.receive()
        except trio.EndOfChannel:
            raise self._closed or ConnectionClosed(None, None) from None

    # ------------------------------------------------------------- internals

    def _ended(self, code: int | None, reason: str | None) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(None if code == 1006 else code, reason)
        self._in_tx.close()
        self._close_done.set()

    async def _send_raw(self, payload: bytes) -> None:
        async with self._send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(payload)

    async def _pump(self) -> None:
        """Socket -> wsproto -> the message queue, until the connection ends."""
        parts: list[str | bytes] = []
        size = 0
        try:
            while True:
                for event in self._ws.events():  # first: what came with the handshake
                    if isinstance(event, TextMessage | BytesMessage):
                        piece = event.data if isinstance(event.data, str) else bytes(event.data)
                        parts.append(piece)
                        size += len(piece)
                        if size > self._max_message_size:
                            await self._close(1009, "message too big")
                            return
                        if event.message_finished:
                            await self._deliver(parts)
                            parts, size = [], 0
                    elif isinstance(event, Ping):
                        await self._send_raw(self._ws.send(event.response()))
                    elif isinstance(event, Pong):
                        self.pongs += 1
                    elif isinstance(event, CloseConnection):
                        if self._closed is None:  # before any await: a sender sees it
                            code = None if event.code == 1006 else event.code
                            self._closed = ConnectionClosed(code, event.reason or None)
                        if self._ws.state is ConnectionState.REMOTE_CLOSING:
                            await self._send_raw(self._ws.send(event.response()))
                        self._ended(event.code, event.reason or None)
                        return
                try:
                    data = await self._stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self._ended(None, "connection lost")
                    return
                self._rx_seen.set()
                self._ws.receive_data(bytes(data))
        except wsproto.utilities.RemoteProtocolError as exc:
            self._ended(1002, f"websocket protocol error: {excerpt(str(exc))}")
        finally:
            self._ended(None, "connection ended")

    async def _keepalive(
        self, nursery: trio.Nursery, interval_s: float, timeout_s: float, safe_url: str
    ) -> None:
        """Ping when idle for ``interval_s``; end the connection when nothing at all
        arrives within ``timeout_s`` after that."""
        while self._closed is None:
            seen = self._rx_seen = trio.Event()
            with trio.move_on_after(interval_s):
                await seen.wait()
                continue  # something arrived: not idle
            if self._delivering:
                continue  # our reader is slow, the server is not silent: not idle
            if not self._ping_pending:  # a ping stuck behind a full socket is enough
                nursery.start_soon(self._ping)
            with trio.move_on_after(timeout_s):
                await seen.wait()
            if not seen.is_set() and not self._delivering and self._closed is None:
                reason = f"no answer to a keepalive ping within {timeout_s:g} s"
                log.warning("websocket to %s: %s; dropping it", safe_url, reason)
                self._ended(None, reason)
                # Wakes a send or receive stuck on this stream (ClosedResourceError).
                await trio.aclose_forcefully(self._stream)
                return

    async def _ping(self) -> None:
        self._ping_pending = True
        try:
            if self._closed is None and self._ws.state is ConnectionState.OPEN:
                await self._send_raw(self._ws.send(Ping(payload=b"voxtrio")))
        finally:
            self._ping_pending = False

    async def _deliver(self, parts: list[str | bytes]) -> None:
        first = parts[0]
        joined = (
            "".join(p for p in parts if isinstance(p, str))
            if isinstance(first, str)
            else b"".join(p for p in parts if isinstance(p, bytes))
        )
        if self._closed is not None or self._ws.state is not ConnectionState.OPEN:
            return  # after our own close frame: nobody reads it any more
        self._delivering = True
        try:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._in_tx.send(joined)
        finally:
            self._delivering = False
            self._rx_seen.set()  # the pump reads again: the idle time starts over

    async def _close(self, code: int, reason: str) -> None:
        """Start the close handshake (if the connection is still open)."""
        if self._ws.state is ConnectionState.OPEN:
            if self._closed is None:
                self._closed = ConnectionClosed(code, reason)
            await self._send_raw(self._ws.send(CloseConnection(code=code, reason=reason)))
        self._in_tx.close()  # what arrives from now on is not read

    async def aclose(self, timeout_s: float) -> None:
        """Close: send a close frame, wait up to ``timeout_s`` for the reply. Shielded
        from cancellation (bounded by the timeout), so it completes promptly when
        the task that owns the connection is cancelled."""
        with trio.CancelScope(shield=True):
            await self._close(1000, "")
            with trio.move_on_after(timeout_s):
                await self._close_done.wait()


@contextlib.asynccontextmanager
async def open_websocket(
    target: ConnectTarget,
    *,
    timeout_s: float,
    close_timeout_s: float = 1.0,
    queue: int = 16,
    keepalive_interval_s: float = 10.0,
    keepalive_timeout_s: float = 10.0,
) -> AsyncIterator[WebSocket]:
    """Connect to ``target`` and yield the open websocket; closed on the way out.

    The connect (TCP, TLS, handshake) is bounded by ``timeout_s``; once open, the
    keepalive (see the module docstring) ends a connection on which nothing arrived
    for ``keepalive_interval_s + keepalive_timeout_s``.

    Raises:
        HandshakeRejected: the server refused the upgrade (with its status).
        TlsUntrusted: the certificate does not verify.
        ConnectFailed: anything else that kept the websocket from opening.
    """
    host, port, resource, use_tls = split_url(target.url)
    stream: trio.abc.Stream | None = None
    try:
        try:
            with trio.fail_after(timeout_s):
                stream = await _open_stream(target, host, port, use_tls)
                ws, plain = await _handshake(
                    stream, target, host_header(host, port, use_tls), resource
                )
        except trio.TooSlowError:
            raise ConnectFailed(
                f"cannot connect to {target.safe_url}: no handshake within {timeout_s:g} s"
            ) from None
        log.debug("websocket open to %s", target.safe_url)
        socket = WebSocket(ws, stream, target.max_message_size, queue, own_frames=plain)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(socket._pump)
            nursery.start_soon(
                socket._keepalive,
                nursery,
                keepalive_interval_s,
                keepalive_timeout_s,
                target.safe_url,
            )
            try:
                yield socket
            finally:
                await socket.aclose(close_timeout_s)
                nursery.cancel_scope.cancel()
                code = socket.closed.code if socket.closed is not None else None
                log.debug("websocket to %s closed (code %s)", target.safe_url, code)
    finally:
        if stream is not None:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


async def _open_stream(
    target: ConnectTarget, host: str, port: int, use_tls: bool
) -> trio.abc.Stream:
    try:
        if not use_tls:
            plain = await trio.open_tcp_stream(host, port)
            if is_loopback_name(host) and not target.allow_insecure:
                _check_loopback_peer(plain, target.safe_url)
            return plain
        context = target.ssl_context or ssl.create_default_context()
        tls = await trio.open_ssl_over_tcp_stream(
            host, port, ssl_context=context, https_compatible=True
        )
    except OSError as exc:
        raise ConnectFailed(f"cannot connect to {target.safe_url}: {type(exc).__name__}") from None
    try:
        # TLS first, on its own: a failure here is clear (and a bad certificate is
        # final), where inside the websocket handshake it would only show as a
        # handshake that never completes.
        await _tls_handshake(tls, target.safe_url)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(tls)
        raise
    return tls


def _check_loopback_peer(stream: trio.SocketStream, safe_url: str) -> None:
    """A cleartext connection to ``localhost`` must have reached the loopback
    (whatever the resolver said) before the handshake, key and all, is written."""
    peer = str(stream.socket.getpeername()[0])
    if not is_loopback_address(peer):
        stream.socket.close()
        raise ConnectFailed(f"cannot connect to {safe_url}: it resolved to a non-loopback address")


async def _tls_handshake(stream: trio.SSLStream[trio.SocketStream], safe_url: str) -> None:
    """Complete the TLS handshake; a certificate that does not verify is final."""
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "not trusted"
            raise TlsUntrusted(
                f"the TLS certificate of {safe_url} does not verify: {excerpt(str(reason))}"
            ) from None
        detail = f"{type(cause).__name__}" if cause is not None else "connection closed"
        raise ConnectFailed(f"TLS handshake with {safe_url} failed: {detail}") from None


async def _handshake(
    stream: trio.abc.Stream, target: ConnectTarget, host: str, resource: str
) -> tuple[wsproto.WSConnection, bool]:
    """Send the upgrade request and read the answer: accepted (with whether the
    connection has no extension: plain frames), or refused."""
    ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    log.debug("websocket handshake with %s", target.safe_url)
    request = Request(host=host, target=resource, extra_headers=list(target.headers))
    try:
        await stream.send_all(ws.send(request))
        status: int | None = None
        while True:
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    # No extension offered, so none accepted; were one active, its
                    # frames would be wsproto's to build.
                    return ws, not event.extensions
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeRejected(status)
                elif isinstance(event, RejectData) and event.body_finished:
                    raise HandshakeRejected(status or 0)
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                if status is not None:
                    raise HandshakeRejected(status)
                raise ConnectFailed(
                    "the server closed the connection during the websocket handshake"
                )
            ws.receive_data(bytes(data))
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ConnectFailed(
            f"the connection failed during the websocket handshake: {type(exc).__name__}"
        ) from None
    except wsproto.utilities.RemoteProtocolError as exc:
        raise ConnectFailed(f"bad websocket handshake answer: {excerpt(str(exc))}") from None
