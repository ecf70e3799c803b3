"""One contract for every transcript store: memory, SQLite and PostgreSQL.

Each test runs against every backend where it means something (the memory store has no
schema and does not outlive its process). PostgreSQL is a real server (see
tests/pg_helpers.py); each test gets a fresh schema in it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from voxtrio.actors import transcript_store as ts
from voxtrio.codecs.transcript import AssistantItem, Item, ToolCallItem, TranscriptBuilder, UserItem
from voxtrio.messages import (
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    ReplyTextDone,
    SpeechStarted,
)
from voxtrio.stores import (
    DURABILITY_BOUND_S,
    MemoryTranscriptStore,
    PostgresTranscriptStore,
    SqliteTranscriptStore,
    StoreUnavailableError,
    TranscriptStore,
)
from voxtrio.stores import postgres as pg_store
from voxtrio.stores import sqlite as sqlite_store

from .pg_helpers import fresh_schema, terminate_backends

ROOT = Path(__file__).resolve().parent.parent


class Backend:
    """A backend under test: opens stores on one storage, and reaches under them."""

    def __init__(self, name: str, opener: Callable[[], TranscriptStore]) -> None:
        self.name = name
        self._opener = opener
        self.opened: list[TranscriptStore] = []

    def open(self) -> TranscriptStore:
        store = self._opener()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            getattr(store, "close", lambda: None)()


class SqliteBackend(Backend):
    def __init__(self, path: Path) -> None:
        super().__init__("sqlite", lambda: SqliteTranscriptStore(path))
        self.path = path

    def versions(self) -> list[int]:
        with sqlite3.connect(self.path) as conn:
            return [v for (v,) in conn.execute("SELECT version FROM schema_version")]

    def set_version(self, version: int) -> None:
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE schema_version SET version = ?", (version,))


class PostgresBackend(Backend):
    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__("postgres", lambda: PostgresTranscriptStore(dsn, schema=schema))
        self.dsn = dsn
        self.schema = schema

    def versions(self) -> list[int]:
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute(f'SELECT version FROM "{self.schema}".schema_version').fetchall()
        return [v for (v,) in rows]

    def set_version(self, version: int) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'UPDATE "{self.schema}".schema_version SET version = %s', (version,))


ALL = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DURABLE = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        shared = MemoryTranscriptStore()
        backend = Backend("memory", lambda: shared)
        yield backend
    elif request.param == "sqlite":
        backend = SqliteBackend(tmp_path / "t.db")
        yield backend
    else:
        dsn = request.getfixturevalue("pg_dsn")
        with fresh_schema(dsn) as schema:
            backend = PostgresBackend(dsn, schema)
            try:
                yield backend
            finally:
                backend.close_all()
            return
    backend.close_all()


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request, tmp_path)


@pytest.fixture(params=DURABLE)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield from make_backend(request, tmp_path)


# ------------------------------------------------------------------------ contract


async def test_idempotent_by_item_key(backend: Backend) -> None:
    store = backend.open()
    with trio.fail_after(10):
        first: list[Item] = [UserItem("u1", "hel", 0), AssistantItem("a1", "hi", 1)]
        await store.append("s", first)
        await store.append("s", first)  # the same batch again: no duplicates
        assert await store.snapshot("s") == first
        changed = UserItem("u1", "hello", 0, pts=480)
        await store.append("s", [changed])  # same key: replaces
        assert await store.snapshot("s") == [changed, first[1]]


async def test_order_by_seq_then_key(backend: Backend) -> None:
    store = backend.open()
    seqs = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4]
    with trio.fail_after(10):
        for seq in seqs:  # one item per batch, out of order
            await store.append("s", [UserItem(f"u{seq}", f"t{seq}", seq)])
        # a tie on seq falls back to the key (plain keys: every backend agrees)
        await store.append("s", [UserItem("zz", "tie", 4), AssistantItem("b", "tie", 4)])
        got = await store.snapshot("s")
    assert [i.seq for i in got] == sorted(i.seq for i in got)
    assert [i.key for i in got if i.seq == 4] == ["assistant:b", "user:u4", "user:zz"]
    assert len(got) == len(seqs) + 2


async def test_many_sessions_isolated(backend: Backend) -> None:
    store = backend.open()
    ids = [f"call-{n:02d}" for n in range(20)]
    with trio.fail_after(20):
        for n, sid in enumerate(ids):
            await store.append(sid, [UserItem("same-id", f"{sid} says {n}", 0)])
            await store.append(sid, [AssistantItem(f"a{n}", "ok", 1)])
        for n, sid in enumerate(ids):
            got = await store.snapshot(sid)
            assert [i.key for i in got] == ["user:same-id", f"assistant:a{n}"]
            assert got[0].text == f"{sid} says {n}"  # type: ignore[union-attr]
        assert await store.snapshot("nobody") == []
    assert store.session_ids() == sorted(ids)  # type: ignore[attr-defined]


async def test_snapshot_equals_items(backend: Backend) -> None:
    store = backend.open()
    batch: list[Item] = [ToolCallItem("c1", "f", '{"x": 1}', 2), UserItem("u1", "hi", 1, pts=3)]
    with trio.fail_after(10):
        await store.append("s", batch)
        snap = await store.snapshot("s")
    assert snap == store.items("s") == sorted(batch, key=lambda i: i.seq)


async def test_unicode_and_odd_keys(backend: Backend) -> None:
    store = backend.open()
    sessions = ["appel-é😀", "quote'\"", "back\\slash", "with space", "%s %(x)s", "; DROP --"]
    odd_ids = ["\ud800lone", "nul\x00id", "😀", "", "line\nbreak", "\\u0000", "'\"`"]
    with trio.fail_after(20):
        for sid in sessions:
            items = [UserItem(i, f"text {i} in {sid}", n) for n, i in enumerate(odd_ids)]
            await store.append(sid, items)
        for sid in sessions:
            got = await store.snapshot(sid)
            want = [UserItem(i, f"text {i} in {sid}", n) for n, i in enumerate(odd_ids)]
            assert got == want
    assert store.session_ids() == sorted(sessions)  # type: ignore[attr-defined]


async def test_concurrent_appends_from_many_tasks(backend: Backend) -> None:
    store = backend.open()
    tasks, batches = 6, 15

    async def writer(t: int) -> None:
        for b in range(batches):
            mine = [UserItem(f"t{t}b{b}", "mine", b)]
            shared = [AssistantItem(f"t{t}b{b}", "shared", t * batches + b)]
            await store.append(f"own-{t}", mine)
            await store.append("shared", shared)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for t in range(tasks):
                nursery.start_soon(writer, t)
        shared = await store.snapshot("shared")
        assert [i.seq for i in shared] == list(range(tasks * batches))
        for t in range(tasks):
            assert [i.key for i in await store.snapshot(f"own-{t}")] == [
                f"user:t{t}b{b}" for b in range(batches)
            ]


def events(n: int) -> list[Event]:
    out: list[Event] = []
    for k in range(n):
        out += [
            SpeechStarted(item_id=f"u{k}", pts=k * 4800),
            InputTranscriptionCompleted(f"u{k}", f"user turn {k}", pts=k * 4800),
            ReplyTextDone(f"reply {k}", f"r{k}", f"a{k}"),
        ]
    return out


async def committed(
    store: TranscriptStore, session_id: str, ok: Callable[[list[Item]], bool]
) -> None:
    """Wait until what is committed satisfies ``ok``. The actor commits on its own
    timer, with nothing to wait on from outside, so poll (the caller's fail_after
    bounds it)."""
    while not ok(await store.snapshot(session_id)):  # noqa: ASYNC110
        await trio.sleep(DURABILITY_BOUND_S / 4)


async def test_store_actor_session_commits_through_backend(backend: Backend) -> None:
    """The real actor, live: what it committed (before its input closes) is exactly
    what a builder makes of the same events; no store fault is reported."""
    store = backend.open()
    script = events(40)
    expected = TranscriptBuilder()
    for event in script:
        expected.feed(event, created_s=1.0)
    errors_tx, errors_rx = trio.open_memory_channel[Event](100)
    send, receive = trio.open_memory_channel[ts.StoreInput](0)
    run = partial(ts.run, receive, store=store, session_id="live", errors=errors_tx)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run, clock=lambda: 1.0))
            async with send:
                for event in script:
                    await send.send(event)
                # Still live: the actor commits on its own, within its flush interval.
                await committed(store, "live", lambda got: got == expected.items)
        reported = [event async for event in errors_rx]  # closed by the actor
    assert await store.snapshot("live") == expected.items
    assert reported == []


# ----------------------------------------------------------------- durable only


async def test_schema_version_recorded_and_newer_refused(durable: Backend) -> None:
    assert isinstance(durable, SqliteBackend | PostgresBackend)
    version = (sqlite_store if durable.name == "sqlite" else pg_store).SCHEMA_VERSION
    store = durable.open()
    with trio.fail_after(10):
        await store.append("s", [UserItem("u1", "hi", 0)])
    assert durable.versions() == [version]
    getattr(store, "close")()  # noqa: B009
    durable.set_version(version + 1)
    newer = durable.open()
    with trio.fail_after(10), pytest.raises((sqlite3.Error, OSError), match="version") as info:
        await newer.snapshot("s")
    assert isinstance(info.value, ts._STORE_ERRORS)  # the actor reports and retries it
    with pytest.raises((sqlite3.Error, OSError), match="version"):
        await newer.append("s", [UserItem("u2", "no", 1)])
    durable.set_version(version)
    assert durable.versions() == [version]  # refusing wrote nothing


def test_reopen_sees_what_was_committed(durable: Backend) -> None:
    first = durable.open()
    trio.run(first.append, "s", [UserItem("u1", "kept", 0)])
    getattr(first, "close")()  # noqa: B009
    assert durable.open().items("s") == [UserItem("u1", "kept", 0)]


def read_committed(proc: subprocess.Popen[str], count: int) -> list[int]:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return [int(proc.stdout.readline()) for _ in range(count)]


def test_kill_9_of_writer_keeps_every_reported_commit(durable: Backend, tmp_path: Path) -> None:
    """A writer process appends and prints each seq once committed; after SIGKILL,
    every printed seq is stored (the lines it printed are a subset of what it wrote)."""
    assert isinstance(durable, SqliteBackend | PostgresBackend)
    target = str(durable.path) if isinstance(durable, SqliteBackend) else durable.schema
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tests.pg_helpers", durable.name, target, "killed"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        reported = read_committed(proc, 150)
        proc.send_signal(signal.SIGKILL)
        assert proc.stdout is not None
        reported += [int(line) for line in proc.stdout.read().split()]  # printed before death
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    stored = {i.seq for i in durable.open().items("killed")}
    assert set(reported) <= stored
    assert reported == list(range(len(reported)))


# --------------------------------------------------------------- PostgreSQL only

@pytest.fixture
def pg(pg_dsn: str) -> Iterator[PostgresBackend]:
    with fresh_schema(pg_dsn) as schema:
        backend = PostgresBackend(pg_dsn, schema)
        yield backend
        backend.close_all()


def named_store(pg: PostgresBackend, name: str) -> PostgresTranscriptStore:
    dsn = psycopg.conninfo.make_conninfo(pg.dsn, application_name=name)
    store = PostgresTranscriptStore(dsn, schema=pg.schema)
    pg.opened.append(store)
    return store


def password_of(dsn: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(dsn).get("password") or "")


@pytest.mark.postgres
async def test_pg_connection_loss_then_reconnect(pg: PostgresBackend) -> None:
    store = named_store(pg, f"lossy-{pg.schema}")
    with trio.fail_after(20):
        await store.append("s", [UserItem("u1", "before", 0)])
        assert terminate_backends(pg.dsn, f"lossy-{pg.schema}") == 1
        with pytest.raises(OSError, match="unavailable") as info:
            await store.append("s", [UserItem("u2", "lost", 1)])
        assert isinstance(info.value, StoreUnavailableError)
        assert isinstance(info.value, ts._STORE_ERRORS)
        secret = password_of(pg.dsn)
        assert secret
        assert secret not in str(info.value)
        assert secret not in repr(info.value)
        assert secret not in repr(store)
        await store.append("s", [UserItem("u2", "again", 1)])  # the next call reconnects
        assert [i.text for i in await store.snapshot("s")] == ["before", "again"]  # type: ignore[union-attr]


@pytest.mark.postgres
async def test_pg_actor_survives_connection_loss(pg: PostgresBackend) -> None:
    """Connection loss mid-call: reported as a recoverable store fault, retried, and
    in the end everything is committed."""
    name = f"actor-{pg.schema}"
    store = named_store(pg, name)
    script = events(10)
    expected = TranscriptBuilder()
    for event in script:
        expected.feed(event, created_s=1.0)
    errors_tx, errors_rx = trio.open_memory_channel[Event](100)
    send, receive = trio.open_memory_channel[ts.StoreInput](0)
    run = partial(ts.run, receive, store=store, session_id="s", errors=errors_tx)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run, clock=lambda: 1.0))
            async with send:
                for event in script[:6]:
                    await send.send(event)
                await committed(store, "s", lambda got: len(got) >= 2)
                assert terminate_backends(pg.dsn, name) == 1
                for event in script[6:]:
                    await send.send(event)
        reported: list[Any] = []
        async for event in errors_rx:
            reported.append(event)
    assert store.items("s") == expected.items
    assert reported, "the lost connection was not reported"
    assert all(isinstance(e, ErrorEvent) and e.code == "store_failed" for e in reported)
    assert all(e.recoverable for e in reported)
    assert all(password_of(pg.dsn) not in e.message for e in reported)


@pytest.mark.postgres
def test_pg_refused_connection_is_a_store_fault(pg: PostgresBackend) -> None:
    s_port = _free_port()  # nobody listens there
    dsn = f"postgresql://voxtrio:hunter2-secret@127.0.0.1:{s_port}/postgres"
    store = PostgresTranscriptStore(dsn, connect_timeout_s=2)
    with pytest.raises(StoreUnavailableError) as info:
        store.items("s")
    assert isinstance(info.value, OSError)
    for text in (str(info.value), repr(info.value), repr(store)):
        assert "hunter2-secret" not in text
    assert f"127.0.0.1:{s_port}" in str(info.value)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pg_bad_dsn_and_arguments() -> None:
    with pytest.raises(ValueError, match="not a valid") as info:
        PostgresTranscriptStore("host=x password=topsecret bogus_option=1")
    assert "topsecret" not in str(info.value)
    with pytest.raises(ValueError, match="schema"):
        PostgresTranscriptStore("host=x", schema="Bad-Name")
    with pytest.raises(ValueError, match="connect_timeout_s"):
        PostgresTranscriptStore("host=x", connect_timeout_s=0)
    with pytest.raises(ValueError, match="NUL"):
        PostgresTranscriptStore("host=x").items("a\x00b")
    assert "secret" not in repr(PostgresTranscriptStore("postgresql://u:secret@h:1/db"))
