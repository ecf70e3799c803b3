"""open_session with a transcript store, continued: store faults reach subscribers
while the session goes on, the defaults and misuse at the call, cancellation at any
point with SQLite, and the app's own text in the transcript.
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors.transcript_store import (
    MemoryTranscriptStore,
    SqliteTranscriptStore,
)
from voxtrio.codecs.transcript import (
    DEFAULT_BASE_INSTRUCTIONS,
    Item,
    UserItem,
)
from voxtrio.messages import (
    ErrorEvent,
    InputTranscriptionCompleted,
    ReplyTextDone,
    SendText,
)
from voxtrio.runtime import open_session
from voxtrio.testing import RecordingProvider

from .cancel_helpers import cancel_later
from .loopback_helpers import Recorder
from .store_helpers import (
    BASE,
    FlakyStore,
    context_lines,
    stored,
    summary,
    user_line,
    wait_for,
)

# ------------------------------------------------------------------- 5. store faults


async def test_store_faults_reach_subscribers_while_the_session_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A locked database for 30 attempts (about a minute of retries): each failure
    is an ErrorEvent(source="store") delivered while the session runs, events keep
    flowing, and once the database is free everything is written."""
    store = FlakyStore(failures=30)
    provider = RecordingProvider()
    with trio.fail_after(600):
        async with open_session(provider, store=store, session_id="s") as session:
            sub = session.subscribe(max_buffer=1000)
            await provider.connected.wait()
            await provider.emit(InputTranscriptionCompleted("u0", "first"))
            errors: list[ErrorEvent] = []
            while len(errors) < 30:
                event = await wait_for(sub, ErrorEvent)
                errors.append(event)
                # the session goes on: an event sent now is delivered
                await provider.emit(InputTranscriptionCompleted(f"u{len(errors)}", "more"))
                assert await wait_for(sub, InputTranscriptionCompleted) == (
                    InputTranscriptionCompleted(f"u{len(errors)}", "more")
                )
    for event in errors:
        assert (event.source, event.code, event.recoverable) == ("store", "store_failed", True)
        assert "database is locked" in event.message
    # the database came back: everything was written (at the latest by the final flush)
    assert [i.key for i in store.items("s")] == [f"user:u{n}" for n in range(31)]


async def test_a_real_locked_sqlite_database_is_reported_then_written(tmp_path: Path) -> None:
    """Another connection holds the write lock: the session reports it as it happens,
    and writes once the lock is released."""
    db = tmp_path / "t.sqlite3"
    provider = RecordingProvider()
    store = SqliteTranscriptStore(db, busy_timeout_s=0)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        with trio.fail_after(30):
            async with open_session(provider, store=store, session_id="s") as session:
                sub = session.subscribe()
                await provider.connected.wait()
                other.execute("BEGIN EXCLUSIVE")
                await provider.emit(InputTranscriptionCompleted("u1", "hello"))
                error = await wait_for(sub, ErrorEvent)
                assert (error.source, error.code) == ("store", "store_failed")
                assert "locked" in error.message
                other.execute("ROLLBACK")
    finally:
        other.close()
        store.close()
    assert summary(stored(db, "s")) == [("user", "hello")]


async def test_a_database_this_version_cannot_read_is_a_fault_not_a_crash(
    tmp_path: Path,
) -> None:
    """A file written by a newer voxtrio (schema version 99): the store reports it
    from the start, the call goes on with the base instructions, the file is left
    untouched."""
    db = tmp_path / "newer.sqlite3"
    with SqliteTranscriptStore(db) as store:  # then pretend a newer version wrote it
        await store.append("other", [UserItem("u0", "an older call", 0)])
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    provider = RecordingProvider()
    with trio.fail_after(30), SqliteTranscriptStore(db) as store:
        async with (
            trio.open_nursery() as app,
            open_session(provider, instructions=BASE, store=store, session_id="s") as session,
        ):
            recorder = Recorder(session.subscribe())
            app.start_soon(recorder.run)
            await provider.connected.wait()
            await provider.emit(InputTranscriptionCompleted("u1", "hello"))
            await provider.emit(ReplyTextDone("hi", "r1", "a1"))
    assert provider.instructions == [BASE]
    errors = [e for e in recorder.events if isinstance(e, ErrorEvent)]
    assert errors
    assert all(e.source == "store" and "schema version 99" in e.message for e in errors)
    assert errors[-1].recoverable is False  # given up at the end, and said so
    assert InputTranscriptionCompleted("u1", "hello") in recorder.events  # the call went on
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT session_id FROM items").fetchall() == [("other",)]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(99,)]
    conn.close()


