"""voxtrio.actors.transcript_store: the backends, the actor, and durability.

Backends are checked for parity (the same scenario gives the same items in memory and in
SQLite); the SQLite file for its promises (owner-only files, WAL, schema version); the
actor for batching, snapshots, flushing on close and on cancellation, and store faults;
and a real writer process killed with SIGKILL for durability.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from voxtrio.actors import transcript_store as ts
from voxtrio.actors import transcript_writer
from voxtrio.actors.transcript_store import (
    DURABILITY_BOUND_S,
    SCHEMA_VERSION,
    MemoryTranscriptStore,
    SqliteTranscriptStore,
    StoreInput,
    TranscriptRecorder,
    TranscriptStore,
)
from voxtrio.codecs.transcript import (
    AssistantItem,
    Item,
    ToolCallItem,
    ToolResultItem,
    UserItem,
    instructions_with_context,
)
from voxtrio.messages import (
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDone,
    SpeechStarted,
    ToolCall,
    ToolResult,
)
from voxtrio.runtime import EventHub

from .store_helpers import FlakyStore

WRITER = Path(__file__).with_name("transcript_writer.py")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TranscriptStore]:
    if request.param == "memory":
        yield MemoryTranscriptStore()
    else:
        with SqliteTranscriptStore(tmp_path / "t.db") as s:
            yield s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@asynccontextmanager
async def running(
    store: TranscriptStore,
    session_id: str = "call-1",
    *,
    errors: trio.MemorySendChannel[Event] | None = None,
    capacity: int = 0,
    **kwargs: Any,
) -> AsyncIterator[trio.MemorySendChannel[StoreInput]]:
    """Run the actor; yields its input. Leaving the block closes the input and waits."""
    send, receive = trio.open_memory_channel[StoreInput](capacity)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(ts.run, receive, store=store, session_id=session_id, errors=errors, **kwargs)
        )
        async with send:
            yield send


@asynccontextmanager
async def writing(
    store: TranscriptStore, session_id: str = "call-1", **kwargs: Any
) -> AsyncIterator[TranscriptRecorder]:
    """Run the writer actor; yields its recorder. Leaving the block closes it and waits."""
    async with trio.open_nursery() as nursery:
        recorder: TranscriptRecorder = await nursery.start(
            partial(transcript_writer.run, store=store, session_id=session_id, **kwargs)
        )
        try:
            yield recorder
        finally:
            recorder.close()


def conversation() -> list[Event]:
    """Two user turns whose transcriptions complete late and out of order, repeated,
    a tool call, replies and an interruption."""
    return [
        SpeechStarted(item_id="u1", pts=0),
        ReplyStarted("r1"),
        ToolCall("c1", "weather", '{"city": "Oslo"}'),
        ToolResult("c1", "rain"),
        ReplyTextDone("It rains in Oslo.", "r1", "a1"),
        SpeechStarted(item_id="u2", pts=48_000),
        ReplyStarted("r2"),
        ReplyInterrupted("r2"),
        InputTranscriptionCompleted("u2", "thanks, bye", pts=48_000),
        ReplyTextDone("You're welc", "r2", "a2"),
        InputTranscriptionCompleted("u1", "weather in Oslo?", pts=0),
        InputTranscriptionCompleted("u2", "thanks, bye", pts=48_000),
        InputTranscriptionCompleted("u1", "weather in Oslo?", pts=0),
    ]


EXPECTED_KEYS = [
    "user:u1",
    "tool_call:c1",
    "tool_result:c1",
    "assistant:a1",
    "user:u2",
    "assistant:a2",
]


def fixed_clock() -> float:
    return 1_700_000_000.0


# ---------------------------------------------------------------------- backends


async def test_upsert_by_key_and_order_by_seq(store: TranscriptStore) -> None:
    with trio.fail_after(10):
        items: list[Item] = [
            AssistantItem("a1", "hello", 2, response_id="r1"),
            UserItem("u1", "hi", 1, pts=480, created_s=12.5),
            ToolCallItem("c1", "f", "{}", 3),
        ]
        await store.append("s", items)
        await store.append("s", [UserItem("u1", "hi there", 1, pts=480, created_s=12.5)])
        await store.append("s", [ToolResultItem("c1", "ok", "f", 4)])
        await store.append("other", [UserItem("u1", "elsewhere", 0)])
        want = [
            UserItem("u1", "hi there", 1, pts=480, created_s=12.5),
            AssistantItem("a1", "hello", 2, response_id="r1"),
            ToolCallItem("c1", "f", "{}", 3),
            ToolResultItem("c1", "ok", "f", 4),
        ]
        assert store.items("s") == want
        assert await store.snapshot("s") == want
        assert store.items("other") == [UserItem("u1", "elsewhere", 0)]
        assert store.items("nobody") == []


async def test_odd_text_and_ids_round_trip(store: TranscriptStore) -> None:
    with trio.fail_after(10):
        odd = 'x"\\\n\u2028\x00\U0001f600\U000e0041é'
        items: list[Item] = [UserItem(odd, odd, 0), ToolCallItem(odd, odd, odd, 1)]
        await store.append(odd, items)
        assert store.items(odd) == items


def test_bad_session_ids_are_refused() -> None:
    store = MemoryTranscriptStore()
    for bad in ("", "\ud800", 3):
        with pytest.raises(ValueError, match="session_id"):
            store.items(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["", ":memory:", "file:x.db?mode=memory"])
def test_sqlite_needs_a_file_path(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        SqliteTranscriptStore(path)


async def test_sqlite_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    old = os.umask(0)  # the most permissive: anything group/world-readable would show
    try:
        with SqliteTranscriptStore(db) as store, trio.fail_after(10):
            await store.append("s", [UserItem("u", "my card number is ...", 0)])
            for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                assert path.exists()
                assert mode(path) == 0o600, path
    finally:
        os.umask(old)


async def test_sqlite_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with SqliteTranscriptStore(db) as store, trio.fail_after(10):
        await store.append("s", [UserItem("u", "x", 0)])
        other = sqlite3.connect(db)
        try:
            assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert other.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]
        finally:
            other.close()


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with SqliteTranscriptStore(db) as store:
        assert store.items("s") == []  # no file yet: nothing, and nothing created
        assert not db.exists()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with SqliteTranscriptStore(db) as store, pytest.raises(sqlite3.DatabaseError, match="schema"):
        store.items("s")


async def test_sqlite_items_survive_reopening(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    items: list[Item] = [UserItem("u", "hello", 0), AssistantItem("a", "hi", 1)]
    with trio.fail_after(10):
        with SqliteTranscriptStore(db) as store:
            await store.append("s", items)
        with SqliteTranscriptStore(db) as store:
            assert store.items("s") == items
            assert store.session_ids() == ["s"]
        closed = SqliteTranscriptStore(db)
        closed.close()
        with pytest.raises(sqlite3.ProgrammingError):
            await closed.append("s", items)


# ---------------------------------------------------------------------------- actor


async def test_actor_records_a_conversation(store: TranscriptStore) -> None:
    with trio.fail_after(10):
        async with running(store, clock=fixed_clock) as send:
            for event in conversation():
                await send.send(event)
        items = store.items("call-1")
        assert [i.key for i in items] == EXPECTED_KEYS
        user = items[0]
        assert user == UserItem("u1", "weather in Oslo?", 0, 0, fixed_clock())
        interrupted = {i.item_id: i.interrupted for i in items if isinstance(i, AssistantItem)}
        assert interrupted == {"a1": False, "a2": True}


async def test_backends_agree(tmp_path: Path) -> None:
    with trio.fail_after(10):
        memory = MemoryTranscriptStore()
        with SqliteTranscriptStore(tmp_path / "t.db") as sqlite:
            for backend in (memory, sqlite):
                async with running(backend, clock=fixed_clock) as send:
                    for event in conversation():
                        await send.send(event)
            assert sqlite.items("call-1") == memory.items("call-1")
            assert len(memory.items("call-1")) == len(EXPECTED_KEYS)


async def test_snapshot_holds_items_not_yet_written() -> None:
    store = MemoryTranscriptStore()
    with trio.fail_after(10):
        async with writing(store, flush_interval_s=3600) as recorder:
            await recorder.record(InputTranscriptionCompleted("u1", "first"))
            await recorder.record(ReplyTextDone("second", "r1", "a1"))
            snapshot = recorder.items
            assert [i.key for i in snapshot] == ["user:u1", "assistant:a1"]
            assert store.items("call-1") == []  # batched: not written yet
        assert store.items("call-1") == snapshot  # written when the recorder closed


async def test_the_standalone_actor_hands_out_its_recorder() -> None:
    """Events sent to the standalone actor are folded by the recorder it starts with."""
    store = MemoryTranscriptStore()
    with trio.fail_after(10):
        send, receive = trio.open_memory_channel[StoreInput](0)
        async with trio.open_nursery() as nursery:
            recorder: TranscriptRecorder = await nursery.start(
                partial(ts.run, receive, store=store, session_id="s", flush_interval_s=3600)
            )
            async with send:
                for event in conversation():
                    await send.send(event)
        assert [i.key for i in recorder.items] == EXPECTED_KEYS
        assert store.items("s") == recorder.items


async def test_writes_are_batched_within_the_flush_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryTranscriptStore()
    interval = 0.05
    with trio.fail_after(10):
        async with running(store, flush_interval_s=interval, batch_items=4) as send:
            start = trio.current_time()
            await send.send(InputTranscriptionCompleted("u1", "one"))
            await trio.sleep(interval / 2)
            await send.send(InputTranscriptionCompleted("u2", "two"))
            assert store.items("call-1") == []
            await trio.sleep_until(start + interval * 1.01)
            # both went in one batch, at the first one's deadline
            assert [i.key for i in store.items("call-1")] == ["user:u1", "user:u2"]
            # a full batch is written at once, without waiting for the interval
            for n in range(3, 7):
                await send.send(InputTranscriptionCompleted(f"u{n}", "x"))
            await trio.testing.wait_all_tasks_blocked()
            assert len(store.items("call-1")) == 6
            assert trio.current_time() - start < interval * 1.1


async def test_pending_items_are_written_when_cancelled() -> None:
    store = MemoryTranscriptStore()
    with trio.fail_after(10):
        send, receive = trio.open_memory_channel[StoreInput](0)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    ts.run,
                    receive,
                    store=store,
                    session_id="s",
                    flush_interval_s=3600,
                    clock=fixed_clock,
                )
            )
            await send.send(InputTranscriptionCompleted("u1", "said just before the end"))
            nursery.cancel_scope.cancel()
        want = [UserItem("u1", "said just before the end", 0, created_s=fixed_clock())]
        assert store.items("s") == want


async def test_a_resumed_session_continues_the_stored_transcript(tmp_path: Path) -> None:
    with trio.fail_after(10), SqliteTranscriptStore(tmp_path / "t.db") as store:
        async with running(store, "call-42") as send:
            for event in conversation():
                await send.send(event)
        # a new run (as after a restart) sees the old turns and adds after them
        async with writing(store, "call-42") as recorder:
            first = recorder.items
            assert [i.key for i in first] == EXPECTED_KEYS
            await recorder.record(InputTranscriptionCompleted("u9", "I'm back"))
            second = recorder.items
        assert second[: len(first)] == first
        assert second[-1].key == "user:u9"
        assert second[-1].seq > first[-1].seq
        assert store.items("call-42") == second
        text = instructions_with_context("Be brief.", second)
        assert '"weather in Oslo?"' in text
        assert text.index("weather in Oslo?") < text.index("I'm back")


async def test_instructions_source_folds_the_latest_snapshot_in() -> None:
    """The hub answers the link's instructions from its fold, after routing every
    event sent before the call; once the hub has ended, the last fold is used."""
    store = MemoryTranscriptStore()
    with trio.fail_after(10):
        hub = EventHub()
        send, receive = trio.open_memory_channel[Event](16)
        async with (
            writing(store, flush_interval_s=3600) as recorder,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(partial(hub.run, receive, recorder=recorder))
            source = hub.instructions_source("Be brief.")
            hub.open()
            assert await source() == "Be brief."  # nothing to fold yet
            send.send_nowait(InputTranscriptionCompleted("u1", "my name is Ada"))
            first = await source()  # no checkpoint for the hub first: it waits
            assert first.startswith("Be brief.\n\n## ")
            assert 'user: "my name is Ada"' in first
            send.close()
        assert await source() == first  # the hub is gone: the last fold is used
    with pytest.raises(ValueError, match="budget_chars"):
        hub.instructions_source("x", budget_chars=10)


async def test_store_faults_are_reported_and_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FlakyStore(failures=2)
    errors_tx, errors_rx = trio.open_memory_channel[Event](10)
    with trio.fail_after(30):
        async with running(store, errors=errors_tx) as send:
            await send.send(InputTranscriptionCompleted("u1", "hello"))
            await send.send(InputTranscriptionCompleted("u2", "again"))
        reported = [e async for e in errors_rx]  # the actor closed errors on exit
    assert len(reported) == 2
    for event in reported:
        assert isinstance(event, ErrorEvent)
        assert (event.code, event.source, event.recoverable) == ("store_failed", "store", True)
        assert "database is locked" in event.message
    assert [i.key for i in store.items("call-1")] == ["user:u1", "user:u2"]


async def test_a_locked_database_is_reported_and_written_once_free(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    errors_tx, errors_rx = trio.open_memory_channel[Event](10)
    with trio.fail_after(20), SqliteTranscriptStore(db, busy_timeout_s=0) as store:
        await store.append("s", [UserItem("u0", "before", 0)])
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
            async with running(store, "s", errors=errors_tx) as send:
                await send.send(InputTranscriptionCompleted("u1", "hello"))
                event = await errors_rx.receive()
                assert isinstance(event, ErrorEvent)
                assert event.code == "store_failed"
                assert "locked" in event.message
                other.execute("ROLLBACK")
        finally:
            other.close()
        assert [i.key for i in store.items("s")] == ["user:u0", "user:u1"]


async def test_a_store_that_never_recovers_is_given_up_at_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FlakyStore(failures=10**9)
    errors_tx, errors_rx = trio.open_memory_channel[Event](100)
    with trio.fail_after(60):
        async with running(store, errors=errors_tx) as send:
            await send.send(InputTranscriptionCompleted("u1", "hello"))
        reported = [e async for e in errors_rx]
    assert reported
    last = reported[-1]
    assert isinstance(last, ErrorEvent)
    assert last.recoverable is False
    assert "gave up" in last.message
    assert store.items("call-1") == []


class GatedStore(MemoryTranscriptStore):
    """Appends wait until ``gate`` is set: a disk that has stalled."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        await self.gate.wait()
        await super().append(session_id, items)


