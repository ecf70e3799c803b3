"""The provider link: one websocket actor shared by every realtime provider.

It owns the connection to the provider and nothing provider-specific: a sans-IO
:class:`~voxtrio.codecs.wire.WireCodec` turns link inputs into wire messages and wire
messages into events and link signals.

Life of a link::

    connect ─▶ send connect_messages(instructions())  ─▶ [wait for Ready if the codec
    asks] ─▶ stream the outbox ─┬─ server closes / network error ─▶ ErrorEvent
                                │   (recoverable) ─▶ SessionReconnecting ─▶ backoff ─▶
                                │   connect again, instructions re-fetched (they carry
                                │   the transcript so far) ─▶ SessionReconnected
                                ├─ GoAway from the server ─▶ reconnect proactively
                                └─ handshake rejected (401/403) ─▶ one ErrorEvent
                                    (not recoverable), no retry, the link ends

The outbox: every input message waits in an ordered outbox and leaves it only once
``send_message`` returned, so a message that failed to go out is sent on the next
connection. Live input (a microphone, a realtime capture, push mode by default)
cannot wait: while disconnected, audio beyond ``outage_buffer_s`` is dropped oldest
first, counted and reported as ``AudioDropped(edge="link_buffer")``; controls are
never dropped. Input that can wait (``live_input=False``: a file read as fast as the
pipeline takes it) is never dropped: a full outbox pushes back on the input channel
while disconnected too. While connected, a full outbox always pushes back.

A close the server starts loses nothing on the wire: every message sent before the
link saw the close frame reaches the server, the rest stays in the outbox for the
next connection. (A server need not act on what it reads after sending its close
frame; the loopback server does not.) What the server sent before its close frame
reaches the session: the reader drains it even when the writer saw the close first.
An abrupt TCP drop can lose messages already handed to the kernel but never read by
the server -- the protocols have no acknowledgement to resend by.

A rejected handshake, a failed connect and a cancelled one close their socket at
once: the link owns the TCP (and TLS) stream it runs the websocket over.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import ssl
import typing
import urllib.parse
from collections.abc import Awaitable, Callable

import attrs
import trio
import trio_websocket

from ..audio import AudioFrame
from ..codecs.wire import GoAway, LinkSignal, Ready, ResumptionHandle, Verdict, WireCodec, excerpt
from ..messages import (
    AudioDropped,
    ErrorEvent,
    Event,
    FrameBatch,
    InputTranscriptionFailed,
    LinkInput,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
)
from .base import InstructionsSource

__all__ = ["ConnectTarget", "ReconnectPolicy", "run"]

#: Connection lifecycle: INFO for connects, WARNING for losses and retries, ERROR when
#: the link ends. Lines carry the provider's name and the URL without its query, with
#: every secret of the target redacted -- never a key, never transcript text.
log = logging.getLogger("voxtrio.link")


@attrs.frozen
class ReconnectPolicy:
    """How the link retries.

    Attributes:
        max_attempts: consecutive failed connection attempts before giving up
            (the counter resets once a connection is up).
        initial_backoff_s: the first retry delay.
        max_backoff_s: the cap of the exponential backoff.
        jitter: each delay is multiplied by a random factor in
            ``[1 - jitter, 1 + jitter]``, so many sessions do not retry in step.
        outage_buffer_s: audio kept while disconnected; older audio is dropped.
        connect_timeout_s: limit for one connection attempt (TCP + TLS + handshake).
        max_batch_frames: frames sent in one wire message at most.
    """

    max_attempts: int = 8
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    jitter: float = 0.3
    outage_buffer_s: float = 5.0
    connect_timeout_s: float = 10.0
    max_batch_frames: int = 10

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("initial_backoff_s", "max_backoff_s", "outage_buffer_s", "connect_timeout_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.max_batch_frames < 1:
            raise ValueError(f"max_batch_frames must be >= 1, got {self.max_batch_frames}")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        return float(base * rng.uniform(1 - self.jitter, 1 + self.jitter))


@attrs.frozen
class ConnectTarget:
    """Where and how to connect. ``headers`` and ``secrets`` never appear in a repr.

    Attributes:
        url: the websocket URL (may carry a key in its query for some providers:
            list that key in ``secrets`` so it is redacted from every message).
        headers: extra handshake headers.
        secrets: strings to redact from anything the link reports.
        ssl_context: for ``wss://``; a default verifying context when None.
        max_message_size: the largest server message accepted, in bytes.
    """

    url: str = attrs.field(repr=False)
    headers: tuple[tuple[bytes, bytes], ...] = attrs.field(default=(), repr=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)
    max_message_size: int = 16 * 1024 * 1024

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    @property
    def safe_url(self) -> str:
        """The URL without its query string (keys live there for some providers)."""
        return self.redact(self.url.split("?", 1)[0])


_NS = 1_000_000_000


def _duration_ns(frame: AudioFrame) -> int:
    return frame.samples * _NS // frame.sample_rate


class _Outbox:
    """Ordered queue of link inputs; audio kept as single frames so a batch can be
    cut at any frame and a failed send retried exactly."""

    def __init__(self, max_audio_s: float) -> None:
        self._items: collections.deque[LinkInput] = collections.deque()
        # Durations in integer nanoseconds: exact enough, and a frame adds and
        # removes the same amount, so the total never drifts (Fractions cost ~10 us
        # per frame here).
        self._audio_ns = 0
        self._max_audio_ns = round(max_audio_s * _NS)
        self._lot = trio.lowlevel.ParkingLot()
        self.dropped_frames = 0
        self.dropped_samples = 0
        self.unreported_frames = 0
        self.unreported_samples = 0

    def full(self) -> bool:
        return self._audio_ns >= self._max_audio_ns

    def put(self, msg: LinkInput) -> None:
        if isinstance(msg, FrameBatch):
            for frame in msg.frames:
                self._items.append(frame)
                self._audio_ns += _duration_ns(frame)
        else:
            self._items.append(msg)
            if isinstance(msg, AudioFrame):
                self._audio_ns += _duration_ns(msg)
        self._lot.unpark_all()

    def drop_oldest_audio(self) -> None:
        """Drop the oldest audio until the budget holds; controls stay, in order."""
        if not self.full():
            return
        kept: collections.deque[LinkInput] = collections.deque()
        while self._items and self._audio_ns > self._max_audio_ns:
            item = self._items.popleft()
            if isinstance(item, AudioFrame):
                self._audio_ns -= _duration_ns(item)
                self.dropped_frames += 1
                self.dropped_samples += item.samples
                self.unreported_frames += 1
                self.unreported_samples += item.samples
            else:
                kept.append(item)
        kept.extend(self._items)
        self._items = kept

    def peek(self, max_frames: int) -> tuple[LinkInput, int]:
        """The next message to send and how many outbox items it covers: a run of
        up to ``max_frames`` frames as one FrameBatch, or one control."""
        first = self._items[0]
        if not isinstance(first, AudioFrame):
            return first, 1
        run: list[AudioFrame] = []
        for item in self._items:
            if not isinstance(item, AudioFrame) or len(run) >= max_frames:
                break
            run.append(item)
        return FrameBatch(tuple(run)), len(run)

    def pop(self, n: int) -> None:
        for _ in range(n):
            item = self._items.popleft()
            if isinstance(item, AudioFrame):
                self._audio_ns -= _duration_ns(item)
        self._lot.unpark_all()

    async def wait_nonempty(self) -> None:
        while not self._items:
            await self._lot.park()

    async def wait_not_full(self, connected: Callable[[], bool]) -> None:
        """Wait while the outbox is full and ``connected()``: a connection that ends
        wakes this (:meth:`wake`), and from then on audio is dropped, not waited for."""
        while self.full() and connected():
            await self._lot.park()

    def wake(self) -> None:
        self._lot.unpark_all()


class _Link:
    def __init__(
        self,
        *,
        name: str,
        codec_factory: Callable[[], WireCodec],
        target: ConnectTarget,
        events: trio.MemorySendChannel[Event],
        instructions: InstructionsSource,
        policy: ReconnectPolicy,
        rng: random.Random,
        live_input: bool = True,
    ) -> None:
        self.name = name
        self.live_input = live_input
        self.codec_factory = codec_factory
        self.target = target
        self.events = events
        self.instructions = instructions
        self.policy = policy
        self.rng = rng
        self.outbox = _Outbox(policy.outage_buffer_s)
        self.connected = False
        #: The latest session-resumption handle the provider gave (kept across
        #: connections, passed to the next connect; never logged).
        self.resumption_handle: str | None = None

    async def emit(self, event: Event) -> None:
        await self.events.send(event)

    async def error(self, message: str, code: str, *, recoverable: bool = True) -> None:
        text = self.target.redact(message)
        await self.emit(ErrorEvent(text, code=code, source="link", recoverable=recoverable))

    def _redacted(self, event: Event) -> Event:
        """``event`` with the secrets taken out of the provider's own text (the
        service echoes a bad key in its error messages)."""
        if isinstance(event, ErrorEvent | InputTranscriptionFailed):
            message = self.target.redact(event.message)
            if message != event.message:
                return attrs.evolve(event, message=message)
        return event

    async def report_drops(self) -> None:
        box = self.outbox
        if box.unreported_frames:
            event = AudioDropped(
                "link_buffer", box.unreported_frames, box.unreported_samples, box.dropped_frames
            )
            box.unreported_frames = box.unreported_samples = 0
            await self.emit(event)

    async def pump(self, receive: trio.MemoryReceiveChannel[LinkInput]) -> None:
        """Input channel -> outbox. Backpressure while connected (or always, for
        input that can wait); live audio dropped oldest first while not."""
        with receive:
            async for msg in receive:
                await self.outbox.wait_not_full(lambda: self.connected or not self.live_input)
                self.outbox.put(msg)
                if self.live_input and not self.connected:
                    self.outbox.drop_oldest_audio()
                    await self.report_drops()

    async def serve(self) -> None:
        """Connect, run, reconnect; returns when the link gives up or is rejected.

        ``max_attempts`` bounds the consecutive failed attempts: from the start, the
        first attempt counts; after a lost connection, the reconnect attempts do.
        """
        failures = 0  # consecutive failed attempts
        retry = 0  # retries since the start, or since the connection was lost
        reconnecting = False  # a connection was up before
        reason = ""
        while True:
            if retry:
                delay = self.policy.backoff_s(retry, self.rng)
                log.warning(
                    "%s: retry %d in %.2f s (%s)",
                    self.name,
                    retry,
                    delay,
                    self.target.redact(reason),
                )
                await self.emit(SessionReconnecting(retry, delay, self.target.redact(reason)))
                await trio.sleep(delay)
            try:
                await self.connection(retry, reconnecting)
            except _Fatal as exc:
                log.error("%s: %s; not retrying", self.name, self.target.redact(str(exc)))
                await self.error(str(exc), exc.code, recoverable=False)
                return
            except _Retry as exc:
                reason = str(exc)
                if exc.was_up:
                    reconnecting = True
                    failures = 0
                    retry = 1
                    await self.error(reason, "connection_lost")
                    continue
                failures += 1
                if failures >= self.policy.max_attempts:
                    log.error("%s: giving up after %d failed attempts", self.name, failures)
                    await self.error(
                        f"giving up on {self.name} after {failures} failed attempts: {reason}",
                        "connection_failed",
                        recoverable=False,
                    )
                    return
                retry += 1

    async def connection(self, attempt: int, reconnecting: bool) -> None:
        """One connection's life; ends by raising _Retry or _Fatal.

        The websocket's background task runs in a nursery of this connection, and
        every outcome is carried out of it as a value, so what leaves this method is
        a plain ``_Retry``/``_Fatal`` (never an exception group) and no task of a
        dead connection survives it.
        """
        outcome: _Retry | _Fatal | None = None
        async with trio.open_nursery() as nursery:
            # The websocket's reader runs shielded, so that when this connection is
            # cancelled (the session closes) the close handshake can still complete:
            # the server sees a clean close within a round trip instead of a dead
            # reader making ``aclose`` wait out its timeout.
            background, shield = await nursery.start(_shielded_nursery)
            try:
                await self._connection_life(background, attempt, reconnecting)
            except (_Retry, _Fatal) as exc:
                outcome = exc
            finally:
                self.connected = False
                self.outbox.wake()
                shield.cancel()
        if outcome is not None:
            raise outcome
        raise AssertionError("a connection ends only with _Retry or _Fatal")  # pragma: no cover

    async def _open(
        self, background: trio.Nursery, codec: WireCodec
    ) -> tuple[trio_websocket.WebSocketConnection, trio.abc.Stream]:
        """Connect and do the websocket handshake; returns the websocket and its
        stream. Every failure leaves as a plain ``_Retry`` or ``_Fatal``."""
        target = self.target
        try:
            with trio.fail_after(self.policy.connect_timeout_s):
                return await self._handshake(background)
        except trio_websocket.ConnectionRejected as exc:
            status = exc.status_code
            if codec.classify_rejection(status) is Verdict.FATAL:
                hint = " (check the API key)" if status in (401, 403) else ""
                raise _Fatal(
                    f"{self.name} rejected the connection with HTTP {status}{hint}",
                    "handshake_rejected",
                ) from None
            raise _Retry(f"{self.name} rejected the handshake with HTTP {status}") from None
        except trio.TooSlowError:
            raise _Retry(
                f"cannot connect to {target.safe_url}: no handshake within "
                f"{self.policy.connect_timeout_s:g} s"
            ) from None
        except (trio_websocket.HandshakeError, OSError) as exc:
            raise _Retry(f"cannot connect to {target.safe_url}: {type(exc).__name__}") from None

    async def _handshake(
        self, background: trio.Nursery
    ) -> tuple[trio_websocket.WebSocketConnection, trio.abc.Stream]:
        """Open the TCP (and TLS) stream, then the websocket over it.

        The link opens the stream itself so that it can close it on every way out:
        trio-websocket leaves it open after a rejected handshake, after a handshake
        cancelled midway, and after a close the server started.
        """
        target = self.target
        host, port, resource, use_tls = _split_url(target.url)
        stream: trio.abc.Stream | None = None
        try:
            if use_tls:
                context = target.ssl_context or ssl.create_default_context()
                tls = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=context, https_compatible=True
                )
                stream = tls
                # TLS first, on its own: a failure here is clear (and a bad
                # certificate is final), where inside the websocket handshake it
                # would only show as a handshake that never completes.
                await _tls_handshake(tls, target.safe_url)
            else:
                stream = await trio.open_tcp_stream(host, port)
            # trio-websocket raises a rejected handshake in its reader task, that is
            # out of the nursery it is given; the guard keeps the exception and
            # cancels the wait for the handshake, so it is raised here instead.
            guard = _HandshakeGuard(background)
            ws: trio_websocket.WebSocketConnection | None = None
            with guard.scope:
                ws = await trio_websocket.wrap_client_stream(
                    typing.cast(trio.Nursery, guard),  # it calls start_soon only
                    stream,
                    _host_header(host, port, use_tls),
                    resource,
                    extra_headers=list(target.headers),
                    max_message_size=target.max_message_size,
                )
            if guard.failure is not None:
                raise guard.failure
            if ws is None:  # the connection ended before the handshake did
                raise _Retry(f"{self.name} closed the connection during the websocket handshake")
            return ws, stream
        except BaseException:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
            raise

    async def _connection_life(
        self, background: trio.Nursery, attempt: int, reconnecting: bool
    ) -> None:
        codec = self.codec_factory()
        ws, stream = await self._open(background, codec)
        was_up = False
        try:
            text = await self.instructions()
            handle = self.resumption_handle if codec.capabilities.resumption else None
            for wire in codec.connect_messages(text, resumption_handle=handle):
                await ws.send_message(wire)
            self.connected = was_up = True
            if reconnecting:
                log.info("%s: reconnected to %s", self.name, self.target.safe_url)
                await self.emit(SessionReconnected(self.name, attempt, len(text)))
            else:
                log.info("%s: connected to %s", self.name, self.target.safe_url)
                await self.emit(SessionConnected(self.name, len(text)))
            ended = await self.run_connected(ws, codec)
        except trio_websocket.ConnectionClosed as exc:
            ended = exc
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1.0):
                    await ws.aclose()
                # After a close the server started, trio-websocket's aclose() leaves
                # the stream open (waiting for the server's TCP close): close it.
                await trio.aclose_forcefully(stream)
        if isinstance(ended, _Reconnect):
            raise _Retry(str(ended), was_up=True)
        reason = ended.reason
        code = reason.code if reason is not None else None
        detail = f"{self.name} closed the connection (code {code}"
        detail += f": {excerpt(reason.reason)})" if reason is not None and reason.reason else ")"
        if codec.classify_close(code, reason.reason if reason is not None else None) is (
            Verdict.FATAL
        ):
            raise _Fatal(detail, "connection_refused")
        raise _Retry(detail, was_up=was_up)

    async def run_connected(
        self, ws: trio_websocket.WebSocketConnection, codec: WireCodec
    ) -> trio_websocket.ConnectionClosed | _Reconnect:
        """Read and write until the connection ends; returns why it ended."""
        ready = trio.Event()
        if not codec.wait_for_ready:
            ready.set()
        ended: list[trio_websocket.ConnectionClosed | _Reconnect] = []

        async def reader() -> None:
            while True:
                data = await ws.get_message()
                for item in codec.decode(data):
                    if isinstance(item, Ready):
                        ready.set()
                    elif isinstance(item, GoAway):
                        left = item.time_left_s
                        left_text = "" if left is None else f", {left:.1f} s left"
                        raise _Reconnect(f"{self.name} asked to reconnect (goAway{left_text})")
                    elif isinstance(item, ResumptionHandle):
                        if item.resumable or item.handle is None:
                            self.resumption_handle = item.handle
                    elif isinstance(item, LinkSignal):
                        pass  # a signal this link does not act on
                    else:
                        await self.emit(self._redacted(item))

        async def writer() -> None:
            await ready.wait()
            box = self.outbox
            while True:
                await box.wait_nonempty()
                msg, count = box.peek(self.policy.max_batch_frames)
                for wire in codec.encode(msg):
                    await ws.send_message(wire)
                box.pop(count)

        async def read(nursery: trio.Nursery) -> None:
            try:
                await reader()
            except (trio_websocket.ConnectionClosed, _Reconnect) as exc:
                ended.append(exc)
                nursery.cancel_scope.cancel()

        async def write(nursery: trio.Nursery) -> None:
            try:
                await writer()
            except trio_websocket.ConnectionClosed as exc:
                ended.append(exc)
                # What the server sent before it closed may still wait in the
                # websocket's queue, or in the reader's hands while it waits to emit
                # (backpressure): the reader drains it and ends at the close. Bounded,
                # for a close that never completes.
                await trio.sleep(self.policy.connect_timeout_s)
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, nursery)
            nursery.start_soon(write, nursery)
        if not ended:  # pragma: no cover - both loops run until one of them ends
            raise AssertionError("the connection's loops ended without a reason")
        return ended[0]


def _split_url(url: str) -> tuple[str, int, str, bool]:
    """``(host, port, resource, tls)`` of a ``ws://`` or ``wss://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("the link needs a ws:// or wss:// URL with a host")
    tls = parts.scheme == "wss"
    port = parts.port if parts.port is not None else (443 if tls else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return parts.hostname, port, resource, tls


def _host_header(host: str, port: int, tls: bool) -> str:
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return host if port == (443 if tls else 80) else f"{host}:{port}"


class _HandshakeGuard:
    """Stands in for the nursery trio-websocket starts its reader task in.

    The task runs in ``nursery``; a handshake failure it raises (a rejection) is
    kept in :attr:`failure` and cancels :attr:`scope`, which the caller wraps
    around the wait for the handshake. The task ending (the connection closed)
    cancels :attr:`scope` too: a handshake still waiting then can never complete.
    Anything else it raises propagates (a bug).
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.scope = trio.CancelScope()
        self.failure: trio_websocket.HandshakeError | None = None

    def start_soon(self, fn: Callable[[], Awaitable[None]], name: object = None) -> None:
        self._nursery.start_soon(self._run, fn, name=name)

    async def _run(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except trio_websocket.HandshakeError as exc:
            self.failure = exc
        self.scope.cancel()  # no effect once the handshake is done


async def _tls_handshake(stream: trio.SSLStream[trio.SocketStream], safe_url: str) -> None:
    """Complete the TLS handshake; a certificate that does not verify is final."""
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "not trusted"
            raise _Fatal(
                f"the TLS certificate of {safe_url} does not verify: {excerpt(str(reason))}",
                "tls_verification_failed",
            ) from None
        detail = f"{type(cause).__name__}" if cause is not None else "connection closed"
        raise _Retry(f"TLS handshake with {safe_url} failed: {detail}") from None


async def _shielded_nursery(
    task_status: trio.TaskStatus[tuple[trio.Nursery, trio.CancelScope]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A nursery that outside cancellation does not reach; ends when its scope is
    cancelled by the caller (who must always do so, in a ``finally``)."""
    with trio.CancelScope(shield=True) as scope:
        async with trio.open_nursery() as nursery:
            task_status.started((nursery, scope))
            await trio.sleep_forever()


class _Retry(Exception):
    """This connection failed; ``was_up`` if it had been established."""

    def __init__(self, message: str, *, was_up: bool = False) -> None:
        super().__init__(message)
        self.was_up = was_up


class _Fatal(Exception):
    """Do not retry."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class _Reconnect(Exception):
    """The server asked us to move to a new connection."""


async def run(
    receive: trio.MemoryReceiveChannel[LinkInput],
    events: trio.MemorySendChannel[Event],
    *,
    name: str,
    codec_factory: Callable[[], WireCodec],
    target: ConnectTarget,
    instructions: InstructionsSource,
    policy: ReconnectPolicy | None = None,
    seed: int | None = None,
    live_input: bool = True,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a provider link until cancelled, rejected, or out of retries.

    Args:
        receive: converted audio (``FrameBatch``) and controls, in order.
        events: where decoded events, errors and connection events go.
        name: the provider's name, for events and messages.
        codec_factory: makes a fresh codec for each connection.
        target: URL, headers and secrets.
        instructions: fetched on every (re)connect.
        policy: reconnect and buffering policy.
        seed: seeds the backoff jitter (tests).
        live_input: the audio is live and cannot wait (drop the oldest beyond
            ``policy.outage_buffer_s`` while disconnected); False: it can wait, so
            the link pushes back instead and never drops.

    Reports readiness at once: audio sent before the first connection is up waits
    in the outbox. Returns after a non-recoverable ``ErrorEvent`` (handshake
    rejected, out of retries). Closes ``events`` on exit.
    """
    link = _Link(
        name=name,
        codec_factory=codec_factory,
        target=target,
        events=events,
        instructions=instructions,
        policy=policy or ReconnectPolicy(),
        rng=random.Random(seed),
        live_input=live_input,
    )
    with events:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.pump, receive)
            task_status.started()
            await link.serve()
            nursery.cancel_scope.cancel()
