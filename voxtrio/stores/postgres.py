"""The PostgreSQL transcript store: one server shared by many worker processes and hosts.

Needs psycopg 3 (``pip install voxtrio[postgres]``); it is imported on first use, so
``import voxtrio`` works without it.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..codecs.transcript import Item, decode_item, encode_item, sort_items
from .base import check_session_id
from .threaded import ThreadedStore

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "SCHEMA_VERSION",
    "PostgresStoreError",
    "PostgresTranscriptStore",
    "StoreUnavailableError",
]

#: The schema this code writes; see :class:`PostgresTranscriptStore`.
SCHEMA_VERSION: Final = 1

_T = TypeVar("_T")
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresStoreError(OSError):
    """A fault of the PostgreSQL database (refused schema, damaged row, a failed
    statement). An ``OSError``, so the store actor reports it and retries. The message
    never holds the DSN's password; the original error is not chained (its text is
    copied, scrubbed). ``sqlstate`` is PostgreSQL's error code, if it gave one."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class StoreUnavailableError(PostgresStoreError):
    """The server could not be reached, refused us, or the connection was lost.
    The next call connects again."""


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ImportError(
            "PostgresTranscriptStore needs psycopg 3: pip install 'voxtrio[postgres]'"
        ) from None
    return psycopg


def _key_text(key: str) -> str:
    # As in the SQLite store: keys may hold any JSON string (lone surrogates, NUL),
    # which PostgreSQL text cannot; ASCII JSON always stores.
    return json.dumps(key, ensure_ascii=True)


def _check_text(session_id: str) -> str:
    check_session_id(session_id)
    if "\x00" in session_id:
        raise ValueError("session_id must not contain NUL (PostgreSQL text cannot hold it)")
    return session_id


