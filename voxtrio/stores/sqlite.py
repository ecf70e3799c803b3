"""The SQLite transcript store: a file, WAL mode, one writer, owner-only files."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from ..codecs.transcript import Item, decode_item, encode_item
from .base import StoreLostError
from .threaded import ThreadedStore

__all__ = ["SCHEMA_VERSION", "SqliteTranscriptStore"]

#: The schema this code writes; see :class:`SqliteTranscriptStore`.
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items ("
    " session_id TEXT NOT NULL,"
    " item_key TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " data TEXT NOT NULL,"
    " updated_s REAL NOT NULL,"
    " PRIMARY KEY (session_id, item_key)"
    ") WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS items_by_seq ON items (session_id, seq)",
)
_ROW: Final = "(?, ?, ?, ?, ?, ?)"
_COLUMNS: Final = len(_ROW.split(","))
#: Rows per INSERT statement. One statement per chunk, not one per row: each step of a
#: statement releases and retakes the GIL, and while the event loop's thread is busy
#: every retake can wait a whole switch interval (5 ms), so a transaction of N
#: single-row steps could take N x 5 ms. 256 x 6 parameters is far below SQLite's
#: limit of 32,766 (builds before 3.32 allow 999 parameters: 166 rows).
_CHUNK_ROWS: Final = 256 if sqlite3.sqlite_version_info >= (3, 32) else 999 // _COLUMNS
_UPSERT_TAIL: Final = (
    " ON CONFLICT (session_id, item_key) DO UPDATE SET"
    " seq = excluded.seq, kind = excluded.kind, data = excluded.data,"
    " updated_s = excluded.updated_s"
)


def _upsert(rows: int) -> str:
    """An INSERT of ``rows`` rows, each replacing the stored row with its key. Rows
    with the same key in one statement are applied in order (the last one wins)."""
    return (
        "INSERT INTO items (session_id, item_key, seq, kind, data, updated_s) VALUES "
        + ", ".join([_ROW] * rows)
        + _UPSERT_TAIL
    )


_SELECT: Final = "SELECT data FROM items WHERE session_id = ? ORDER BY seq, item_key"
_OWNER_ONLY: Final = 0o600
_NEARLY_FULL: Final = 256 * 1024  # free bytes below which an I/O error means "disk full"


def _key_text(key: str) -> str:
    # Keys hold provider ids, which may be any JSON string (lone surrogates included);
    # store them as ASCII JSON so sqlite3 can always encode them.
    return json.dumps(key, ensure_ascii=True)


def _kind(item: Item) -> str:
    return item.key.partition(":")[0]


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is open, keeping the error that caused it: SQLite
    rolls back by itself on some errors (disk full, I/O errors), and a ROLLBACK then
    fails with "no transaction is active", which must not replace the real cause."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _explained(exc: sqlite3.Error, path: Path) -> sqlite3.Error:
    """``exc``, or a clearer error of the same class if SQLite's text hides the cause:
    on a full disk, writing the WAL index can fail as a bare "disk I/O error"."""
    if "disk I/O error" not in str(exc):
        return exc
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return exc
    free = fs.f_bavail * fs.f_frsize
    if free >= _NEARLY_FULL:
        return exc
    clearer = type(exc)(f"{exc}: database or disk is full ({free} bytes free on {path.parent})")
    clearer.__cause__ = exc
    return clearer


def _file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _create_owner_only(path: str) -> None:
    """Create ``path`` empty with mode 0o600 if it does not exist (never truncates)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _OWNER_ONLY)
    os.close(fd)


#: The writer asks for a checkpoint after this many commits or rows, whichever first
#: (SQLite's own automatic checkpoint would run at ~1000 WAL pages, in a commit).
_CHECKPOINT_COMMITS: Final = 100
_CHECKPOINT_ROWS: Final = 1000


