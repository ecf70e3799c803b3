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

Cancellation: an append cancelled while queued is taken out of the queue (nothing of
it is written); one cancelled while its transaction runs returns at once (it does not
wait for the thread, so a close bound holds even when the database is locked for
longer) and the transaction finishes or rolls back on its own: it is atomic either
way, and its items may still land after the caller was cancelled.
"""

from __future__ import annotations

import collections
import contextlib
import threading
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


def _set_all(tickets: Sequence[_Ticket]) -> None:
    for ticket in tickets:
        ticket.done.set()


class ThreadedStore:
    """Async wrappers over a backend's blocking calls; appends are group-committed."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)
        self._queue: collections.deque[_Ticket] = collections.deque()
        self._queue_lock = threading.Lock()
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
        with self._queue_lock:
            self._queue.append(ticket)
            start = not self._draining
            self._draining = True
        if start:
            trio.lowlevel.start_thread_soon(self._drain, lambda _: None, name="voxtrio store")
        try:
            await ticket.done.wait()
        except BaseException:
            with self._queue_lock, contextlib.suppress(ValueError):
                self._queue.remove(ticket)  # still queued: never written
            raise
        if ticket.error is not None:
            raise ticket.error

    def _take_group(self) -> list[_Ticket]:
        """The queued appends for one transaction (empty: the drain is over)."""
        with self._queue_lock:
            group: list[_Ticket] = []
            size = 0
            while self._queue and (not group or size + len(self._queue[0].items) <= _GROUP_ITEMS):
                ticket = self._queue.popleft()
                group.append(ticket)
                size += len(ticket.items)
            if not group:
                self._draining = False
            return group

    def _drain(self) -> None:
        """In the worker thread: commit queued appends, a group at a time."""
        while group := self._take_group():
            batches = [(t.session_id, t.items) for t in group]
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
