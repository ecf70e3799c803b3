"""What a transcript store is: the protocol every backend meets, and its checks.

A backend keeps the items of many conversations, keyed by session id. It is plain
storage: the session's store actor (:mod:`voxtrio.actors.transcript_store`) decides
what to write and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

from ..codecs.transcript import Item

__all__ = [
    "DURABILITY_BOUND_S",
    "StoreLostError",
    "TranscriptStore",
    "check_session_id",
    "check_store",
]

#: An item delivered to the store actor is committed within this many seconds
#: (default settings, healthy disk); see :mod:`voxtrio.actors.transcript_store`.
DURABILITY_BOUND_S: Final = 0.2


class StoreLostError(OSError):
    """What was committed is gone (e.g. the database file was removed while open).

    An ``OSError``, so the writer reports and retries it like any fault; it also
    hands the session's whole transcript to the store again, so once the store is
    usable again it holds everything, not just what came after the loss.
    """


@runtime_checkable
class TranscriptStore(Protocol):
    """What the actor needs from a backend.

    Items are upserted by ``(session_id, item.key)``: writing an item again replaces
    it. Faults of the outside world (disk full, database locked or corrupt) raise
    ``OSError`` or ``sqlite3.Error``; the actor reports them as ``ErrorEvent``.
    """

    def items(self, session_id: str) -> list[Item]:
        """Every stored item of ``session_id``, in transcript order (blocking)."""
        ...

    async def snapshot(self, session_id: str) -> list[Item]:
        """Like :meth:`items`, without blocking the event loop."""
        ...

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        """Upsert ``items``; when it returns they are stored (committed)."""
        ...


def check_store(store: object) -> TranscriptStore:
    """``store`` if it is a transcript store (an instance, not a class).

    Raises:
        TypeError: it is not.
    """
    if isinstance(store, type) or not isinstance(store, TranscriptStore):
        hint = " (a class: did you forget the parentheses?)" if isinstance(store, type) else ""
        raise TypeError(f"store must be a transcript store, got {store!r}{hint}")
    return store


def check_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("session_id must be valid text (no lone surrogates)") from None
    return session_id
