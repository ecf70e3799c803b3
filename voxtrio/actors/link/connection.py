"""One link's state and one connection's life: handshake, connect messages, then a
reader and a writer until the connection ends (see :mod:`voxtrio.actors.link`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import attrs
import trio

from ...codecs.wire import (
    ConnectionExpiry,
    GoAway,
    LinkSignal,
    Ready,
    ResumptionHandle,
    Verdict,
    WireCodec,
    excerpt,
)
from ...messages import (
    AudioDropped,
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
from .activity import Activity
from .outbox import Outbox
from .retry import Fatal, GaveUp, ReconnectPolicy, Retry
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


#: How long nothing must be in flight before an expiring connection is moved: a
#: turn the provider just ended may be followed by its reply a moment later.
SETTLE_S = 1.0


class _Move(Exception):
    """The connection ends on schedule (the server's goAway, the session's time
    limit): move to a new one. ``code`` names why (``SessionReconnected.reason``)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@attrs.define
class _Expiry:
    """When an expiring connection moves, in trio time: from ``start`` at the first
    quiet moment, at ``force`` whatever is in flight; it ends at ``deadline``."""

    start: float
    force: float
    deadline: float

    @classmethod
    def plan(cls, now: float, left_s: float, policy: ReconnectPolicy) -> _Expiry:
        deadline = now + max(0.0, left_s)
        # A session shorter than twice the margin moves halfway, not at once.
        start = max(deadline - policy.expiry_margin_s, now + max(0.0, left_s) / 2)
        force = max(start, deadline - policy.expiry_floor_s)
        return cls(start, force, deadline)


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
        self.outbox = Outbox(policy.outage_buffer_s, self.drops, policy.resend_buffer_s)
        self.connected = False
        #: The provider answered on the current connection (it counts as up).
        self.confirmed = False
        #: The latest session-resumption handle the provider gave (kept across
        #: connections, passed to the next connect; never logged).
        self.resumption_handle: str | None = None
        self._got_ready = False  # this connection saw Ready (or needs none)
        #: The wall clock a :class:`ConnectionExpiry` is read against (tests).
        self.wall_clock: Callable[[], float] = time.time
        #: What the current connection has in flight (for a move at a quiet moment).
        self.activity = Activity(transcribes=False)
        #: The current connection's planned end, once the provider named one.
        self.expiry: _Expiry | None = None
        #: Why the last connection that was up ended (SessionReconnected.reason).
        self.end_reason = ""
        self._moving: _Move | None = None  # the current connection is being moved
        #: The input the pump took and waits to put (the outbox is full).
        self._holding: LinkInput | None = None
        #: A drop report the pump is sending (cut short if the link gives up).
        self._reporting: AudioDropped | None = None

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
        input that can wait); live audio dropped oldest first while not. The
        caller owns (and closes) ``receive``: :meth:`end` reads what is left."""
        async for msg in receive:
            self._holding = msg
            await self.outbox.wait_not_full(lambda: self.connected or not self.live_input)
            self.outbox.put(msg)
            self._holding = None
            if self.live_input and not self.connected:
                self.outbox.drop_oldest_audio()
                report = self.drops.report()
                if report is not None:
                    self._reporting = report
                    await self.emit(report)
                    self._reporting = None

    async def end(self, verdict: GaveUp, receive: trio.MemoryReceiveChannel[LinkInput]) -> None:
        """The link gave up for good (refused for good, out of retries); the pump
        has stopped. Report the input audio that will never reach the provider,
        then the final error: one ``AudioDropped(edge="link_buffer")`` -- counting
        what the outbox held (:meth:`Outbox.abandon`: never written, or waiting to
        be resent to a resumed session), the input the pump held while the outbox
        was full, what waited in ``receive`` for the pump, and drops not reported
        yet (released audio of a session that was to resume, a report the pump
        was sending when it stopped) -- then the non-recoverable ``ErrorEvent``, so
        the app hears of every lost frame before the session ends. (Audio sent
        into ``receive`` after this, while the session shuts down, is not counted.)

        Not called when the session closes the link deliberately (it is cancelled
        then): what is still queued on a close is not a loss to report.
        """
        if self._holding is not None:
            self.outbox.put(self._holding)  # taken from the input: it counts
            self._holding = None
        while True:  # in order, after what the pump took
            try:
                self.outbox.put(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        if self._reporting is not None:  # taken out of the counter, never received
            self.drops.take_back(self._reporting)
            self._reporting = None
        self.outbox.abandon()
        report = self.drops.report()
        if report is not None:
            await self.emit(report)
        await self.error(verdict.message, verdict.code, recoverable=False)

    # ------------------------------------------------------------- one connection

    def _resumes(self, codec: WireCodec) -> bool:
        """Whether the next connection resumes the provider's session."""
        return codec.capabilities.resumption and self.resumption_handle is not None

    async def connection(self, attempt: int, reconnecting: bool) -> None:
        """One connection's life; ends by raising :class:`Retry` or :class:`Fatal`.

        Every outcome inside the websocket's nursery is carried out as a value, so
        what leaves this method is a plain exception, never a group.
        """
        # Audio written but not kept for a resend, lost when the last connection
        # ended before the provider confirmed it (the outbox's retention budget).
        report = self.drops.report()
        if report is not None:
            await self.emit(report)
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
        self.expiry = None  # this connection's, once the provider names it
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
                    back = SessionReconnected(
                        self.name, attempt, len(text), resumed, reason=self.end_reason
                    )
                    await self.emit(back)
                else:
                    log.info("%s: connected to %s", self.name, self.target.safe_url)
                    await self.emit(SessionConnected(self.name, len(text)))

            ended: ConnectionClosed | _Move = await self._run_connected(ws, codec, announce)
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
        if isinstance(ended, _Move):
            self.end_reason = ended.code
            return Retry(str(ended), was_up=True, planned=True)
        if ended.code is None:
            detail = f"lost the connection to {self.name} ({ended.reason or 'no close frame'})"
        else:
            detail = f"{self.name} closed the connection (code {ended.code}"
            detail += f": {excerpt(ended.reason)})" if ended.reason else ")"
        if codec.classify_close(ended.code, ended.reason) is Verdict.FATAL:
            return Fatal(detail, "connection_refused")
        if self.confirmed and self._in_expiry_window():
            # The provider ended the session at its time limit (before the link
            # found a quiet moment to move): its scheduled end, not a fault.
            self.end_reason = "session_expired"
            return Retry(f"session_expired: {detail}", was_up=True, planned=True)
        if self.confirmed:
            self.end_reason = "connection_lost"
        return Retry(detail, was_up=self.confirmed)

    def _in_expiry_window(self) -> bool:
        """The current connection's planned end is near: from the start of its
        move window on, a close is its scheduled end."""
        return self.expiry is not None and trio.current_time() >= self.expiry.start

    async def _run_connected(
        self, ws: WebSocket, codec: WireCodec, announce: Callable[[], Awaitable[None]]
    ) -> ConnectionClosed | _Move:
        """Read and write until the connection ends; returns why it ended.
        ``announce`` reports the connection once it is ready, before any input.

        A move (goAway, the session's time limit) stops the writer at an input
        boundary -- every input is then either wholly written on this connection or
        left in the outbox for the next -- and only then ends the connection (its
        close frame follows what was written), so a move loses and repeats nothing.
        """
        ready = trio.Event()
        go = trio.Event()  # the writer may start: ready, or moving before it was
        self.activity = Activity(transcribes=codec.capabilities.input_transcription)
        self.expiry = None
        self._moving = None
        if not codec.wait_for_ready:
            ready.set()
            go.set()
            self._got_ready = True
            await announce()
        ended: list[ConnectionClosed | _Move] = []

        async with trio.open_nursery() as nursery:
            scope = nursery.cancel_scope
            planner = trio.CancelScope()

            def move(why: _Move) -> None:
                """Stop the writer at its next input boundary, then end."""
                if self._moving is not None:
                    return
                log.info("%s: %s", self.name, str(why))
                self._moving = why
                planner.cancel()
                go.set()
                self.outbox.wake()
                # A writer stuck in a send (the server stopped reading) is not
                # waited for without end.
                nursery.start_soon(give_up_on_writer, why)

            async def give_up_on_writer(why: _Move) -> None:
                await trio.sleep(self.policy.connect_timeout_s)
                ended.append(why)
                scope.cancel()

            def expires(signal: ConnectionExpiry) -> None:
                nonlocal planner
                left_s = signal.at_unix_s - self.wall_clock()
                if left_s <= 0:
                    # Already over by our clock: the clocks disagree (a new session
                    # would say the same), so moving would only start a loop of
                    # moves. The provider's close at its limit is then a fault.
                    log.warning(
                        "%s: the session's end is %.0f s in the past by this clock; "
                        "not planning a move (is the clock right?)",
                        self.name,
                        -left_s,
                    )
                    return
                planner.cancel()  # a later limit replaces an earlier one
                self.expiry = _Expiry.plan(trio.current_time(), left_s, self.policy)
                planner = trio.CancelScope()
                if self._moving is None:
                    nursery.start_soon(self._move_before_expiry, self.expiry, planner, move)

            async def read() -> None:
                try:
                    await self._reader(ws, codec, ready, go, announce, move, expires)
                except ConnectionClosed as exc:
                    ended.append(exc)
                    scope.cancel()

            async def write() -> None:
                try:
                    await go.wait()
                    await self._writer(ws, codec)
                except ConnectionClosed as exc:
                    ended.append(exc)
                    # What the server sent before it closed is still queued, or in the
                    # reader's hands while it waits to emit (backpressure): the reader
                    # drains it and ends at the close. Bounded, for a reader that
                    # never gets rid of what it holds.
                    await trio.sleep(self.policy.connect_timeout_s)
                    scope.cancel()
                else:  # stopped for a move, at an input boundary
                    assert self._moving is not None
                    ended.append(self._moving)
                    scope.cancel()

            nursery.start_soon(read)
            nursery.start_soon(write)
        if not ended:  # pragma: no cover - both loops run until one of them ends
            raise AssertionError("the connection's loops ended without a reason")
        return ended[0]

    async def _move_before_expiry(
        self, expiry: _Expiry, scope: trio.CancelScope, move: Callable[[_Move], None]
    ) -> None:
        """Move the connection at the first quiet moment from ``expiry.start``, or at
        ``expiry.force`` whatever is in flight."""
        with scope:
            await trio.sleep_until(expiry.start)
            with trio.move_on_at(expiry.force):
                await self.activity.wait_quiet(SETTLE_S)
            now = trio.current_time()
            left = expiry.deadline - now
            quiet = "" if self.activity.idle else f", not quiet ({self.activity!r})"
            move(
                _Move(
                    f"{self.name} ends this session in {left:.1f} s; "
                    f"moving to a new connection{quiet}",
                    "session_expiring",
                )
            )

    async def _reader(
        self,
        ws: WebSocket,
        codec: WireCodec,
        ready: trio.Event,
        go: trio.Event,
        announce: Callable[[], Awaitable[None]],
        move: Callable[[_Move], None],
        expires: Callable[[ConnectionExpiry], None],
    ) -> None:
        while True:
            data = await ws.receive()
            self.confirmed = self.confirmed or not codec.wait_for_ready
            for item in codec.decode(data):
                if isinstance(item, Ready):
                    if not ready.is_set():
                        await announce()  # before anything this connection reports
                    ready.set()
                    go.set()
                    self._got_ready = self.confirmed = True
                elif isinstance(item, GoAway):
                    left = item.time_left_s
                    left_text = "" if left is None else f", {left:.1f} s left"
                    move(_Move(f"{self.name} asked to reconnect (goAway{left_text})", "go_away"))
                elif isinstance(item, ConnectionExpiry):
                    expires(item)
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
                    self.activity.received(item)
                    await self.emit(self._redacted(item))

    async def _writer(self, ws: WebSocket, codec: WireCodec) -> None:
        """Outbox -> websocket. An input leaves the outbox only once all its wire
        messages were written; a text or tool result is then reported, once."""
        box = self.outbox
        while True:
            await box.wait_nonempty(lambda: self._moving is not None)
            if self._moving is not None:
                return  # at an input boundary: the next connection writes the rest
            peeked = box.peek(self.policy.max_batch_frames)
            # A resend is the wire messages written before, as they were: this
            # connection's codec may have other state than the one that wrote them.
            wires = peeked.wires if peeked.wires is not None else codec.encode(peeked.message)
            for wire in wires:
                await ws.send(wire)
            box.pop(peeked.count, wires)
            if peeked.first_write:
                self.activity.written(peeked.message)
                if isinstance(peeked.message, SendText | ToolResult):
                    await self.emit(peeked.message)
