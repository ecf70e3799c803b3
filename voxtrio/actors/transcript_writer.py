"""The transcript writer actor: changed transcript items in, batched commits out.

The session's hub owns the fold (:class:`~voxtrio.codecs.transcript.TranscriptBuilder`);
it hands every changed item to this actor through the :class:`TranscriptRecorder` the
actor gives it at start (``recorder = await nursery.start(run, ...)``). The actor only
writes: it loads the stored transcript once (so a resumed session continues it), then
commits pending items to the backend in batches.

Durability: with the default ``flush_interval_s`` (50 ms) and a healthy disk, an item
handed over (the ``record`` call returned) is committed within
:data:`~voxtrio.stores.base.DURABILITY_BOUND_S` (200 ms): it waits at most one interval
for its batch, then at most for the write in flight and its own. With a threaded store
(SQLite, PostgreSQL) the hand-over puts the items straight into the store's queue with
that deadline, and the store's thread keeps it, so a busy event loop does not delay
the commit (only the GIL can: a long garbage collection stops that thread too); this
actor then only learns the outcomes -- reports and retries failures (writing the newest
version of each key again, so an older one never lands after a newer one), holds the
``max_pending`` push-back and the close. Other stores are flushed from this actor's
timer, on the event loop. When the recorder is
closed, everything pending is written before the actor returns; when the actor is
cancelled, it waits (shielded) for the recorder to be closed by its owner -- whose
last hand-overs are synchronous -- and writes everything pending. Either way the last
writes get at most ``close_timeout_s``; what is not written by then is reported as lost.
"""

from __future__ import annotations

import collections
import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Final

import trio

from ..codecs.transcript import Item, TranscriptBuilder
from ..messages import ErrorEvent, Event
from ..stores.base import StoreLostError, TranscriptStore, check_session_id, check_store
from ..stores.threaded import ThreadedStore, _Ticket

__all__ = ["TranscriptRecorder", "check_writer_args", "run"]

_STORE_ERRORS: Final = (sqlite3.Error, OSError)