def _raw_rows(db: Path) -> list[tuple[str, int]]:
    """(item key, seq) of every row, in stored order, read with plain sqlite3."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT item_key, seq FROM items ORDER BY seq, item_key").fetchall()
    finally:
        conn.close()
    return [(json.loads(key), seq) for key, seq in rows]


@pytest.mark.parametrize("fault", ["locked", "damaged"])
async def test_a_stored_transcript_that_cannot_be_read_is_a_fault_not_a_crash(
    tmp_path: Path, fault: str
) -> None:
    """The old turns cannot be read at the start (the database is locked for a
    moment, or a row was damaged by hand): reported, the call goes on with the
    base instructions, and its new turns are stored after the old ones."""
    db = tmp_path / "t.sqlite3"
    with SqliteTranscriptStore(db) as store:
        await store.append("s", [UserItem("old", "from an earlier call", 0)])
    other = sqlite3.connect(db, isolation_level=None)
    if fault == "damaged":
        other.execute("UPDATE items SET data = 'not json'")
    else:
        other.execute("BEGIN EXCLUSIVE")
    provider = RecordingProvider()
    try:
        with trio.fail_after(30):
            store = SqliteTranscriptStore(db, busy_timeout_s=0)
            async with open_session(
                provider, instructions=BASE, store=store, session_id="s"
            ) as session:
                sub = session.subscribe()
                error = await wait_for(sub, ErrorEvent)
                assert (error.source, error.code) == ("store", "store_failed")
                assert "could not read the stored transcript" in error.message
                if fault == "locked":
                    other.execute("ROLLBACK")
                await provider.connected.wait()
                await provider.emit(InputTranscriptionCompleted("new", "a new turn"))
                assert await wait_for(sub, InputTranscriptionCompleted)
            store.close()
    finally:
        other.close()
    assert provider.instructions == [BASE]
    rows = _raw_rows(db)
    assert [key for key, _ in rows] == ["user:old", "user:new"]


async def test_a_final_flush_that_fails_is_reported_before_the_subscription_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FlakyStore(failures=10**9)
    provider = RecordingProvider()
    with trio.fail_after(600):
        async with (
            trio.open_nursery() as app,
            open_session(provider, store=store, session_id="s") as session,
        ):
            recorder = Recorder(session.subscribe())
            app.start_soon(recorder.run)
            await provider.connected.wait()
            await provider.emit(InputTranscriptionCompleted("u1", "hello"))
        # the reader returned: its subscription ended after the store's last word
    last = recorder.events[-1]
    assert isinstance(last, ErrorEvent)
    assert (last.source, last.code, last.recoverable) == ("store", "store_failed", False)
    assert "gave up" in last.message
    assert store.items("s") == []


async def test_leaving_is_bounded_by_close_timeout_even_with_a_stalled_disk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A disk that never comes back cannot hold the block open beyond
    close_timeout_s; the loss is reported to subscribers before they end."""
    store = StalledMemoryStore()
    provider = RecordingProvider()
    with trio.fail_after(600):
        async with trio.open_nursery() as app:
            async with open_session(
                provider, store=store, session_id="s", close_timeout_s=3.0
            ) as session:
                recorder = Recorder(session.subscribe())
                app.start_soon(recorder.run)
                await provider.connected.wait()
                await provider.emit(InputTranscriptionCompleted("u1", "hello"))
                left_at = trio.current_time()
            assert trio.current_time() - left_at == pytest.approx(3.0, abs=0.1)
    last = recorder.events[-1]
    assert isinstance(last, ErrorEvent)
    assert (last.source, last.recoverable) == ("store", False)
    assert "1 transcript item" in last.message


class StalledMemoryStore(MemoryTranscriptStore):
    """Appends never finish: a disk that hangs."""

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        await trio.sleep_forever()


# ---------------------------------------------------------- 6. defaults and misuse


async def test_the_default_store_is_in_memory_and_reachable() -> None:
    provider = RecordingProvider()
    with trio.fail_after(30):
        async with open_session(provider) as session:
            assert isinstance(session.store, MemoryTranscriptStore)
            await provider.connected.wait()
            await provider.emit(InputTranscriptionCompleted("u1", "hi"))
        async with open_session(RecordingProvider()) as other:
            pass
    assert session.session_id != other.session_id  # random ids by default
    assert session.store is not other.store
    assert summary(session.store.items(session.session_id)) == [("user", "hi")]
    assert other.store.items(other.session_id) == []
    # With nothing to fold in, the default instructions go out as they are.
    assert provider.instructions == [DEFAULT_BASE_INSTRUCTIONS]


async def test_default_instructions_with_a_resumed_transcript() -> None:
    store = MemoryTranscriptStore()
    await store.append("s", [UserItem("u1", "it's me again", 0)])
    provider = RecordingProvider()
    with trio.fail_after(30):
        async with open_session(provider, store=store, session_id="s"):
            await provider.connected.wait()
    (instructions,) = provider.instructions
    assert instructions.startswith(DEFAULT_BASE_INSTRUCTIONS + "\n\n")
    assert context_lines(instructions) == [user_line("it's me again")]


