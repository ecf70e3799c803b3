"""Hand-over straight into a threaded store's queue (issue 13, failure 6).

With a threaded store (SQLite, PostgreSQL) the transcript writer queues each change
in the store at the hand-over, with its deadline; the store's own thread keeps that
deadline. So an item is committed on time even while the event loop is busy, and
the loop is needed only to learn the outcome. These tests block the loop on purpose
and sequence everything with ``threading.Event``s, never with sleeps.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from voxtrio.actors import transcript_writer
from voxtrio.actors.transcript_writer import TranscriptRecorder
from voxtrio.codecs.transcript import Item
from voxtrio.messages import ErrorEvent, Event, InputTranscriptionCompleted
from voxtrio.stores import SqliteTranscriptStore
from voxtrio.stores.postgres import PostgresTranscriptStore

from .pg_helpers import fresh_schema

#: Only a guard: how long a blocked loop waits for a commit before the test fails.
GUARD_S = 10.0


class NotingStore(SqliteTranscriptStore):
    """Sets ``committed`` in its worker thread when a write has committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.committed = threading.Event()

    def _write(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        super()._write(batches)
        self.committed.set()


def _stored_texts(path: Path, session_id: str) -> list[str]:
    """What another connection (not the store's) sees committed for ``session_id``."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT data FROM items WHERE session_id = ? ORDER BY seq", (session_id,)
        ).fetchall()
    finally:
        conn.close()
    return [str(data) for (data,) in rows]


async def test_a_handed_over_item_is_committed_while_the_event_loop_is_blocked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    with trio.fail_after(30), NotingStore(path) as store:
        async with trio.open_nursery() as nursery:
            run = partial(transcript_writer.run, store=store, session_id="s")
            recorder: TranscriptRecorder = await nursery.start(run)
            await recorder.record(InputTranscriptionCompleted("u1", "committed off the loop"))
            # From here the event loop is blocked (a busy loop, a long GC pause):
            # no task runs, the writer's included, until this wait is over.
            seen = store.committed.wait(GUARD_S)
            # Still blocked: what another connection sees.
            texts = _stored_texts(path, "s") if seen else []
            recorder.close()
        assert seen, "nothing was committed while the event loop was blocked"
        assert len(texts) == 1
        assert "committed off the loop" in texts[0]
        assert [i.key for i in store.items("s")] == ["user:u1"]


class NotingPostgresStore(PostgresTranscriptStore):
    """Sets ``committed`` in its worker thread when a write has committed."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema=schema)
        self.committed = threading.Event()

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        super()._append_many_sync(batches)
        self.committed.set()


async def test_postgres_commits_a_handed_over_item_while_the_event_loop_is_blocked(
    pg_dsn: str,
) -> None:
    with fresh_schema(pg_dsn) as schema, trio.fail_after(30):
        store = NotingPostgresStore(pg_dsn, schema)
        other = PostgresTranscriptStore(pg_dsn, schema=schema)  # another connection
        try:
            async with trio.open_nursery() as nursery:
                run = partial(transcript_writer.run, store=store, session_id="s")
                recorder: TranscriptRecorder = await nursery.start(run)
                await recorder.record(InputTranscriptionCompleted("u1", "committed off the loop"))
                seen = store.committed.wait(GUARD_S)  # the event loop is blocked
                keys = [i.key for i in other.items("s")] if seen else []
                recorder.close()
        finally:
            store.close()
            other.close()
        assert seen, "nothing was committed while the event loop was blocked"
        assert keys == ["user:u1"]


class FailsFirstWrite(SqliteTranscriptStore):
    """Its first transaction waits for ``release``, then fails (disk full); the rest
    are written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.writes: list[list[str]] = []  # texts of each attempted transaction
        self._first = True

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        self.writes.append([getattr(i, "text", "") for _, items in batches for i in items])
        if self._first:
            self._first = False
            self.entered.set()
            self.release.wait(GUARD_S)
            raise OSError(28, "No space left on device (simulated)")
        super()._append_many_sync(batches)


async def test_a_failed_older_version_is_never_written_after_a_newer_one(tmp_path: Path) -> None:
    """v1 of an item is in a transaction that fails; v2 of it was handed over
    meanwhile and commits after it. The retry must write v2, not v1: the stored
    item ends as v2."""
    path = tmp_path / "t.db"
    reports: list[ErrorEvent] = []
    with trio.fail_after(30), FailsFirstWrite(path) as store:
        tx, rx = trio.open_memory_channel[Event](16)
        async with trio.open_nursery() as nursery:
            run = partial(transcript_writer.run, store=store, session_id="s", errors=tx)
            recorder: TranscriptRecorder = await nursery.start(run)
            await recorder.record(InputTranscriptionCompleted("u1", "v1"))
            # The transaction with v1 has begun (and will fail)...
            assert await trio.to_thread.run_sync(store.entered.wait, GUARD_S)
            await recorder.record(InputTranscriptionCompleted("u1", "v2"))
            store.release.set()
            recorder.close()
            reports += [e async for e in rx if isinstance(e, ErrorEvent)]
        assert [e.recoverable for e in reports] == [True]
        assert "No space left" in reports[0].message
        assert store.writes[0] == ["v1"]
        assert all(w == ["v2"] for w in store.writes[1:]), store.writes
        assert len(store.writes) >= 2
        assert [getattr(i, "text", None) for i in store.items("s")] == ["v2"]
        assert '"v2"' in _stored_texts(path, "s")[0]


async def test_changes_handed_over_in_order_are_stored_in_order(tmp_path: Path) -> None:
    """Many versions of the same items across sessions, each committed with
    whatever else is queued: every session's items end at their last version."""
    sessions, versions = 20, 30
    with trio.fail_after(60), SqliteTranscriptStore(tmp_path / "t.db") as store:

        async def one(index: int) -> None:
            async with trio.open_nursery() as nursery:
                run = partial(transcript_writer.run, store=store, session_id=f"s{index}")
                recorder: TranscriptRecorder = await nursery.start(run)
                for version in range(versions):
                    for item in ("a", "b"):
                        await recorder.record(InputTranscriptionCompleted(item, f"{item}{version}"))
                    if version % 7 == 0:
                        await trio.lowlevel.checkpoint()  # let others' hand-overs interleave
                recorder.close()

        async with trio.open_nursery() as nursery:
            for index in range(sessions):
                nursery.start_soon(one, index)
        for index in range(sessions):
            texts = [getattr(i, "text", None) for i in store.items(f"s{index}")]
            assert texts == [f"a{versions - 1}", f"b{versions - 1}"]
