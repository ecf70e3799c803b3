"""One SQLite store shared by 200 sessions (issue 13, failure 6): appends from every
session are committed together, so a slow disk costs one transaction per lot, not
one per session, and every session's last items are written before it closes; WAL
checkpoints run in a thread of their own, never inside a commit everybody waits for.
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
from voxtrio.codecs.transcript import Item, TranscriptBuilder
from voxtrio.messages import ErrorEvent, Event, InputTranscriptionCompleted
from voxtrio.stores import SqliteTranscriptStore
from voxtrio.stores import sqlite as sqlite_store

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


async def _session(store: SqliteTranscriptStore, index: int, reports: list[ErrorEvent]) -> None:
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


# ------------------------------------------------- checkpoints off the commit path


def _items(n: int, start: int = 0) -> list[Item]:
    builder = TranscriptBuilder(())
    out: list[Item] = []
    for k in range(start, start + n):
        out += builder.feed(InputTranscriptionCompleted(f"u{k}", f"turn {k}"), created_s=1.0)
    return out


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "voxtrio sqlite checkpoint"]


async def _wait_for_checkpoints(store: SqliteTranscriptStore, n: int) -> None:
    # The count is a thread's: no trio event to wait on, so look again every 10 ms.
    with trio.fail_after(10):
        while store._checkpointer.runs < n and not store._checkpointer.failed:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_checkpoints_run_in_their_own_thread_not_in_commits(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint (fsyncs, in whichever commit crosses ~1000 WAL
    pages) is off on the writer; a thread of the store's own checkpoints instead,
    and is gone once the store is closed."""
    store = SqliteTranscriptStore(tmp_path / "ckpt.sqlite3")
    try:
        for k in range(sqlite_store._CHECKPOINT_COMMITS):
            await store.append("s", _items(1, k))
        assert store._conn is not None
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        await _wait_for_checkpoints(store, 1)
        assert not store._checkpointer.failed
        assert store._checkpointer.runs >= 1
        assert len(_checkpoint_threads()) == 1
    finally:
        store.close()
    assert _checkpoint_threads() == []
    assert sorted(i.key for i in stored_items(tmp_path / "ckpt.sqlite3")) == sorted(
        f"user:u{k}" for k in range(sqlite_store._CHECKPOINT_COMMITS)
    )


async def test_a_failing_checkpointer_gives_checkpoints_back_to_sqlite(tmp_path: Path) -> None:
    """If the checkpoint thread cannot work (here: its path names no file), the
    writer turns SQLite's automatic checkpoints on again: the WAL must not grow for
    ever."""
    store = SqliteTranscriptStore(tmp_path / "ckpt.sqlite3")
    store._checkpointer._path = str(tmp_path / "missing.sqlite3")  # connect fails (mode=rw)
    try:
        await store.append("s", _items(sqlite_store._CHECKPOINT_ROWS))  # one big commit
        await _wait_for_checkpoints(store, 1)
        assert store._checkpointer.failed
        await store.append("s", _items(1, sqlite_store._CHECKPOINT_ROWS))
        assert store._conn is not None
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
        assert not (tmp_path / "missing.sqlite3").exists()  # mode=rw created nothing
    finally:
        store.close()
    assert _checkpoint_threads() == []
    assert len(stored_items(tmp_path / "ckpt.sqlite3")) == sqlite_store._CHECKPOINT_ROWS + 1


def stored_items(path: Path) -> list[Item]:
    with SqliteTranscriptStore(path) as reader:
        return reader.items("s")