@pytest.mark.parametrize(
    "store",
    [object(), "t.sqlite3", Path("t.sqlite3"), MemoryTranscriptStore, SqliteTranscriptStore],
    ids=["object", "str", "path", "memory-class", "sqlite-class"],
)
async def test_a_store_that_is_not_a_store_is_a_type_error_at_the_call(store: Any) -> None:
    provider = RecordingProvider()
    with trio.fail_after(30):
        with pytest.raises(TypeError, match="store must be a transcript store"):
            async with open_session(provider, store=store):
                pass
    assert provider.instructions == []  # nothing was started


@pytest.mark.parametrize("session_id", ["", 42, b"call", "caf\udce9"])
async def test_an_invalid_session_id_is_a_value_error_at_the_call(session_id: Any) -> None:
    provider = RecordingProvider()
    with trio.fail_after(30):
        with pytest.raises(ValueError, match="session_id"):
            async with open_session(provider, session_id=session_id):
                pass
    assert provider.instructions == []


# ------------------------------------------------------- 7. cancellation, with SQLite


@settings(max_examples=40, deadline=None)
@given(
    steps=st.none() | st.integers(0, 60),
    cancel_at=st.floats(0.0, 0.15),
    talk=st.integers(0, 30),
)
def test_cancelled_at_any_point_with_sqlite(steps: int | None, cancel_at: float, talk: int) -> None:
    """Cancelled from outside after ``steps`` checkpoints (start-up) or at
    ``cancel_at`` seconds, while transcripts arrive every 5 ms (so the cancel falls
    before, during and after the store's 50 ms batches): no hang, nothing raised
    but the cancellation, no task left, a sound database holding every transcript
    the subscriber saw.

    Real time, not ``autojump_clock``: SQLite works in threads, and a mock clock
    that jumps whenever every task waits would jump (to any deadline, the guard's
    included) while a thread is still writing."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "t.sqlite3"
        store = SqliteTranscriptStore(db)
        provider = RecordingProvider()
        seen: list[str | None] = []

        async def main() -> None:
            before = trio.lowlevel.current_statistics().tasks_living
            with trio.fail_after(30):
                async with trio.open_nursery() as app:
                    app.start_soon(cancel_later, app.cancel_scope, steps, cancel_at)
                    async with open_session(provider, store=store, session_id="c") as session:
                        sub = session.subscribe()

                        async def read() -> None:
                            async for event in sub:
                                if isinstance(event, InputTranscriptionCompleted):
                                    seen.append(event.item_id)

                        app.start_soon(read)
                        await provider.connected.wait()
                        for n in range(talk):
                            await provider.emit(InputTranscriptionCompleted(f"u{n}", f"t{n}"))
                            await trio.sleep(0.005)
                        await trio.sleep(math.inf)  # until cancelled
            assert app.cancel_scope.cancelled_caught
            assert trio.lowlevel.current_statistics().tasks_living == before

        trio.run(main)
        store.close()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()
        ids = [i.item_id for i in stored(db, "c")]  # type: ignore[union-attr]
        # Every transcript seen is stored (and maybe one or two the reader had not
        # taken yet: the hub hands each to the store before the subscribers).
        assert ids[: len(seen)] == seen
        assert ids == [f"u{n}" for n in range(len(ids))]


async def test_text_the_app_sends_is_stored_and_carried_into_the_next_session() -> None:
    """send_text is a user turn of the conversation: subscribers see it with its item
    id, the store records it, and a resumed session's instructions carry it."""
    store = MemoryTranscriptStore()
    first, second = RecordingProvider(), RecordingProvider()
    with trio.fail_after(30):
        async with open_session(first, instructions=BASE, store=store, session_id="t") as s:
            sub = s.subscribe()
            await first.connected.wait()
            await first.emit(InputTranscriptionCompleted("item_1", "my order number is"))
            await s.send_text("A-1234 (typed)")
            seen = [await wait_for(sub, SendText)]  # published once the link sent it
            await s.aclose()
            seen += [e async for e in sub]
        async with open_session(second, instructions=BASE, store=store, session_id="t"):
            await second.connected.wait()
    [sent] = [e for e in seen if isinstance(e, SendText)]
    assert sent.text == "A-1234 (typed)"
    assert sent.item_id is not None
    assert [c for c in first.controls if isinstance(c, SendText)] == [sent]
    assert [(i.item_id, i.text) for i in store.items("t") if isinstance(i, UserItem)] == [
        ("item_1", "my order number is"),
        (sent.item_id, "A-1234 (typed)"),
    ]
    assert BASE in second.instructions[0]
    assert second.instructions[0].index("my order number is") < second.instructions[0].index(
        "A-1234 (typed)"
    )