class _Checkpointer:
    """Copies the WAL back into the database from a connection and a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold,
    and with ``synchronous=NORMAL`` it is where the fsyncs happen: that commit -- and
    every append queued behind it, from all the sessions sharing the store -- waits
    for the disk. So the writer turns it off and asks this thread instead; a
    ``PASSIVE`` checkpoint takes no write lock, so commits go on meanwhile. If a
    checkpoint fails (a full disk, a read-only file), :attr:`failed` is set and the
    writer goes back to SQLite's automatic checkpoints (the WAL must not grow for
    ever); the writer's own commits report the fault.
    """

    def __init__(self, path: str, busy_ms: int) -> None:
        self._path = path
        self._busy_ms = busy_ms
        self._cond = threading.Condition()
        self._due = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.failed = False
        self.runs = 0  # checkpoints done (for tests)

    def request(self) -> None:
        """Ask for a checkpoint soon (from the writer, after commits). Never blocks
        on the disk."""
        with self._cond:
            if self._stopping or self.failed:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="voxtrio sqlite checkpoint", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                with self._cond:
                    while not self._due and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    self._due = False
                try:
                    if conn is None:  # mode=rw: never creates a file the writer lost
                        uri = f"file:{urllib.parse.quote(self._path)}?mode=rw"
                        conn = sqlite3.connect(
                            uri, uri=True, timeout=self._busy_ms / 1000, isolation_level=None,
                            check_same_thread=False,
                        )  # fmt: skip
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error:
                    self.failed = True
                    return
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        """Stop the thread (after the checkpoint in progress) and close its
        connection; a later :meth:`request` starts them again. Blocks."""
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify()
        if thread is not None:
            thread.join()
        with self._cond:
            self._stopping = False
            self._due = False


