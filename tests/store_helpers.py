"""Shared test doubles for the transcript store tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import trio

from voxtrio.actors.transcript_store import MemoryTranscriptStore
from voxtrio.codecs.transcript import Item


class FlakyStore(MemoryTranscriptStore):
    """Appends fail with ``sqlite3.OperationalError`` (a locked database) until
    ``failures`` of them have failed (``10**9``: practically forever)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            await trio.lowlevel.checkpoint()
            raise sqlite3.OperationalError("database is locked")
        await super().append(session_id, items)
