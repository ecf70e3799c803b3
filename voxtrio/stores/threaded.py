"""The async half every blocking backend shares: its calls run in a worker thread.

A backend whose driver blocks (SQLite, psycopg) implements the blocking methods --
``_items_sync``, ``_append_sync`` (and, to commit many sessions' batches in one
transaction, ``_append_many_sync``) and ``close`` -- and gets the rest of
:class:`~voxtrio.stores.base.TranscriptStore` from :class:`ThreadedStore`, so the
event loop never waits on the disk or the network.

Sharing a store between sessions (group commit)
-----------------------------------------------
One store may serve every session of a process. Appends are queued; one worker
thread at a time drains the queue, committing *everything queued so far* -- the
batches of every session that appended meanwhile -- in one transaction, then the
next lot, until the queue is empty. So N sessions flushing together cost one commit,
not N, and each append waits for at most the commit in flight and its own; the
callers of one transaction are woken by one call into their trio run. What this
costs of :data:`~voxtrio.stores.base.DURABILITY_BOUND_S` with hundreds of sessions
is measured by ``benchmarks/bench_store_shared.py`` (the store's part, beside the
event loop's lag). If a shared transaction fails, every append in it gets the error.

Committing without the event loop (hand-over deadlines)
--------------------------------------------------------
:meth:`ThreadedStore._submit` queues a batch *without awaiting it*, with a deadline
(``within_s`` from now, on ``time.monotonic``). The draining thread waits -- in the
thread, on a condition with a timeout, not on the event loop -- until the earliest
deadline of everything queued has come (or a batch is queued with none), then commits
all that is queued, as above. So a transcript writer that hands its items over this
way gets them committed on time even while the event loop is busy (or stalled): the
loop is needed only to learn the outcome. Batches queued by one caller commit in the
order they were queued (one draining thread, lots taken from the front of the queue);
within one lot, a key queued twice for a session is written once, with the version
queued last.

Cancellation: an append cancelled while queued is taken out of the queue (nothing of
it is written); one cancelled while its transaction runs returns at once (it does not
wait for the thread, so a close bound holds even when the database is locked for
longer) and the transaction finishes or rolls back on its own: it is atomic either
way, and its items may still land after the caller was cancelled.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections.abc import Sequence
from typing import Self

import attrs
import trio

from ..codecs.transcript import Item
from .base import check_session_id

__all__ = ["ThreadedStore"]

#: One shared transaction holds at most this many items (more wait for the next).
_GROUP_ITEMS = 20_000


@attrs.define(eq=False)
class _Ticket:
    """One queued append, and how to wake its caller from the worker thread."""

    session_id: str
    items: list[Item]
    token: trio.lowlevel.TrioToken
    #: When (``time.monotonic``) it must be committing at the latest; -inf: at once.
    due: float = -math.inf
    done: trio.Event = attrs.field(factory=trio.Event)
    error: BaseException | None = None


def _deliver(group: Sequence[_Ticket], error: BaseException | None) -> None:
    """Wake the callers of ``group``: one call into each trio run, not one per ticket.

    Each ``run_sync_soon`` writes to the run's wake-up socket, which releases the
    GIL; while the event loop's thread is busy, taking it back can wait a whole
    switch interval (5 ms), so waking 50 callers one by one could take 250 ms.
    """
    by_run: dict[trio.lowlevel.TrioToken, list[_Ticket]] = {}
    for ticket in group:
        ticket.error = error
        by_run.setdefault(ticket.token, []).append(ticket)
    for token, tickets in by_run.items():
        with contextlib.suppress(trio.RunFinishedError):  # its run is over: nobody to tell
            token.run_sync_soon(_set_all, tickets)


def _merged(group: Sequence[_Ticket]) -> list[tuple[str, list[Item]]]:
    """One batch per session, each key once, with the version queued last (the
    tickets are in queue order)."""
    by_session: dict[str, dict[str, Item]] = {}
    for ticket in group:
        latest = by_session.setdefault(ticket.session_id, {})
        for item in ticket.items:
            latest[item.key] = item
    return [(session_id, list(latest.values())) for session_id, latest in by_session.items()]


def _set_all(tickets: Sequence[_Ticket]) -> None:
    for ticket in tickets:
        ticket.done.set()


class ThreadedStore:
    """Async wrappers over a backend's blocking calls; appends are group-committed."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)
        self._queue: collections.deque[_Ticket] = collections.deque()
        self._queue_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._queue_lock)
        self._earliest_due = math.inf  # of the queued tickets (maybe too early: harmless)
        self._draining = False  # a worker thread is draining the queue

    # -- what a backend provides

    def _check_id(self, session_id: str) -> str:
        """``session_id`` if this backend can store it (raises ``ValueError`` if not)."""
        return check_session_id(session_id)

    def _items_sync(self, session_id: str) -> list[Item]:
        raise NotImplementedError

    def _append_sync(self, session_id: str, items: list[Item]) -> None:
        raise NotImplementedError

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        """Upsert every ``(session_id, items)`` batch in one transaction, if the
        backend can; this default commits them one by one."""
        for session_id, items in batches:
            self._append_sync(session_id, items)

    def close(self) -> None:
        """Release the backend. Idempotent; blocks."""
        raise NotImplementedError

    # -- what it gets

    def items(self, session_id: str) -> list[Item]:
        """Every stored item of ``session_id``, in transcript order. Blocks."""
        return self._items_sync(self._check_id(session_id))

    async def snapshot(self, session_id: str) -> list[Item]:
        """:meth:`items`, without blocking the event loop.

        Cancelled while the worker thread runs, it raises ``Cancelled`` at once (the
        read changes nothing; the thread finishes on its own).
        """
        self._check_id(session_id)
        return await trio.to_thread.run_sync(
            self._items_sync, session_id, limiter=self._limiter, abandon_on_cancel=True
        )

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        """Insert or replace ``items`` (by key), committed with whatever other
        sessions appended meanwhile (see "Sharing a store" in the module docstring).

        When it returns they are committed. Cancelled, it raises ``Cancelled`` at
        once: nothing is written if the batch was still queued, else its transaction
        commits or rolls back as a whole, on its own.
        """
        self._check_id(session_id)
        batch = list(items)
        if not batch:
            await trio.lowlevel.checkpoint()
            return
        ticket = _Ticket(session_id, batch, trio.lowlevel.current_trio_token())
        self._enqueue(ticket)
        try:
            await ticket.done.wait()
        except BaseException:
            self._withdraw(ticket)  # still queued: never written
            raise
        if ticket.error is not None:
            raise ticket.error

    def _submit(self, session_id: str, items: Sequence[Item], within_s: float) -> _Ticket:
        """Queue ``items`` to be committing within ``within_s`` seconds, without
        waiting: the worker thread keeps the deadline whatever the event loop does.

        Call from a trio task. The returned ticket's ``done`` is set (on the event
        loop) once the transaction is over, with ``error`` set if it failed. Batches
        submitted by one task commit in submission order. :meth:`_withdraw` takes a
        ticket back while it is still queued.
        """
        self._check_id(session_id)
        ticket = _Ticket(
            session_id,
            list(items),
            trio.lowlevel.current_trio_token(),
            due=time.monotonic() + within_s,
        )
        self._enqueue(ticket)
        return ticket

    def _withdraw(self, ticket: _Ticket) -> bool:
        """Take ``ticket`` out of the queue; True if it was still queued (then
        nothing of it is written), False if its transaction ran or is running."""
        with self._queue_lock:
            try:
                self._queue.remove(ticket)
            except ValueError:
                return False
            self._earliest_due = min((t.due for t in self._queue), default=math.inf)
            return True

    def _hurry(self, tickets: Sequence[_Ticket]) -> None:
        """Make ``tickets`` due now (those still queued): their caller is closing."""
        with self._queue_lock:
            for ticket in tickets:
                ticket.due = -math.inf
            if tickets:
                self._earliest_due = -math.inf
                self._queue_changed.notify()

    def _enqueue(self, ticket: _Ticket) -> None:
        with self._queue_lock:
            self._queue.append(ticket)
            if ticket.due < self._earliest_due:
                self._earliest_due = ticket.due
                self._queue_changed.notify()
            start = not self._draining
            self._draining = True
        if start:
            trio.lowlevel.start_thread_soon(self._drain, lambda _: None, name="voxtrio store")

    def _take_group(self) -> list[_Ticket]:
        """The queued appends for one transaction (empty: the drain is over)."""
        with self._queue_lock:
            # Wait (in this thread) for the earliest deadline of what is queued.
            while self._queue:
                wait_s = self._earliest_due - time.monotonic()
                if wait_s <= 0:
                    break
                self._queue_changed.wait(wait_s)
            group: list[_Ticket] = []
            size = 0
            while self._queue and (not group or size + len(self._queue[0].items) <= _GROUP_ITEMS):
                ticket = self._queue.popleft()
                group.append(ticket)
                size += len(ticket.items)
            self._earliest_due = min((t.due for t in self._queue), default=math.inf)
            if not group:
                self._draining = False
            return group

    def _drain(self) -> None:
        """In the worker thread: commit queued appends, a group at a time."""
        while group := self._take_group():
            batches = _merged(group)
            error: BaseException | None = None
            try:
                self._append_many_sync(batches)
            except BaseException as exc:  # the callers' to raise (a fault or a bug)
                error = exc
            _deliver(group, error)

    async def aclose(self) -> None:
        """Release the store, in a worker thread."""
        await trio.to_thread.run_sync(self.close, limiter=self._limiter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