class _Writer:
    """Pending items (coalesced by key) and the loop that commits them in batches."""

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
        self.pending: dict[str, Item] = {}  # not handed to the store yet
        # A threaded store whose append is its own takes hand-overs straight into its
        # queue, with their deadline, so the commit does not wait for this task (nor
        # for the event loop) to wake: see "Hand-over" in ``add_nowait``.
        self.direct: ThreadedStore | None = (
            store
            if isinstance(store, ThreadedStore) and type(store).append is ThreadedStore.append
            else None
        )
        # Handed to the store, outcome not known yet (submission order, loop time).
        self.inflight: collections.deque[tuple[_Ticket, float]] = collections.deque()
        self.inflight_items = 0
        # The newest version handed over of each key (direct mode): what is written
        # again after a failure, so an older version never lands after a newer one.
        self.latest: dict[str, Item] = {}
        self.first_pending_at: float | None = None
        self.input_done = False
        self.failures = 0
        self.written = 0
        self.gave_up = False  # reported as lost (non-recoverable) already
        self.last_error: BaseException | None = None
        # The whole transcript, to write again after a StoreLostError (set by run).
        self.resend: Callable[[], list[Item]] | None = None
        self.write_started_at: float | None = None  # of a write not yet answered
        self._changed = trio.Event()
        self._space = trio.Event()
        self.done = trio.Event()  # set by finish()

    async def _wait_change(self) -> None:
        if self._changed.is_set():
            self._changed = trio.Event()
        await self._changed.wait()

    def unwritten(self) -> int:
        """Items handed over and not known to be committed (an upper bound)."""
        return len(self.pending) + self.inflight_items

    def forget_written(self) -> None:
        """Drop the hand-overs known to be committed but not settled yet (at the end,
        when there is no time left to settle them)."""
        for entry in list(self.inflight):
            ticket = entry[0]
            if ticket.done.is_set() and ticket.error is None:
                self.inflight.remove(entry)
                self.inflight_items -= len(ticket.items)
                self.written += len(ticket.items)

    def add_nowait(self, items: Iterable[Item]) -> None:
        """Queue items, whatever is pending already.

        Hand-over: with a threaded store, while no write is failing, the items go
        straight into the store's queue, due ``flush_interval_s`` from now (at once
        when ``batch_items`` are unwritten); its thread commits them by then with
        whatever other sessions queued. Otherwise they wait here, coalesced by key,
        for :meth:`run` to write them.
        """
        batch = list(items)
        if self.direct is not None:
            for item in batch:
                self.latest[item.key] = item
            if batch and self.failures == 0 and not self.pending:
                urgent = self.unwritten() + len(batch) >= self.batch_items
                within_s = 0.0 if urgent else self.flush_interval_s
                ticket = self.direct._submit(self.session_id, batch, within_s)
                self.inflight.append((ticket, trio.current_time()))
                self.inflight_items += len(ticket.items)
                self._changed.set()
                return
        for item in batch:
            self.pending[item.key] = item
        if self.first_pending_at is None and self.pending:
            self.first_pending_at = trio.current_time()
        self._changed.set()

    async def add(self, items: Iterable[Item]) -> None:
        """Queue items; waits while ``max_pending`` are queued (the disk is behind)."""
        self.add_nowait(items)
        while self.unwritten() >= self.max_pending:
            if self._space.is_set():
                self._space = trio.Event()
            await self._space.wait()

    def finish(self) -> None:
        self.input_done = True
        if self.direct is not None:
            self.direct._hurry([ticket for ticket, _ in self.inflight])
        self._changed.set()
        self.done.set()

    async def run(self) -> None:
        """Commit batches until the input is done and nothing is pending."""
        while True:
            if self.inflight and self.inflight[0][0].done.is_set():
                if not await self.settle():
                    await trio.sleep(min(2.0, 0.1 * 2 ** (self.failures - 1)))
                continue
            if not self.pending:
                if self.inflight:
                    await self.inflight[0][0].done.wait()
                    continue
                if self.input_done:
                    return
                await self._wait_change()
                continue
            if not self.input_done and len(self.pending) < self.batch_items:
                assert self.first_pending_at is not None
                with trio.move_on_at(self.first_pending_at + self.flush_interval_s):
                    while len(self.pending) < self.batch_items and not self.input_done:
                        await self._wait_change()
            if not await self.write_once():
                if self.input_done and self.failures >= 3:
                    return  # give up at the end (reported by write_once)
                await trio.sleep(min(2.0, 0.1 * 2 ** (self.failures - 1)))

    async def settle(self) -> bool:
        """Take the outcome of the oldest hand-over (done). Returns False (and
        reports) if it is the first failure since the last good write."""
        ticket, _ = self.inflight.popleft()
        self.inflight_items -= len(ticket.items)
        self._space.set()
        if ticket.error is None:
            self.written += len(ticket.items)
            await trio.lowlevel.checkpoint()
            return True
        exc = ticket.error
        if not isinstance(exc, _STORE_ERRORS):
            raise exc  # a bug in the backend
        # Write the newest versions of its keys again, from here (run's retries).
        self.pending.update((i.key, self.latest[i.key]) for i in ticket.items)
        if self.first_pending_at is None:
            self.first_pending_at = trio.current_time()
        if isinstance(exc, StoreLostError) and self.resend is not None:
            self.pending.update((i.key, i) for i in self.resend())
        if self.failures > 0:
            # Handed over before the failure was known: one more of the same fault,
            # already reported; the retries run on their own schedule.
            await trio.lowlevel.checkpoint()
            return True
        self.failures = 1
        self.last_error = exc
        await self._report(exc, final=False)
        return False

    async def write_once(self) -> bool:
        """Commit everything pending as one batch. Returns False (and reports) on failure."""
        batch, self.pending, self.first_pending_at = self.pending, {}, None
        self._space.set()
        if not batch:
            await trio.lowlevel.checkpoint()
            return True
        if self.direct is not None:
            # A newer version may have gone straight to the store since: write that.
            batch = {key: self.latest.get(key, item) for key, item in batch.items()}
        self.write_started_at = trio.current_time()
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
                raise  # cancelled (the write may still be in flight), or a bug
            self.write_started_at = None
            self.failures += 1
            self.last_error = exc
            if isinstance(exc, StoreLostError) and self.resend is not None:
                # What was committed is gone: the whole transcript is pending again.
                self.pending.update((i.key, i) for i in self.resend())
            final = self.input_done and self.failures >= 3
            await self._report(exc, final)
            return False
        self.failures = 0
        self.write_started_at = None
        self.written += len(batch)
        return True

    async def flush(self) -> None:
        """Learn the outcome of what was handed over, then write whatever is pending,
        in up to three attempts (for the close path: no more input will come, so a
        third failure gives up)."""
        self.input_done = True
        while self.inflight:
            await self.inflight[0][0].done.wait()
            await self.settle()
        attempts = 0
        while self.pending and attempts < 3 and not self.gave_up:
            attempts += 1
            await self.write_once()

    async def _report(self, exc: BaseException, final: bool) -> None:
        """Report a failed write. The final one ("gave up") is sent without waiting
        (the close path may be out of time) and only then counts as reported."""
        what = f"{len(self.pending)} transcript items of session {self.session_id!r}"
        if final:
            message = f"gave up storing {what}: {type(exc).__name__}: {exc}"
        else:
            message = f"could not store {what} (will retry): {type(exc).__name__}: {exc}"
        event = ErrorEvent(message, code="store_failed", source="store", recoverable=not final)
        if final:
            self.gave_up = self._send_nowait(event)
            await trio.lowlevel.checkpoint()
            return
        if self.errors is None:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.errors.send(event)

    def _send_nowait(self, event: ErrorEvent) -> bool:
        """Send ``event`` if there is room; True if it went out (or nobody listens)."""
        if self.errors is None:
            return True
        try:
            self.errors.send_nowait(event)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

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
        # Take back what the store has not begun to write (it may still land if it has).
        if self.direct is not None:
            for ticket, _ in self.inflight:
                self.direct._withdraw(ticket)
        message = (
            f"gave up storing {self.unwritten()} transcript items of session "
            f"{self.session_id!r}: not written within close_timeout_s ({close_timeout_s:g} s)"
        )
        started = self.write_started_at
        if started is None and self.inflight:
            started = self.inflight[0][1]
        if started is not None:
            waited = trio.current_time() - started
            message += f"; a write was still waiting on the store after {waited:.1f} s"
        if self.last_error is not None:
            exc = self.last_error
            message += f"; last error: {type(exc).__name__}: {exc}"
        event = ErrorEvent(message, code="store_failed", source="store", recoverable=False)
        self._send_nowait(event)


