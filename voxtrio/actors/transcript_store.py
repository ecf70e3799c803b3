"""The transcript store actor and its backends.

The actor consumes the session's events, folds them into transcript items with
:class:`~voxtrio.codecs.transcript.TranscriptBuilder`, and writes changed items to a
backend in batches. It answers :class:`SnapshotRequest` messages (the provider link sends
one on every connect) from memory, so a snapshot always holds the latest items, even
those not yet committed.

Backends: :class:`MemoryTranscriptStore` (the default; lost with the process) and
:class:`SqliteTranscriptStore` (a file; WAL mode, one writer connection, every call in a
worker thread so the event loop never blocks, created owner-only since it holds
personal data).

Durability: with the default ``flush_interval_s`` (50 ms) and a healthy disk, an item
whose event was delivered to the actor (the send into its channel returned) is
committed within :data:`DURABILITY_BOUND_S` (200 ms): it waits at most one interval
for its batch, then at most for the write in flight and its own. A commit survives the
process being killed (SIGKILL) at any moment after it; with ``synchronous="FULL"`` it
also survives a power loss. When the actor's input ends, everything pending is written
before it returns; when it is cancelled, everything pending and everything already in
its input channel is still written, shielded. Either way the last writes get at most
``close_timeout_s``; what is not written by then is reported as lost.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeAlias

import attrs
import trio

from ..codecs.transcript import (
    DEFAULT_BUDGET_CHARS,
    Item,
    TranscriptBuilder,
    instructions_with_context,
)
from ..messages import ErrorEvent, Event
from ..stores.base import DURABILITY_BOUND_S, TranscriptStore, check_session_id, check_store
from ..stores.memory import MemoryTranscriptStore
from ..stores.sqlite import SCHEMA_VERSION, SqliteTranscriptStore

__all__ = [
    "DURABILITY_BOUND_S",
    "SCHEMA_VERSION",
    "MemoryTranscriptStore",
    "SnapshotRequest",
    "SqliteTranscriptStore",
    "StoreInput",
    "TranscriptStore",
    "instructions_source",
    "request_snapshot",
    "check_session_id",
    "check_store",
    "run",
]



@attrs.frozen
class SnapshotRequest:
    """Ask the store actor for the transcript so far.

    The actor sends the items (in order) on ``reply`` and closes it. A request is
    answered after every event sent to the actor before it, so it sees them all.
    """

    reply: trio.MemorySendChannel[list[Item]]


StoreInput: TypeAlias = Event | SnapshotRequest


async def request_snapshot(send: trio.MemorySendChannel[StoreInput]) -> list[Item]:
    """Send a :class:`SnapshotRequest` on ``send`` and wait for the items.

    Raises:
        trio.BrokenResourceError: the actor is gone (its input was closed).
    """
    reply_tx, reply_rx = trio.open_memory_channel[list[Item]](1)
    with reply_rx:
        await send.send(SnapshotRequest(reply_tx))
        try:
            return await reply_rx.receive()
        except trio.EndOfChannel:
            raise trio.BrokenResourceError("the transcript store ended without answering") from None


def instructions_source(
    send: trio.MemorySendChannel[StoreInput],
    base: str | None,
    *,
    budget_chars: int = DEFAULT_BUDGET_CHARS,
) -> Callable[[], Awaitable[str]]:
    """An ``InstructionsSource`` for the provider link, fed by the store actor.

    Every call asks the actor for a snapshot (by message, on ``send``) and returns
    :func:`~voxtrio.codecs.transcript.instructions_with_context` of ``base`` and it.
    If the actor has ended, the last snapshot it gave is used. The caller owns
    ``send`` (a clone of the actor's input) and must close it when the link is done:
    the actor runs until every clone of its input is closed.

    Raises:
        ValueError, TypeError: bad ``base`` or ``budget_chars`` (at this call).
    """
    instructions_with_context(base, (), budget_chars=budget_chars)  # validate now
    last: list[Item] = []

    async def source() -> str:
        nonlocal last
        # If the store has ended, the last snapshot is the latest there is.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            last = await request_snapshot(send)
        return instructions_with_context(base, last, budget_chars=budget_chars)

    return source


_STORE_ERRORS: Final = (sqlite3.Error, OSError)


class _Writer:
    """Pending items and the loop that commits them in batches."""

    def __init__(
        self,
        store: TranscriptStore,
        session_id: str,
        errors: trio.MemorySendChannel[Event] | None,
        *,
        flush_interval_s: float,
        batch_items: int,
        max_pending: int,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.errors = errors
        self.flush_interval_s = flush_interval_s
        self.batch_items = batch_items
        self.max_pending = max_pending
        self.pending: dict[str, Item] = {}
        self.first_pending_at: float | None = None
        self.input_done = False
        self.failures = 0
        self.written = 0
        self.gave_up = False  # reported as lost (non-recoverable) already
        self.last_error: BaseException | None = None
        self._changed = trio.Event()
        self._space = trio.Event()

    def _notify(self) -> None:
        self._changed.set()

    async def _wait_change(self) -> None:
        if self._changed.is_set():
            self._changed = trio.Event()
        await self._changed.wait()

    def add_nowait(self, items: Iterable[Item]) -> None:
        """Queue items, whatever is pending already."""
        for item in items:
            self.pending[item.key] = item
        if self.first_pending_at is None and self.pending:
            self.first_pending_at = trio.current_time()
        self._notify()

    async def add(self, items: Iterable[Item]) -> None:
        """Queue items; waits while ``max_pending`` are queued (the disk is behind)."""
        self.add_nowait(items)
        while len(self.pending) >= self.max_pending:
            if self._space.is_set():
                self._space = trio.Event()
            await self._space.wait()

    def finish(self) -> None:
        self.input_done = True
        self._notify()

    async def run(self) -> None:
        """Commit batches until the input is done and nothing is pending."""
        while True:
            while not self.pending and not self.input_done:
                await self._wait_change()
            if not self.pending:
                return
            if not self.input_done and len(self.pending) < self.batch_items:
                assert self.first_pending_at is not None
                with trio.move_on_at(self.first_pending_at + self.flush_interval_s):
                    while len(self.pending) < self.batch_items and not self.input_done:
                        await self._wait_change()
            if not await self.write_once():
                if self.input_done and self.failures >= 3:
                    return  # give up at the end (reported by write_once)
                await trio.sleep(min(2.0, 0.1 * 2 ** (self.failures - 1)))

    async def write_once(self) -> bool:
        """Commit everything pending as one batch. Returns False (and reports) on failure."""
        batch, self.pending, self.first_pending_at = self.pending, {}, None
        self._space.set()
        if not batch:
            await trio.lowlevel.checkpoint()
            return True
        try:
            await self.store.append(self.session_id, list(batch.values()))
        except BaseException as exc:
            # Put the batch back under anything newer that came meanwhile (upserts are
            # idempotent, so a batch that did land is harmless to write again).
            batch.update(self.pending)
            self.pending = batch
            if self.first_pending_at is None:
                self.first_pending_at = trio.current_time()
            if not isinstance(exc, _STORE_ERRORS):
                raise
            self.failures += 1
            self.last_error = exc
            final = self.input_done and self.failures >= 3
            self.gave_up = final
            await self._report(exc, final)
            return False
        self.failures = 0
        self.written += len(batch)
        return True

    async def flush(self) -> None:
        """Write whatever is pending, in up to three attempts (for the close path:
        no more input will come, so a third failure gives up)."""
        self.input_done = True
        attempts = 0
        while self.pending and attempts < 3 and not self.gave_up:
            attempts += 1
            await self.write_once()

    async def _report(self, exc: BaseException, final: bool) -> None:
        what = f"{len(self.pending)} transcript items of session {self.session_id!r}"
        if final:
            message = f"gave up storing {what}: {type(exc).__name__}: {exc}"
        else:
            message = f"could not store {what} (will retry): {type(exc).__name__}: {exc}"
        event = ErrorEvent(message, code="store_failed", source="store", recoverable=not final)
        if self.errors is None:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.errors.send(event)

    async def report_read_failed(self, exc: BaseException) -> None:
        message = (
            f"could not read the stored transcript of session {self.session_id!r}; the "
            f"call goes on without it: {type(exc).__name__}: {exc}"
        )
        if self.errors is not None:
            event = ErrorEvent(message, code="store_failed", source="store")
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.errors.send(event)

    def report_lost_nowait(self, close_timeout_s: float) -> None:
        """Report what is still pending as lost (at the very end, maybe cancelled:
        without waiting; dropped if the error channel is full or gone)."""
        self.gave_up = True
        message = (
            f"gave up storing {len(self.pending)} transcript items of session "
            f"{self.session_id!r}: not written within close_timeout_s ({close_timeout_s:g} s)"
        )
        if self.last_error is not None:
            exc = self.last_error
            message += f"; last error: {type(exc).__name__}: {exc}"
        event = ErrorEvent(message, code="store_failed", source="store", recoverable=False)
        if self.errors is None:
            return
        with contextlib.suppress(
            trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            self.errors.send_nowait(event)


async def _answer(request: SnapshotRequest, items: list[Item]) -> None:
    with request.reply, contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await request.reply.send(items)


def _take_buffered(
    receive: trio.MemoryReceiveChannel[StoreInput],
    builder: TranscriptBuilder,
    writer: _Writer,
    clock: Callable[[], float],
) -> None:
    """Fold in what is already in the actor's input but was not read (it was
    cancelled): whoever sent it -- the hub -- has published it, so a subscriber may
    have seen it. Snapshot requests there are answered (or at least closed)."""
    while True:
        try:
            message = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        if isinstance(message, SnapshotRequest):
            with (
                message.reply,
                contextlib.suppress(
                    trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
                ),
            ):
                message.reply.send_nowait(builder.items)
            continue
        writer.add_nowait(builder.feed(message, created_s=clock()))


async def run(
    receive: trio.MemoryReceiveChannel[StoreInput],
    *,
    store: TranscriptStore,
    session_id: str,
    errors: trio.MemorySendChannel[Event] | None = None,
    flush_interval_s: float = 0.05,
    batch_items: int = 256,
    max_pending: int = 8192,
    close_timeout_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record the session's events in ``store`` until ``receive`` ends.

    On start, loads the stored transcript of ``session_id`` (so a resumed session
    continues it), then reports readiness. If it cannot (a locked or damaged
    database), that is reported and the session goes on without the old turns;
    new items are still stored after them. Events are folded into items (see
    :class:`~voxtrio.codecs.transcript.TranscriptBuilder`); changed items are
    committed when ``batch_items`` are pending or ``flush_interval_s`` after the
    oldest pending one, whichever comes first. :class:`SnapshotRequest` messages are
    answered at once with every item so far, stored or not.

    When ``receive`` ends, everything pending is committed before returning, for
    up to ``close_timeout_s``. When cancelled, pending items -- and the events
    already in ``receive``'s buffer -- are still written, shielded, for up to
    ``close_timeout_s``. What cannot be written in that time is lost, and reported
    as a non-recoverable ``ErrorEvent`` on ``errors``.

    Store faults (disk full, database locked) are sent as
    ``ErrorEvent(code="store_failed", source="store")`` on ``errors`` (closed on
    exit) and retried with a growing delay (0.1 s to 2 s); the events keep being
    consumed, up to ``max_pending`` unwritten items, after which the actor waits for
    the disk (backpressure on the session's events). At the end, a batch that failed
    three times is given up with a non-recoverable ``ErrorEvent``.

    Args:
        receive: the session's events and snapshot requests; the actor owns it.
        store: the backend (``MemoryTranscriptStore()`` or ``SqliteTranscriptStore``).
        session_id: the conversation's name in the store.
        errors: where store faults are reported (optional; closed on exit).
        clock: wall-clock time for the items' ``created_s``.

    Raises:
        ValueError, TypeError: bad arguments.
    """
    check_session_id(session_id)
    check_store(store)
    if not (flush_interval_s >= 0 and math.isfinite(flush_interval_s)):
        raise ValueError(f"flush_interval_s must be finite and >= 0, got {flush_interval_s}")
    if not (close_timeout_s >= 0 and math.isfinite(close_timeout_s)):
        raise ValueError(f"close_timeout_s must be finite and >= 0, got {close_timeout_s}")
    if batch_items < 1 or max_pending < batch_items:
        raise ValueError(
            f"need 1 <= batch_items <= max_pending, got {batch_items} and {max_pending}"
        )
    with contextlib.ExitStack() as stack:
        stack.enter_context(receive)
        if errors is not None:
            stack.enter_context(errors)
        writer = _Writer(
            store,
            session_id,
            errors,
            flush_interval_s=flush_interval_s,
            batch_items=batch_items,
            max_pending=max_pending,
        )
        prior: list[Item] = []
        first_seq = 0
        try:
            prior = await store.snapshot(session_id)
        except _STORE_ERRORS as exc:
            # Go on without the old turns (the instructions will lack them), but
            # number the new ones from the wall clock in ms, so they still sort after
            # whatever is stored (a transcript's seqs count its items).
            first_seq = int(clock() * 1000)
            await writer.report_read_failed(exc)
        builder = TranscriptBuilder(prior, first_seq=first_seq)
        deadline = math.inf  # for the last writes; set when they begin
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                task_status.started()
                async for message in receive:
                    if isinstance(message, SnapshotRequest):
                        await _answer(message, builder.items)
                        continue
                    changed = builder.feed(message, created_s=clock())
                    if changed:
                        await writer.add(changed)
                writer.finish()
                # The input ended: the last writes get close_timeout_s, no more.
                deadline = trio.current_time() + close_timeout_s
                nursery.cancel_scope.deadline = deadline
        finally:
            _take_buffered(receive, builder, writer, clock)
            if writer.pending and not writer.gave_up:
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = min(deadline, trio.current_time() + close_timeout_s)
                    await writer.flush()
                if writer.pending and not writer.gave_up:
                    writer.report_lost_nowait(close_timeout_s)