class PostgresTranscriptStore(ThreadedStore):
    """Items in a PostgreSQL database, shared by every worker that opens it.

    One connection, used one call at a time (a lock, and a capacity limiter of one
    for the worker threads); every async method runs in a worker thread, so the
    event loop never blocks. Share one store between the sessions of a process:
    their appends are committed together, one transaction per lot (see
    :mod:`voxtrio.stores.threaded`); other processes open stores of their own.
    Construction only parses the DSN; the connection is made and the schema set up on
    the first call. A connection that was lost or
    refused raises :class:`StoreUnavailableError` (an ``OSError``), and the next call
    connects again; any other database fault raises :class:`PostgresStoreError`.

    Schema (version :data:`SCHEMA_VERSION`, recorded in ``<schema>.schema_version``):
    table ``<schema>.items(session_id, item_key, seq, kind, data, updated_s)`` keyed by
    ``(session_id, item_key)``, ``data`` the item as ASCII JSON. Setting it up takes
    an advisory lock, so workers starting together do not race. A database written
    by a newer schema is refused.

    Items come back by ``seq`` then key (as :class:`MemoryTranscriptStore` orders).
    A commit is durable as the server is configured (``synchronous_commit``).

    Args:
        dsn: a libpq connection string or ``postgresql://`` URI. It (and its
            password) never appears in a repr, a log or an error.
        schema: the PostgreSQL schema (namespace) holding the tables; created if
            missing. Lower-case letters, digits and ``_``.
        connect_timeout_s: how long connecting may take.
        statement_timeout_s: how long one statement may run on the server.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "voxtrio",
        connect_timeout_s: float = 5.0,
        statement_timeout_s: float = 10.0,
    ) -> None:
        pg = _import_psycopg()
        if not isinstance(dsn, str) or not dsn:
            raise TypeError("dsn must be a non-empty str")
        if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema must match {_IDENTIFIER.pattern}, got {schema!r}")
        for name, value in (
            ("connect_timeout_s", connect_timeout_s),
            ("statement_timeout_s", statement_timeout_s),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        try:
            params = pg.conninfo.conninfo_to_dict(dsn)
        except pg.Error:
            # libpq's message may quote part of the DSN: never repeat it.
            raise ValueError("dsn is not a valid PostgreSQL connection string") from None
        self._dsn = dsn
        self._secret = str(params.get("password") or "")
        host = str(params.get("host") or "(default)")
        port = str(params.get("port") or "5432")
        self._where = f"{host}:{port}/{params.get('dbname') or '(default)'}"
        self._schema = schema
        # Name the connection for pg_stat_activity, and notice a silent network
        # (keepalives; unsent data gives up after 10 s), unless the DSN says otherwise.
        defaults = {
            "application_name": "voxtrio",
            "keepalives": "1",
            "keepalives_idle": "5",
            "keepalives_interval": "2",
            "keepalives_count": "3",
            "tcp_user_timeout": "10000",
        }
        self._extra = {k: v for k, v in defaults.items() if k not in params}
        self._connect_timeout = max(1, math.ceil(connect_timeout_s))
        self._statement_ms = int(statement_timeout_s * 1000)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one call on the connection at a time
        super().__init__()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresTranscriptStore({self._where!r}, schema={self._schema!r})"

    @property
    def schema(self) -> str:
        """The PostgreSQL schema the store's tables live in."""
        return self._schema

    # -- errors

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text.replace(self._dsn, "***")

    def _fault(self, exc: Exception) -> PostgresStoreError:
        """``exc`` (a psycopg error) as our own, scrubbed of the password."""
        psycopg = _import_psycopg()
        detail = self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        sqlstate = getattr(exc, "sqlstate", None)
        kind = type(exc).__name__
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(
                f"PostgreSQL at {self._where} unavailable ({kind}): {detail}", sqlstate
            )
        message = f"PostgreSQL at {self._where} failed ({kind}): {detail}"
        return PostgresStoreError(message, sqlstate)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A broken connection may fail to close; it is gone anyway.
            with contextlib.suppress(Exception):
                conn.close()

    # -- connection (always called with the lock held)

    def _sql(self, template: str) -> Any:
        """``template`` with ``{s}`` the quoted schema name."""
        psycopg = _import_psycopg()
        return psycopg.sql.SQL(template).format(s=psycopg.sql.Identifier(self._schema))

    def _connect(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise PostgresStoreError("this PostgresTranscriptStore is closed")
        old = self._conn
        if old is not None and not old.closed and not old.broken:
            return old
        self._drop_connection()
        pg = _import_psycopg()
        conn: psycopg.Connection[Any] = pg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            **self._extra,
        )
        try:
            conn.execute(f"SET statement_timeout = {self._statement_ms}")
            self._set_up_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _set_up_schema(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Serialise set-up across workers: concurrent CREATE ... IF NOT EXISTS race.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"voxtrio:{self._schema}",)
            )
            conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)"
                )
            )
            conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {s}.items ("
                    " session_id text NOT NULL, item_key text NOT NULL, seq bigint NOT NULL,"
                    " kind text NOT NULL, data text NOT NULL,"
                    " updated_s double precision NOT NULL,"
                    " PRIMARY KEY (session_id, item_key))"
                )
            )
            conn.execute(
                self._sql("CREATE INDEX IF NOT EXISTS items_by_seq ON {s}.items (session_id, seq)")
            )
            row = conn.execute(self._sql("SELECT max(version) FROM {s}.schema_version")).fetchone()
            version = None if row is None else row[0]
            if version is None:
                conn.execute(
                    self._sql("INSERT INTO {s}.schema_version (version) VALUES (%s)"),
                    (SCHEMA_VERSION,),
                )
            elif version > SCHEMA_VERSION:
                raise PostgresStoreError(
                    f"schema {self._schema!r} at {self._where} has transcript schema version "
                    f"{version}; this voxtrio reads up to {SCHEMA_VERSION}"
                )

    def _call(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``work`` on the connection (made if needed), one call at a time; a
        psycopg error drops the connection and is raised as our own."""
        psycopg = _import_psycopg()
        with self._lock:
            try:
                return work(self._connect())
            except psycopg.Error as exc:
                self._drop_connection()
                raise self._fault(exc) from None
            except PostgresStoreError:
                self._drop_connection()
                raise

    # -- the work (in a worker thread, or blocking for the sync methods)

    def _append_sync(self, session_id: str, items: Sequence[Item]) -> None:
        self._append_many_sync([(session_id, list(items))])

    def _append_many_sync(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        """Every batch (of any session) in one transaction."""
        now = time.time()
        rows = [
            (session_id, _key_text(i.key), i.seq, i.key.partition(":")[0], encode_item(i), now)
            for session_id, items in batches
            for i in items
        ]

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    self._sql(
                        "INSERT INTO {s}.items"
                        " (session_id, item_key, seq, kind, data, updated_s)"
                        " VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (session_id, item_key) DO UPDATE SET"
                        " seq = excluded.seq, kind = excluded.kind, data = excluded.data,"
                        " updated_s = excluded.updated_s"
                    ),
                    rows,
                )

        self._call(work)

    def _items_sync(self, session_id: str) -> list[Item]:
        query = self._sql("SELECT data FROM {s}.items WHERE session_id = %s ORDER BY seq")
        rows: list[tuple[str]] = self._call(
            lambda conn: conn.execute(query, (session_id,)).fetchall()
        )
        try:
            return sort_items([decode_item(data) for (data,) in rows])
        except ValueError as exc:  # a damaged or hand-edited row: a fault, not a bug
            raise PostgresStoreError(
                f"schema {self._schema!r} at {self._where} holds a damaged item: {exc}"
            ) from None

    # -- public

    def _check_id(self, session_id: str) -> str:
        return _check_text(session_id)

    def session_ids(self) -> list[str]:
        """The sessions with stored items, sorted. Blocks."""
        query = self._sql("SELECT DISTINCT session_id FROM {s}.items")
        rows: list[tuple[str]] = self._call(lambda conn: conn.execute(query).fetchall())
        return sorted(sid for (sid,) in rows)

    def close(self) -> None:
        """Close the connection. Idempotent; blocks."""
        with self._lock:
            self._closed = True
            self._drop_connection()