class TranscriptRecorder:
    """The fold's owner's half of the writer: folds events, hands changed items over.

    Made by :func:`run` (its ``task_status`` value). Not thread-safe; one task feeds it.

    Attributes:
        builder: the fold, seeded with the stored transcript.
    """

    def __init__(
        self, builder: TranscriptBuilder, writer: _Writer, clock: Callable[[], float]
    ) -> None:
        self.builder = builder
        self._writer = writer
        self._clock = clock

    @property
    def items(self) -> list[Item]:
        """Every item so far, in order, written or not."""
        return self.builder.items

    async def record(self, event: Event) -> None:
        """Fold ``event`` in and hand the changed items to the writer.

        The items are pending as soon as this is called; it then waits while the
        writer is ``max_pending`` behind (the disk is slow), so a cancelled call has
        still handed them over.

        Raises:
            trio.ClosedResourceError: after :meth:`close`.
        """
        self._check_open()
        changed = self.builder.feed(event, created_s=self._clock())
        if changed:
            await self._writer.add(changed)

    def record_nowait(self, event: Event) -> None:
        """Fold ``event`` in and hand its items over without waiting for space."""
        self._check_open()
        changed = self.builder.feed(event, created_s=self._clock())
        if changed:
            self._writer.add_nowait(changed)

    def _check_open(self) -> None:
        if self._writer.input_done:
            raise trio.ClosedResourceError("the transcript writer has finished")

    def close(self) -> None:
        """No more events: the writer commits what is pending and ends. Idempotent."""
        self._writer.finish()


