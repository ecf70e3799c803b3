"""PostgreSQL for the tests: where the server is, and a writer process for kill -9.

The server comes from ``VOXTRIO_TEST_PG_DSN`` (``python3 dev.py test`` starts a
throwaway one with scripts/pg_cluster.py). Without it the tests marked ``postgres``
fail, saying so, unless ``VOXTRIO_SKIP_PG=1`` asks to skip them.

As a program, ``python -m tests.pg_helpers BACKEND TARGET SESSION`` appends one item at a
time to the store and prints each committed ``seq`` once ``append`` returned, flushed;
for postgres, TARGET is the schema and the DSN comes from the environment (never argv,
which ``ps`` shows).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from voxtrio.codecs.transcript import UserItem
from voxtrio.stores import PostgresTranscriptStore, SqliteTranscriptStore, TranscriptStore

DSN_ENV = "VOXTRIO_TEST_PG_DSN"
SKIP_ENV = "VOXTRIO_SKIP_PG"
ERROR_ENV = "VOXTRIO_TEST_PG_ERROR"  # set by dev.py when it could not start the server


def require_dsn() -> str:
    """The test server's DSN, after checking it answers; fails (or skips, if asked) if not."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL tests skipped on request")
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        why = os.environ.get(ERROR_ENV)
        pytest.fail(
            f"{DSN_ENV} is not set, so the PostgreSQL tests cannot run"
            + (f" (dev.py could not start a server: {why})" if why else "")
            + ". Run `python3 dev.py test`, or `python3 scripts/pg_cluster.py run -- "
            f"<pytest command>`, or set {SKIP_ENV}=1 to skip them on purpose.",
            pytrace=False,
        )
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        name = type(exc).__name__
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
        text = str(exc).replace(str(password), "***") if password else str(exc)
        pytest.fail(
            f"the PostgreSQL server in {DSN_ENV} is unreachable ({name}: {text})", pytrace=False
        )
    return dsn


@contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A schema name no one uses yet; dropped (with its tables) afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def terminate_backends(dsn: str, application_name: str) -> int:
    """Kill (``pg_terminate_backend``) every server process of ``application_name``,
    from a second connection; returns how many."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def open_store(backend: str, target: str) -> TranscriptStore:
    if backend == "sqlite":
        return SqliteTranscriptStore(target)
    return PostgresTranscriptStore(os.environ[DSN_ENV], schema=target)


async def write_forever(backend: str, target: str, session_id: str) -> None:
    store = open_store(backend, target)
    print("ready", flush=True)
    seq = 0
    while True:
        await store.append(session_id, [UserItem(f"u{seq}", f"turn {seq}", seq)])
        print(seq, flush=True)
        seq += 1


if __name__ == "__main__":
    trio.run(write_forever, sys.argv[1], sys.argv[2], sys.argv[3])
