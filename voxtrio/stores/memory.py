"""The in-memory transcript store: the default, gone with the process."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..codecs.transcript import Item, sort_items
from .base import check_session_id

__all__ = ["MemoryTranscriptStore"]


class MemoryTranscriptStore:
    """Items in a dict, gone with the process. Safe to share between sessions."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, Item]] = {}

    def __repr__(self) -> str:
        return f"MemoryTranscriptStore(sessions={len(self._sessions)})"

    def items(self, session_id: str) -> list[Item]:
        """The stored items of ``session_id``, in transcript order (sync)."""
        return sort_items(list(self._sessions.get(check_session_id(session_id), {}).values()))

    def session_ids(self) -> list[str]:
        """Every session id with stored items, sorted."""
        return sorted(self._sessions)

    async def snapshot(self, session_id: str) -> list[Item]:
        """:meth:`items`, without blocking the event loop."""
        await trio.lowlevel.checkpoint()
        return self.items(session_id)

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        """Insert or replace ``items`` (by key) in one transaction."""
        check_session_id(session_id)
        await trio.lowlevel.checkpoint()
        stored = self._sessions.setdefault(session_id, {})
        for item in items:
            stored[item.key] = item

    def close(self) -> None:
        """Nothing to release; for symmetry with :class:`SqliteTranscriptStore`."""

    async def aclose(self) -> None:
        """Release the store; a checkpoint."""
        await trio.lowlevel.checkpoint()