def check_writer_args(
    store: TranscriptStore,
    session_id: str,
    *,
    flush_interval_s: float,
    batch_items: int,
    max_pending: int,
    close_timeout_s: float,
) -> None:
    """Raise ValueError or TypeError now for arguments :func:`run` would refuse."""
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


async def _load(writer: _Writer, clock: Callable[[], float]) -> TranscriptBuilder:
    """The fold of the stored transcript; a fault is reported and the call goes on."""
    try:
        prior = await writer.store.snapshot(writer.session_id)
    except _STORE_ERRORS as exc:
        # Go on without the old turns (the instructions will lack them), but number
        # the new ones from the wall clock in ms, so they still sort after whatever is
        # stored (a transcript's seqs count its items).
        await writer.report_read_failed(exc)
        return TranscriptBuilder((), first_seq=int(clock() * 1000))
    return TranscriptBuilder(prior)


async def run(
    *,
    store: TranscriptStore,
    session_id: str,
    errors: trio.MemorySendChannel[Event] | None = None,
    flush_interval_s: float = 0.05,
    batch_items: int = 256,
    max_pending: int = 8192,
    close_timeout_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[TranscriptRecorder] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write the session's transcript to ``store`` until the recorder is closed.

    On start, loads the stored transcript of ``session_id`` and reports readiness
    with a :class:`TranscriptRecorder` seeded with it. If it cannot (a locked or
    damaged database), that is reported and the session goes on without the old
    turns; new items are still stored after them. Changed items are committed when
    ``batch_items`` are pending or ``flush_interval_s`` after the oldest pending one,
    whichever comes first.

    When the recorder is closed, everything pending is committed before returning,
    for up to ``close_timeout_s``. When cancelled, the actor waits (shielded) for
    the recorder's owner to close it and writes what is pending, for up to
    ``close_timeout_s`` in all. What cannot be written in that time is lost, and
    reported as a non-recoverable ``ErrorEvent`` on ``errors``.

    Store faults (disk full, database locked) are sent as
    ``ErrorEvent(code="store_failed", source="store")`` on ``errors`` (closed on
    exit) and retried with a growing delay (0.1 s to 2 s); up to ``max_pending``
    unwritten items are held, after which :meth:`TranscriptRecorder.record` waits
    for the disk. At the end, a batch that failed three times is given up with a
    non-recoverable ``ErrorEvent``. Any other exception from the backend is a bug
    and propagates.

    Raises:
        ValueError, TypeError: bad arguments.
    """
    # Long by its docstring; the body is the start, the batch loop and the last writes.
    check_writer_args(
        store,
        session_id,
        flush_interval_s=flush_interval_s,
        batch_items=batch_items,
        max_pending=max_pending,
        close_timeout_s=close_timeout_s,
    )
    with errors if errors is not None else contextlib.nullcontext():
        writer = _Writer(
            store,
            session_id,
            errors,
            flush_interval_s=flush_interval_s,
            batch_items=batch_items,
            max_pending=max_pending,
        )
        builder = await _load(writer, clock)
        writer.resend = lambda: builder.items
        handed_out = False
        deadline = math.inf  # for the last writes; set when they begin
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                task_status.started(TranscriptRecorder(builder, writer, clock))
                handed_out = True
                await writer.done.wait()
                # The input ended: the last writes get close_timeout_s, no more.
                deadline = trio.current_time() + close_timeout_s
                nursery.cancel_scope.deadline = deadline
        finally:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = min(deadline, trio.current_time() + close_timeout_s)
                if handed_out:
                    await writer.done.wait()  # the owner's last hand-overs are in
                if writer.unwritten() and not writer.gave_up:
                    await writer.flush()
            writer.forget_written()
            if writer.unwritten() and not writer.gave_up:
                writer.report_lost_nowait(close_timeout_s)
