"""One link's state and one connection's life: handshake, connect messages, then a
reader and a writer until the connection ends (see :mod:`voxtrio.actors.link`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import trio

from ...codecs.wire import GoAway, LinkSignal, Ready, ResumptionHandle, Verdict, WireCodec, excerpt
from ...messages import (
    ErrorEvent,
    Event,
    InputTranscriptionFailed,
    LinkInput,
    SendText,
    SessionConnected,
    SessionReconnected,
    ToolResult,
)
from ..base import DropCounter, InstructionsSource
from .outbox import Outbox
from .retry import Fatal, ReconnectPolicy, Retry
from .transport import (
    ConnectFailed,
    ConnectionClosed,
    ConnectTarget,
    HandshakeRejected,
    TlsUntrusted,
    WebSocket,
    open_websocket,
)

__all__ = ["Link"]

log = logging.getLogger("voxtrio.link")


class _GoAway(Exception):
    """The server asked us to move to a new connection."""


class Link:
    """The state a link keeps across connections, and one connection's life."""

    def __init__(
        self,
        *,
        name: str,
        codec_factory: Callable[[], WireCodec],
        target: ConnectTarget,
        events: trio.MemorySendChannel[Event],
        instructions: InstructionsSource,
        policy: ReconnectPolicy,
        live_input: bool = True,
        base_instructions: str | None = None,
    ) -> None:
        self.name = name
        #: Sent instead of ``instructions()`` on a connection that resumes: the
        #: provider kept the conversation, so the transcript is not folded in again.
        self.base_instructions = base_instructions
        self.live_input = live_input
        self.codec_factory = codec_factory
        self.target = target
        self.events = events
        self.instructions = instructions
        self.policy = policy
        self.drops = DropCounter("link_buffer")
        self.outbox = Outbox(policy.outage_buffer_s, self.drops)
        self.connected = False
        #: The provider answered on the current connection (it counts as up).
        self.confirmed = False
        #: The latest session-resumption handle the provider gave (kept across
        #: connections, passed to the next connect; never logged).
        self.resumption_handle: str | None = None
        self._got_ready = False  # this connection saw Ready (or needs none)

    # ------------------------------------------------------------- reporting

    async def emit(self, event: Event) -> None:
        await self.events.send(event)

    async def error(self, message: str, code: str, recoverable: bool = True) -> None:
        text = self.target.redact(message)
        await self.emit(ErrorEvent(text, code=code, source="link", recoverable=recoverable))

    def _redacted(self, event: Event) -> Event:
        """``event`` with the secrets taken out of the provider's own text (a
        service may echo a bad key in its error messages)."""
        if isinstance(event, ErrorEvent | InputTranscriptionFailed):
            message = self.target.redact(event.message)
            if message != event.message:
                return attrs.evolve(event, message=message)
        return event

    # ------------------------------------------------------------- input side

    async def pump(self, receive: trio.MemoryReceiveChannel[LinkInput]) -> None:
        """Input channel -> outbox. Backpressure while connected (or always, for
        input that can wait); live audio dropped oldest first while not."""
        with receive:
            async for msg in receive:
                await self.outbox.wait_not_full(lambda: self.connected or not self.live_input)
                self.outbox.put(msg)
                if self.live_input and not self.connected:
                    self.outbox.drop_oldest_audio()
                    report = self.drops.report()
                    if report is not None:
                        await self.emit(report)

    # ------------------------------------------------------------- one connection

    def _resumes(self, codec: WireCodec) -> bool:
        """Whether the next connection resumes the provider's session."""
        return codec.capabilities.resumption and self.resumption_handle is not None

    async def connection(self, attempt: int, reconnecting: bool) -> None:
        """One connection's life; ends by raising :class:`Retry` or :class:`Fatal`.

        Every outcome inside the websocket's nursery is carried out as a value, so
        what leaves this method is a plain exception, never a group.
        """
        codec = self.codec_factory()
        outcome: Retry | Fatal
        try:
            async with open_websocket(
                self.target,
                timeout_s=self.policy.connect_timeout_s,
                keepalive_interval_s=self.policy.keepalive_interval_s,
                keepalive_timeout_s=self.policy.keepalive_timeout_s,
            ) as ws:
                outcome = await self._life(ws, codec, attempt, reconnecting)
        except HandshakeRejected as exc:
            status = exc.status
            if codec.classify_rejection(status) is Verdict.FATAL:
                hint = " (check the API key)" if status in (401, 403) else ""
                raise Fatal(
                    f"{self.name} rejected the connection with HTTP {status}{hint}",
                    "handshake_rejected",
                ) from None
            raise Retry(f"{self.name} rejected the handshake with HTTP {status}") from None
        except TlsUntrusted as exc:
            raise Fatal(str(exc), "tls_verification_failed") from None
        except ConnectFailed as exc:
            raise Retry(f"{self.name}: {exc}") from None
        finally:
            self.connected = False
            self.outbox.connection_down(resume=self._resumes(codec))
        raise outcome

    async def _life(
        self, ws: WebSocket, codec: WireCodec, attempt: int, reconnecting: bool
    ) -> Retry | Fatal:
        """Configure the connection, then run it; returns how it ended."""
        # Up only once the provider answered (see ReconnectPolicy).
        self.confirmed = self._got_ready = False
        handle = self.resumption_handle if codec.capabilities.resumption else None
        try:
            if handle is not None and self.base_instructions is not None:
                text = self.base_instructions
            else:
                text = await self.instructions()
            for wire in codec.connect_messages(text, resumption_handle=handle):
                await ws.send(wire)
            self.outbox.connection_up(retain=codec.capabilities.resumption)
            self.connected = True

            async def announce() -> None:  # once ready: a refused setup is no reconnect
                if reconnecting:
                    log.info("%s: reconnected to %s", self.name, self.target.safe_url)
                    resumed = handle is not None
                    await self.emit(SessionReconnected(self.name, attempt, len(text), resumed))
                else:
                    log.info("%s: connected to %s", self.name, self.target.safe_url)
                    await self.emit(SessionConnected(self.name, len(text)))

            ended: ConnectionClosed | _GoAway = await self._run_connected(ws, codec, announce)
        except ConnectionClosed as exc:
            ended = exc
        refused = isinstance(ended, ConnectionClosed) and ended.code is not None
        if handle is not None and not self._got_ready and refused:
            # The server closed a resumed connection before it was ready: the
            # resumption was refused (an expired or unknown handle). Start a fresh
            # session next time, seeded with the transcript, and resend nothing (a
            # plain drop keeps the handle: it says nothing of it).
            log.info("%s: resumption refused; the next connection starts afresh", self.name)
            self.resumption_handle = None
            self.outbox.forget_resends()
        if isinstance(ended, _GoAway):
            return Retry(str(ended), was_up=True, planned=True)
        if ended.code is None:
            detail = f"lost the connection to {self.name} ({ended.reason or 'no close frame'})"
        else:
            detail = f"{self.name} closed the connection (code {ended.code}"
            detail += f": {excerpt(ended.reason)})" if ended.reason else ")"
        if codec.classify_close(ended.code, ended.reason) is Verdict.FATAL:
            return Fatal(detail, "connection_refused")
        return Retry(detail, was_up=self.confirmed)

    async def _run_connected(
        self, ws: WebSocket, codec: WireCodec, announce: Callable[[], Awaitable[None]]
    ) -> ConnectionClosed | _GoAway:
        """Read and write until the connection ends; returns why it ended.
        ``announce`` reports the connection once it is ready, before any input."""
        ready = trio.Event()
        if not codec.wait_for_ready:
            ready.set()
            self._got_ready = True
            await announce()
        ended: list[ConnectionClosed | _GoAway] = []

        async def read(scope: trio.CancelScope) -> None:
            try:
                await self._reader(ws, codec, ready, announce)
            except (ConnectionClosed, _GoAway) as exc:
                ended.append(exc)
                scope.cancel()

        async def write(scope: trio.CancelScope) -> None:
            try:
                await ready.wait()
                await self._writer(ws, codec)
            except ConnectionClosed as exc:
                ended.append(exc)
                # What the server sent before it closed is still queued, or in the
                # reader's hands while it waits to emit (backpressure): the reader
                # drains it and ends at the close. Bounded, for a reader that
                # never gets rid of what it holds.
                await trio.sleep(self.policy.connect_timeout_s)
                scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, nursery.cancel_scope)
            nursery.start_soon(write, nursery.cancel_scope)
        if not ended:  # pragma: no cover - both loops run until one of them ends
            raise AssertionError("the connection's loops ended without a reason")
        return ended[0]

    async def _reader(
        self,
        ws: WebSocket,
        codec: WireCodec,
        ready: trio.Event,
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        while True:
            data = await ws.receive()
            self.confirmed = self.confirmed or not codec.wait_for_ready
            for item in codec.decode(data):
                if isinstance(item, Ready):
                    if not ready.is_set():
                        await announce()  # before anything this connection reports
                    ready.set()
                    self._got_ready = self.confirmed = True
                elif isinstance(item, GoAway):
                    left = item.time_left_s
                    left_text = "" if left is None else f", {left:.1f} s left"
                    raise _GoAway(f"{self.name} asked to reconnect (goAway{left_text})")
                elif isinstance(item, ResumptionHandle):
                    # Not resumable right now still names the handle to keep.
                    self.resumption_handle = item.handle
                    # The consumed index belongs to a resumable handle's state: one
                    # from an update without a usable handle would free messages the
                    # kept handle's session does not hold.
                    index = item.last_consumed_index
                    if item.resumable and item.handle is not None and index is not None:
                        self.outbox.consume(index)
                elif isinstance(item, LinkSignal):
                    pass  # a signal this link does not act on
                else:
                    await self.emit(self._redacted(item))

    async def _writer(self, ws: WebSocket, codec: WireCodec) -> None:
        """Outbox -> websocket. An input leaves the outbox only once all its wire
        messages were written; a text or tool result is then reported, once."""
        box = self.outbox
        while True:
            await box.wait_nonempty()
            peeked = box.peek(self.policy.max_batch_frames)
            # A resend is the wire messages written before, as they were: this
            # connection's codec may have other state than the one that wrote them.
            wires = peeked.wires if peeked.wires is not None else codec.encode(peeked.message)
            for wire in wires:
                await ws.send(wire)
            box.pop(peeked.count, wires)
            if peeked.first_write and isinstance(peeked.message, SendText | ToolResult):
                await self.emit(peeked.message)