class SqliteTranscriptStore(ThreadedStore):
    """Items in an SQLite file: one writer connection, WAL mode, owner-only files.

    Construction only checks the path; the file is created (mode 0o600, and so are
    its ``-wal`` and ``-shm`` files) and the schema set up on the first write or
    read. Every async method runs its SQLite work in a worker thread, one call at a
    time; :meth:`items` blocks (for apps, tools and tests).

    Share one store between all the sessions of a process (and open the file in one
    process only): appends from every session are committed together, one
    transaction per lot (see :mod:`voxtrio.stores.threaded`), so the store's own
    part of :data:`~voxtrio.stores.base.DURABILITY_BOUND_S` stays small with
    hundreds of sessions (the rest is the event loop's; figures in RELIABILITY.md).
    Separate stores on the same file contend for SQLite's single write lock instead.
    WAL checkpoints run in a thread and connection of the store's own (see
    ``_Checkpointer``), not inside a commit; :meth:`close` ends that thread.

    Faults keep their real cause: a locked database (``database is locked``, after
    ``busy_timeout_s``), a read-only file or directory, a full disk, and a file
    removed while open (:class:`~voxtrio.stores.base.StoreLostError`, noticed by a
    ``stat`` before each transaction; the next write recreates the file).

    Schema (version :data:`SCHEMA_VERSION`, recorded in ``schema_version``): table
    ``items(session_id, item_key, seq, kind, data, updated_s)`` keyed by
    ``(session_id, item_key)``, with ``data`` the item as JSON. A file written by a
    newer schema is refused with ``sqlite3.DatabaseError``.

    Args:
        path: the database file; its directory must exist.
        synchronous: ``"NORMAL"`` (commits survive a killed process; the last ones
            before a power loss or kernel crash may be rolled back) or ``"FULL"``
            (they also survive a power loss, at the cost of an fsync per commit).
        busy_timeout_s: how long a write waits for a lock held by another process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        text = os.fspath(path)
        if not text or text == ":memory:" or text.startswith("file:"):
            raise ValueError("path must name a file (use MemoryTranscriptStore for memory)")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if not (busy_timeout_s >= 0 and math.isfinite(busy_timeout_s)):
            raise ValueError(f"busy_timeout_s must be finite and >= 0, got {busy_timeout_s}")
        self._path = Path(text)
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout_s * 1000)
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None  # of the file the connection opened
        self._lock = threading.Lock()  # one SQLite call at a time, whatever the thread
        self._closed = False
        self._checkpointer = _Checkpointer(text, self._busy_ms)
        self._since_checkpoint = (0, 0)  # commits and rows since the last request
        super().__init__()

    def __repr__(self) -> str:
        return f"SqliteTranscriptStore({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The path of the SQLite database file."""
        return self._path

    # -- connection (always called with the lock held)

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("this SqliteTranscriptStore is closed")
        if self._conn is not None:
            return self._conn
        base = str(self._path)
        # SQLite gives the -wal and -shm files the main file's mode; create all three
        # owner-only ourselves anyway, before SQLite can create them with the umask's.
        for suffix in ("", "-wal", "-shm"):
            _create_owner_only(base + suffix)
        conn = sqlite3.connect(
            base, timeout=self._busy_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch {base} to WAL mode ({mode})")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if not self._checkpointer.failed:  # checkpoints off the commit path
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0]
                if version is None:
                    conn.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                    )
                elif version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"{base} has transcript schema version {version}; this voxtrio "
                        f"reads up to {SCHEMA_VERSION}"
                    )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._file_id = _file_id(base)
        return conn

    def _check_file(self) -> None:
        """Raise :class:`StoreLostError` if the open file is no longer at the path.

        SQLite holds its files open: if they are unlinked (the directory removed,
        the file deleted or replaced), commits go on "succeeding" into files nobody
        can open again. One ``stat`` per transaction notices; the connection is then
        dropped, so the next write makes the file again where the path says (or
        fails with the real cause, e.g. the directory is missing).
        """
        if self._conn is None:
            return
        now = _file_id(str(self._path))
        if now == self._file_id:
            return
        self._checkpointer.stop()  # its connection holds the lost files open too
        self._conn.close()
        self._conn = None
        if now is None:
            gone = self._path.parent if not self._path.parent.exists() else self._path
            cause = f"{str(gone)!r} was removed"
        else:
            cause = f"{str(self._path)!r} was replaced by another file"
        raise StoreLostError(
            errno.ENOENT,
            f"the open SQLite database is gone: {cause}; what it held is lost "
            "(the writer stores the transcript again once the path is usable)",
        )

    def _append_sync(self, session_id: str, items: Sequence[Item]) -> None:
        self._append_many_sync([(session_id, list(items))])

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        """Every batch (of any session) in one transaction."""
        try:
            self._write(batches)
        except sqlite3.Error as exc:
            clearer = _explained(exc, self._path)
            if clearer is exc:
                raise
            raise clearer from exc

    def _write(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        with self._lock:
            self._check_file()
            conn = self._connect()
            now = time.time()
            rows = [
                (session_id, _key_text(i.key), i.seq, _kind(i), encode_item(i), now)
                for session_id, items in batches
                for i in items
            ]
            if len(rows) <= _CHUNK_ROWS:
                # One statement outside BEGIN/COMMIT is a transaction of its own
                # (autocommit: atomic, durable when it returns), and two calls into
                # SQLite fewer -- each a GIL release and retake (see _CHUNK_ROWS).
                try:
                    conn.execute(_upsert(len(rows)), [v for row in rows for v in row])
                except BaseException:
                    _rollback(conn)
                    raise
                self._after_commit(conn, len(rows))
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(rows), _CHUNK_ROWS):
                    chunk = rows[start : start + _CHUNK_ROWS]
                    conn.execute(_upsert(len(chunk)), [v for row in chunk for v in row])
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self._after_commit(conn, len(rows))

    def _after_commit(self, conn: sqlite3.Connection, rows: int) -> None:
        """Ask for a checkpoint now and then (or, if checkpoints in their own thread
        failed, let SQLite checkpoint in the commits again)."""
        if self._checkpointer.failed:
            if self._since_checkpoint != (-1, -1):
                conn.execute("PRAGMA wal_autocheckpoint = 1000")
                self._since_checkpoint = (-1, -1)
            return
        commits, written = self._since_checkpoint
        commits, written = commits + 1, written + rows
        if commits >= _CHECKPOINT_COMMITS or written >= _CHECKPOINT_ROWS:
            self._checkpointer.request()
            commits, written = 0, 0
        self._since_checkpoint = (commits, written)

    def _items_sync(self, session_id: str) -> list[Item]:
        with self._lock:
            if self._conn is None and not self._path.exists():
                return []
            conn = self._connect()
            rows = conn.execute(_SELECT, (session_id,)).fetchall()
        try:
            return [decode_item(data) for (data,) in rows]
        except ValueError as exc:  # a damaged or hand-edited file: a fault, not a bug
            raise sqlite3.DatabaseError(f"{self._path} holds a damaged item: {exc}") from None

    # -- public

    def session_ids(self) -> list[str]:
        """The sessions with stored items, sorted. Blocks."""
        with self._lock:
            if self._conn is None and not self._path.exists():
                return []
            rows = (
                self._connect()
                .execute("SELECT DISTINCT session_id FROM items ORDER BY session_id")
                .fetchall()
            )
        return [sid for (sid,) in rows]

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL). Idempotent; blocks."""
        with self._lock:
            self._closed = True
            self._checkpointer.stop()
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --------------------------------------------------------------------------- actor
