"""Storage faults against real SQLite files (issue 13): a locked database still lets
the writer finish within close_timeout_s and reports the loss; a database whose
directory is removed mid-session is reported and, once the directory is back, holds
the whole transcript again; a full disk and a read-only file system are reported with
their real cause. The disk-full and read-only cases mount a small tmpfs (root only).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from voxtrio.actors import transcript_writer
from voxtrio.actors.transcript_writer import TranscriptRecorder
from voxtrio.codecs.transcript import UserItem
from voxtrio.messages import ErrorEvent, Event, InputTranscriptionCompleted
from voxtrio.stores import SqliteTranscriptStore


def _turn(k: int) -> InputTranscriptionCompleted:
    return InputTranscriptionCompleted(f"u{k}", f"turn {k}")


async def _drain(rx: trio.MemoryReceiveChannel[Event]) -> list[ErrorEvent]:
    return [e async for e in rx if isinstance(e, ErrorEvent)]


async def _next_error(rx: trio.MemoryReceiveChannel[Event]) -> ErrorEvent:
    async for event in rx:
        if isinstance(event, ErrorEvent):
            return event
    raise AssertionError("the writer ended without reporting")


async def _until_stored(store: SqliteTranscriptStore, session_id: str, n: int) -> None:
    """Wait (polling the file, bounded by the caller's fail_after) until ``n`` items
    of ``session_id`` are committed."""
    # The file is the state waited on (written by a worker thread): poll it.
    while len(await store.snapshot(session_id)) < n:  # noqa: ASYNC110
        await trio.sleep(0.02)


# ------------------------------------------------------------------ 4. locked database


async def test_a_locked_database_is_left_within_close_timeout_and_the_loss_reported(
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock for good (busy_timeout 5 s, close
    timeout 1 s): leaving takes about close_timeout_s, not busy_timeout x attempts,
    and one final report says how many items were not written and why."""
    db = tmp_path / "t.sqlite3"
    store = SqliteTranscriptStore(db, busy_timeout_s=5.0)
    await store.append("warm", [UserItem("w", "made the schema", 0)])
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    tx, rx = trio.open_memory_channel[Event](64)
    run = partial(
        transcript_writer.run, store=store, session_id="s", errors=tx, close_timeout_s=1.0
    )
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                recorder: TranscriptRecorder = await nursery.start(run)
                for k in range(20):
                    await recorder.record(_turn(k))
                closed_at = trio.current_time()
                recorder.close()
            left_s = trio.current_time() - closed_at
            reports = await _drain(rx)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        store.close()  # waits for the abandoned write, which now commits
    assert left_s < 1.0 + 0.9, f"leaving took {left_s:.1f} s against close_timeout_s=1"
    final = [e for e in reports if not e.recoverable]
    assert len(final) == 1
    assert final[0].source == "store"
    assert "gave up storing 20 transcript items" in final[0].message
    assert "waiting on the store" in final[0].message


# --------------------------------------------------------------- 5. directory removed


async def test_a_removed_database_directory_is_reported_and_rewritten_when_back(
    tmp_path: Path,
) -> None:
    """The directory holding the database goes away mid-session: the next write is
    reported with that cause (SQLite alone would go on committing into unlinked
    files), and once the directory exists again the new file holds every item."""
    folder = tmp_path / "data"
    folder.mkdir()
    store = SqliteTranscriptStore(folder / "t.sqlite3")
    tx, rx = trio.open_memory_channel[Event](64)
    run = partial(
        transcript_writer.run, store=store, session_id="s", errors=tx, flush_interval_s=0.01
    )
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                recorder: TranscriptRecorder = await nursery.start(run)
                for k in range(10):
                    await recorder.record(_turn(k))
                await _until_stored(store, "s", 10)
                shutil.rmtree(folder)
                for k in range(10, 20):
                    await recorder.record(_turn(k))
                error = await _next_error(rx)
                assert error.source == "store"
                assert error.recoverable
                assert "removed" in error.message
                assert str(folder) in error.message
                folder.mkdir()
                await _until_stored(store, "s", 20)
                recorder.close()
    finally:
        store.close()
    with SqliteTranscriptStore(folder / "t.sqlite3") as reopened:
        got = reopened.items("s")
    assert sorted(i.key for i in got) == sorted(f"user:u{k}" for k in range(20))


# ------------------------------------------------------ 7. disk full, read-only (tmpfs)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted afterwards (skips where mounting is not allowed)."""
    where = tmp_path / "mnt"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fill the file system of ``folder``, then free ``leave`` bytes."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError:
        pass
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    os.close(fd)


def test_a_full_disk_before_the_schema_exists_says_so(tmpfs: Path) -> None:
    """However little room is left, the first write fails with "full" in the
    message -- never SQLite's "cannot rollback" nor a bare "disk I/O error"."""
    seen: set[str] = set()
    for leave in range(0, 40 * 1024, 2048):
        for name in os.listdir(tmpfs):
            os.unlink(tmpfs / name)
        _fill(tmpfs, leave)
        store = SqliteTranscriptStore(tmpfs / "t.sqlite3")
        try:
            store._append_sync("s", [UserItem("u", "hi", 0)])
        except (sqlite3.Error, OSError) as exc:
            message = str(exc)
        else:
            message = "written"
        finally:
            store.close()
        seen.add(message)
        assert message == "written" or "full" in message or "No space" in message, leave
        assert "no transaction is active" not in message
    assert any("full" in m for m in seen)


async def test_a_read_only_file_system_is_reported_with_its_cause(tmpfs: Path) -> None:
    db = tmpfs / "t.sqlite3"
    with SqliteTranscriptStore(db) as first:
        first._append_sync("s", [UserItem("u0", "before", 0)])
    await trio.run_process(["mount", "-o", "remount,ro", str(tmpfs)])
    store = SqliteTranscriptStore(db)
    tx, rx = trio.open_memory_channel[Event](64)
    run = partial(
        transcript_writer.run, store=store, session_id="s", errors=tx, close_timeout_s=0.5
    )
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                recorder: TranscriptRecorder = await nursery.start(run)
                await recorder.record(_turn(1))
                error = await _next_error(rx)
                nursery.cancel_scope.cancel()
    finally:
        store.close()
        await trio.run_process(["mount", "-o", "remount,rw", str(tmpfs)], check=False)
    assert error.source == "store"
    assert "Read-only file system" in error.message
