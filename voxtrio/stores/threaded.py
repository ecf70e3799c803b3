"""The async half every blocking backend shares: its calls run in a worker thread.

A backend whose driver blocks (SQLite, psycopg) implements three blocking methods --
``_items_sync``, ``_append_sync`` and ``close`` -- and gets the rest of
:class:`~voxtrio.stores.base.TranscriptStore` from :class:`ThreadedStore`: every async
method runs its blocking call through ``trio.to_thread.run_sync``, one at a time, so the
event loop never waits on the disk or the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import trio

from ..codecs.transcript import Item
from .base import check_session_id

__all__ = ["ThreadedStore"]


class ThreadedStore:
    """Async wrappers over a backend's blocking calls, one call at a time."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    # -- what a backend provides

    def _check_id(self, session_id: str) -> str:
        """``session_id`` if this backend can store it (raises ``ValueError`` if not)."""
        return check_session_id(session_id)

    def _items_sync(self, session_id: str) -> list[Item]:
        raise NotImplementedError

    def _append_sync(self, session_id: str, items: list[Item]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the backend. Idempotent; blocks."""
        raise NotImplementedError

    # -- what it gets

    def items(self, session_id: str) -> list[Item]:
        """Every stored item of ``session_id``, in transcript order. Blocks."""
        return self._items_sync(self._check_id(session_id))

    async def snapshot(self, session_id: str) -> list[Item]:
        """:meth:`items`, without blocking the event loop.

        Cancelled while the worker thread runs, it raises ``Cancelled`` once the
        read is done (the read changes nothing).
        """
        self._check_id(session_id)
        return await trio.to_thread.run_sync(self._items_sync, session_id, limiter=self._limiter)

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        """Insert or replace ``items`` (by key) in one transaction.

        When it returns they are committed. Cancelled, it waits for the worker
        thread, so the transaction is either committed or rolled back, never half
        done; it then raises ``Cancelled``.
        """
        self._check_id(session_id)
        batch = list(items)
        if not batch:
            await trio.lowlevel.checkpoint()
            return
        await trio.to_thread.run_sync(self._append_sync, session_id, batch, limiter=self._limiter)

    async def aclose(self) -> None:
        """Release the store, in a worker thread."""
        await trio.to_thread.run_sync(self.close, limiter=self._limiter)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