async def test_a_stalled_store_pushes_back_after_max_pending() -> None:
    store = GatedStore()
    sent = 0
    with trio.fail_after(10):
        async with running(store, batch_items=4, max_pending=8) as send:

            async def produce() -> None:
                nonlocal sent
                for n in range(40):
                    await send.send(InputTranscriptionCompleted(f"u{n}", "x"))
                    sent += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                await trio.testing.wait_all_tasks_blocked()
                # one batch is stuck in the store, at most max_pending wait behind it
                assert 4 <= sent <= 4 + 8 + 1
                store.gate.set()
        assert len(store.items("call-1")) == 40


async def test_bad_arguments_are_refused() -> None:
    _, receive = trio.open_memory_channel[StoreInput](0)
    store = MemoryTranscriptStore()
    bad: list[tuple[dict[str, object], type[Exception]]] = [
        ({"session_id": ""}, ValueError),
        ({"flush_interval_s": -1.0}, ValueError),
        ({"flush_interval_s": float("nan")}, ValueError),
        ({"batch_items": 0}, ValueError),
        ({"batch_items": 10, "max_pending": 5}, ValueError),
        ({"store": object()}, TypeError),
    ]
    with trio.fail_after(10):
        for kwargs, exc in bad:
            args: dict[str, object] = {"store": store, "session_id": "s", **kwargs}
            with pytest.raises(exc):
                await ts.run(receive, **args)  # type: ignore[arg-type]


