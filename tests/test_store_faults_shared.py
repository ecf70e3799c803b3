"""One SQLite store shared by 200 sessions (issue 13, failure 6): appends from every
session are committed together, so a slow disk costs one transaction per lot, not
one per session, and every session's last items are written before it closes.
(The seen-to-disk figures are measured by ``benchmarks/bench_store_shared.py``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from voxtrio.actors import transcript_writer
from voxtrio.actors.transcript_writer import TranscriptRecorder
from voxtrio.codecs.transcript import Item
from voxtrio.messages import ErrorEvent, Event, InputTranscriptionCompleted
from voxtrio.stores import SqliteTranscriptStore

SESSIONS = 200
TURNS = 5
SLOW_S = 0.05  # what one transaction costs on this (simulated) slow disk


class SlowDisk(SqliteTranscriptStore):
    """Every transaction takes SLOW_S longer; counts transactions and their batches."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[int] = []  # batches per transaction
        self._count_lock = threading.Lock()

    def _slow(self, batches: int) -> None:
        with self._count_lock:
            self.transactions.append(batches)
        time.sleep(SLOW_S)

    def _append_sync(self, session_id: str, items: Sequence[Item]) -> None:
        self._slow(1)
        super()._append_sync(session_id, items)

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        self._slow(len(batches))
        self._write(batches)


async def _session(
    store: SqliteTranscriptStore, index: int, reports: list[ErrorEvent]
) -> None:
    tx, rx = trio.open_memory_channel[Event](64)
    run = partial(transcript_writer.run, store=store, session_id=f"s{index}", errors=tx)
    async with trio.open_nursery() as nursery:
        recorder: TranscriptRecorder = await nursery.start(run)
        for turn in range(TURNS):
            await recorder.record(InputTranscriptionCompleted(f"u{turn}", f"{index}/{turn}"))
        recorder.close()
        reports += [e async for e in rx if isinstance(e, ErrorEvent)]


async def test_two_hundred_sessions_on_one_slow_store_lose_nothing(tmp_path: Path) -> None:
    store = SlowDisk(tmp_path / "shared.sqlite3")
    reports: list[ErrorEvent] = []
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for index in range(SESSIONS):
                    nursery.start_soon(_session, store, index, reports)
        stored = {i: store.items(f"s{i}") for i in range(SESSIONS)}
    finally:
        store.close()
    assert reports == []
    for index, items in stored.items():
        assert [i.key for i in items] == [f"user:u{t}" for t in range(TURNS)], index
    # One transaction per session would be 200 x 50 ms, far over close_timeout_s.
    assert sum(store.transactions) >= SESSIONS
    assert len(store.transactions) <= SESSIONS // 10