async def test_recording_into_a_finished_writer_fails_clearly() -> None:
    with trio.fail_after(10):
        async with writing(MemoryTranscriptStore()) as recorder:
            pass
        with pytest.raises(trio.ClosedResourceError):
            await recorder.record(InputTranscriptionCompleted("u1", "too late"))


# --------------------------------------------------------------------- durability


def _run_and_kill(
    db: Path, session_id: str, delay_s: float
) -> tuple[float, list[tuple[str, float]]]:
    """Start a writer, let it run ``delay_s`` after it is ready, SIGKILL it.
    Returns the kill time and the (key, ack time) lines it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), session_id],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    # Read its output as it comes: a pipe can be as small as 8 KiB (once the user's
    # pipes use pipe-user-pages-soft), and a writer blocked on a full pipe stops
    # committing, which would look like lost items.
    lines: list[str] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    try:
        assert stdout.readline() == "ready\n"
        reader.start()
        time.sleep(delay_s)  # picks the kill point; nothing below depends on the timing
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        out = "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acks = []
    for line in out.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill is not an acknowledgement
            key, at = line.split()
            acks.append((key, float(at)))
    return killed_at, acks


def _explain_loss(
    seed: int,
    session_id: str,
    missing: set[str],
    stored: Mapping[str, object],
    killed_at: float,
    acks: list[tuple[str, float]],
) -> str:
    """What a failure needs to be understood: which kinds were lost, when they were
    acknowledged relative to the kill, and whether the writer stalled (its acks stop:
    a process starved of CPU acknowledges nothing and commits nothing)."""
    at = dict(acks)
    lost_at = sorted(killed_at - at[k] for k in missing)
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(acks)]
    kinds = {kind: sum(k.startswith(kind) for k in missing) for kind in ("user", "assistant")}
    return (
        f"seed {seed}, {session_id}: lost {len(missing)} ({kinds}), e.g. {sorted(missing)[:5]}; "
        f"acknowledged {lost_at[0]:.3f}-{lost_at[-1]:.3f} s before the kill; "
        f"{len(stored)} stored, {len(acks)} acknowledged; largest gap between "
        f"acknowledgements {max(gaps, default=0.0):.3f} s"
    )


@pytest.mark.slow
def test_killed_writer_keeps_every_item_acknowledged_before_the_bound(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    expected: dict[str, set[str]] = {}
    timings: dict[str, tuple[float, list[tuple[str, float]]]] = {}
    for round_ in range(3):
        session_id = f"call-{round_}"
        killed_at, acks = _run_and_kill(db, session_id, rng.uniform(0.3, 0.9))
        timings[session_id] = (killed_at, acks)
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        due = {key for key, at in acks if at <= killed_at - DURABILITY_BOUND_S}
        assert len(due) > 20, f"seed {seed}: too few acknowledgements to test ({len(acks)})"
        expected[session_id] = due
        with SqliteTranscriptStore(db) as store:
            for sid, keys in expected.items():  # earlier rounds' items are still there
                stored = {i.key: i for i in store.items(sid)}
                missing = keys - stored.keys()
                assert not missing, _explain_loss(seed, sid, missing, stored, *timings[sid])
                for key in keys:
                    n = key.split(":")[1][1:]
                    item = stored[key]
                    want = f"user turn {n}" if key.startswith("user:") else f"reply {n}"
                    assert isinstance(item, UserItem | AssistantItem)
                    assert item.text == want
        assert mode(db) == 0o600
