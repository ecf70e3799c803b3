"""open_session with a transcript store: the conversation survives a restart, every
transcript a subscriber saw is stored when the session closes or is cancelled,
snapshots on (re)connect see every event sent before them, and tool results are
stored. (Store faults, defaults and misuse: test_session_store_faults.py. A
reconnect over the wire folding in what arrived before, and a tool call with its
result surviving one, run for both providers in test_both_providers.py.)

Sessions run against the loopback OpenAI Realtime server (real websockets on
127.0.0.1, real time) or against in-process providers (``autojump_clock`` where
time matters).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio.actors import transcript_store as store_actor
from voxtrio.actors.transcript_store import (
    MemoryTranscriptStore,
    SqliteTranscriptStore,
    StoreInput,
    TranscriptRecorder,
)
from voxtrio.codecs.transcript import (
    Item,
    ToolCallItem,
    ToolResultItem,
    TranscriptBuilder,
)
from voxtrio.messages import (
    Event,
    InputTranscriptionCompleted,
    ReplyDone,
    ReplyTextDone,
    SessionConnected,
    ToolCall,
    ToolResult,
)
from voxtrio.runtime import open_session
from voxtrio.testing import RecordingProvider

from .store_helpers import (
    BASE,
    REPLY,
    ROOT,
    ReconnectingProvider,
    StalledSqliteStore,
    assistant_line,
    context_lines,
    loopback,
    openai,
    sent_instructions,
    speak_turns,
    speech,
    stored,
    summary,
    user_line,
    wait_for,
)

# ------------------------------------------------------------- 1. resume after restart


async def test_a_second_session_resumes_the_stored_conversation(tmp_path: Path) -> None:
    """The issue's test: two open_session calls with the same session_id over the
    loopback provider. The second one's FIRST session.update carries the base
    instructions and the first session's turns, in order, inside the block."""
    db = tmp_path / "calls.sqlite3"
    with trio.fail_after(60):
        seen = await speak_turns(db, "call-42", ["my name is Ada", "I need a taxi at nine"])
        heard = [e.transcript for e in seen if isinstance(e, InputTranscriptionCompleted)]
        said = [e.text for e in seen if isinstance(e, ReplyTextDone)]
        assert heard == ["my name is Ada", "I need a taxi at nine"]
        assert said == [REPLY, REPLY]
        turns = [
            ("user", "my name is Ada"),
            ("assistant", REPLY),
            ("user", "I need a taxi at nine"),
            ("assistant", REPLY),
        ]
        assert summary(stored(db, "call-42")) == turns  # durable at a normal close

        # A new store object on the same file, a new server: as a restarted process.
        pcm, fmt = speech()
        async with loopback(["make it ten instead"]) as server:
            store = SqliteTranscriptStore(db)
            async with open_session(
                openai(server),
                instructions=BASE,
                store=store,
                session_id="call-42",
                realtime_playback=False,
            ) as session:
                sub = session.subscribe()
                await wait_for(sub, SessionConnected)
                first = await sent_instructions(server, 1)
                # and the call goes on: a new turn is stored after the old ones
                await session.send_audio(pcm, fmt)
                await wait_for(sub, ReplyDone)
            store.close()
        assert first.startswith(BASE + "\n\n## Live call in progress")
        assert context_lines(first) == [
            user_line("my name is Ada"),
            assistant_line(REPLY),
            user_line("I need a taxi at nine"),
            assistant_line(REPLY),
        ]
        items = stored(db, "call-42")
        assert summary(items) == [*turns, ("user", "make it ten instead"), ("assistant", REPLY)]
        assert [i.seq for i in items] == sorted({i.seq for i in items})  # distinct, ordered
        # Other conversations in the same file are not mixed in.
        assert stored(db, "call-43") == []


_FIRST_SESSION = """
import sys, trio
from pathlib import Path
from tests.test_session_store import speak_turns
trio.run(speak_turns, Path(sys.argv[1]), "call-7", ["the parcel is for Oslo", "by Friday"])
"""


async def test_a_new_process_resumes_the_conversation(tmp_path: Path) -> None:
    """Session 1 runs in a real separate Python process (its own loopback server),
    which exits; this process opens session 2 on the same file."""
    db = tmp_path / "calls.sqlite3"
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, "-c", _FIRST_SESSION, str(db)],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        async with loopback() as server:
            with SqliteTranscriptStore(db) as store:
                async with open_session(
                    openai(server), instructions=BASE, store=store, session_id="call-7"
                ) as session:
                    await wait_for(session.subscribe(), SessionConnected)
                    first = await sent_instructions(server, 1)
    assert first.startswith(BASE)
    assert context_lines(first) == [
        user_line("the parcel is for Oslo"),
        assistant_line(REPLY),
        user_line("by Friday"),
        assistant_line(REPLY),
    ]


def _run(prefix: str, turns: int) -> list[Event]:
    """The events of one provider conversation whose ids count from 1 (as the
    loopback server's do, and as any provider's may in a new conversation)."""
    events: list[Event] = []
    for n in range(1, turns + 1):
        events += [
            voxtrio.SpeechStarted(item_id=f"item_{n}", pts=n * 480),
            InputTranscriptionCompleted(f"item_{n}", f"{prefix} says {n}"),
            voxtrio.ReplyStarted(f"resp_{n}"),
            ToolCall(f"call_{n}", "lookup", "{}"),
            ToolResult(f"call_{n}", f"{prefix} result {n}"),
            ReplyTextDone(f"{prefix} answers {n}", f"resp_{n}", f"reply_{n}"),
        ]
        if n % 2:
            events.append(voxtrio.ReplyInterrupted(f"resp_{n}"))
        events.append(ReplyDone(f"resp_{n}"))
    return events


def _fold(builder: TranscriptBuilder, events: Sequence[Event]) -> list[Item]:
    for event in events:
        builder.feed(event, created_s=1.0)
    return list(builder.items)


@settings(max_examples=30, deadline=None)
@given(first=st.integers(0, 5), second=st.integers(1, 5), again=st.booleans())
def test_a_resumed_run_with_reused_provider_ids_overwrites_nothing(
    first: int, second: int, again: bool
) -> None:
    """The bug the loopback resume exposed: provider ids restart in a new
    conversation, and the resumed run overwrote the old turns with the same ids.
    Now the prior items stay exactly as they were, and the new run's items are
    what a fresh builder makes of its events, ids aside."""
    prior = _fold(TranscriptBuilder(), _run("old", first))
    events = _run("new", second)
    if again:  # a repeated completion in the new run still updates its own item
        events.append(InputTranscriptionCompleted("item_1", "new says 1, corrected"))
    resumed = _fold(TranscriptBuilder(prior), events)
    fresh = _fold(TranscriptBuilder(), events)
    assert resumed[: len(prior)] == prior
    new = resumed[len(prior) :]
    assert len({i.key for i in resumed}) == len(resumed)

    def shape(item: Item) -> tuple[Any, ...]:
        text = getattr(item, "text", None) or getattr(item, "output", None)
        name = getattr(item, "name", None)
        return (type(item).__name__, text, name, getattr(item, "interrupted", None))

    assert [shape(i) for i in new] == [shape(i) for i in fresh]
    # a result still belongs to its call, under the call's new id
    calls = [i for i in new if isinstance(i, ToolCallItem)]
    results = [i for i in new if isinstance(i, ToolResultItem)]
    assert [c.call_id for c in calls] == [r.call_id for r in results]


def test_a_result_for_a_prior_unanswered_call_answers_it() -> None:
    prior = _fold(TranscriptBuilder(), [ToolCall("call_1", "lookup", "{}")])
    builder = TranscriptBuilder(prior)
    (result,) = builder.feed(ToolResult("call_1", "found"))
    assert result == ToolResultItem("call_1", "found", "lookup", 1)


# ------------------------------------------------------------------- 2. durability


async def test_every_transcript_a_subscriber_saw_is_stored_at_a_normal_close(
    tmp_path: Path,
) -> None:
    """The block is left the moment the last transcript is seen (well inside the
    store's flush interval): leaving waits for the flush."""
    db = tmp_path / "t.sqlite3"
    provider = RecordingProvider()
    seen: list[InputTranscriptionCompleted] = []
    with trio.fail_after(30):
        async with open_session(
            provider, store=SqliteTranscriptStore(db), session_id="call"
        ) as session:
            sub = session.subscribe(max_buffer=1000)
            await provider.connected.wait()
            for n in range(300):
                await provider.emit(InputTranscriptionCompleted(f"u{n}", f"turn {n}"))
            async for event in sub:
                if isinstance(event, InputTranscriptionCompleted):
                    seen.append(event)
                    if len(seen) == 300:
                        break
    assert [(i.item_id, i.text) for i in stored(db, "call")] == [  # type: ignore[union-attr]
        (e.item_id, e.transcript) for e in seen
    ]


async def test_every_transcript_a_subscriber_saw_is_stored_when_cancelled(
    tmp_path: Path,
) -> None:
    """The disk stalls, so the store falls behind by thousands of items (its pending
    limit, then its input channel); the session is cancelled from outside and the
    disk comes back: the shielded flush writes every transcript a subscriber saw,
    including those still queued for the store when the cancel came."""
    db = tmp_path / "t.sqlite3"
    store = StalledSqliteStore(db)
    provider = RecordingProvider()
    seen: list[InputTranscriptionCompleted] = []
    with trio.fail_after(60):
        async with (
            trio.open_nursery() as app,
            open_session(provider, store=store, session_id="call") as session,
        ):
            sub = session.subscribe(max_buffer=20_000)

            async def read() -> None:
                async for event in sub:
                    if isinstance(event, InputTranscriptionCompleted):
                        seen.append(event)

            async def talk() -> None:
                for n in range(10_000):  # more than the store can queue
                    await provider.emit(InputTranscriptionCompleted(f"u{n}", f"t{n}"))

            app.start_soon(read)
            await provider.connected.wait()
            app.start_soon(talk)
            await trio.testing.wait_all_tasks_blocked()  # everything is stuck
            assert 8192 < len(seen) < 10_000
            app.cancel_scope.cancel()
            store.disk_back.set()
        assert app.cancel_scope.cancelled_caught
    store.close()
    ids = [i.item_id for i in stored(db, "call")]  # type: ignore[union-attr]
    assert len(seen) > 8192
    assert ids[: len(seen)] == [e.item_id for e in seen]  # every one seen is there
    assert ids == [f"u{n}" for n in range(len(ids))]  # in order, nothing twice


async def test_the_store_actor_keeps_what_is_in_its_channel_when_cancelled() -> None:
    """At the standalone actor itself: events already in its input channel when it
    is cancelled (a sender had handed them over) are folded in and stored."""
    store = MemoryTranscriptStore()
    send, receive = trio.open_memory_channel[StoreInput](100)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            recorder: TranscriptRecorder = await nursery.start(
                partial(store_actor.run, receive, store=store, session_id="s")
            )
            for n in range(50):
                send.send_nowait(InputTranscriptionCompleted(f"u{n}", f"t{n}"))
            nursery.cancel_scope.cancel()  # before the actor could read any of it
    assert [i.key for i in recorder.items] == [f"user:u{n}" for n in range(50)]
    assert store.items("s") == recorder.items


# --------------------------------------------------- 3. snapshots in order with events


async def test_instructions_on_reconnect_hold_every_transcript_sent_before() -> None:
    """Hundreds of transcripts, then at once a reconnect: the hub is still behind
    (they wait in its input), so a snapshot that went around the hub would miss
    some. Through the hub, in order, each snapshot has them all."""
    provider = ReconnectingProvider()
    texts: list[str] = []
    with trio.fail_after(30):
        async with open_session(provider, instructions=BASE) as session:
            sub = session.subscribe(max_buffer=10_000)
            await provider.connected.wait()
            for burst in range(3):
                for n in range(200):
                    texts.append(f"burst {burst} line {n}")
                    await provider.emit(InputTranscriptionCompleted(f"b{burst}n{n}", texts[-1]))
                # no checkpoint for the hub to catch up: ask right away
                instructions = await provider.reconnect()
                assert context_lines(instructions) == [user_line(t) for t in texts]
            got = [e async for e in _take(sub, 600, InputTranscriptionCompleted)]
            assert [e.transcript for e in got] == texts
    assert len(provider.instructions) == 4
    assert provider.instructions[0] == BASE


async def _take(sub: voxtrio.Subscription, n: int, kind: type[Any]) -> AsyncIterator[Any]:
    count = 0
    async for event in sub:
        if isinstance(event, kind):
            yield event
            count += 1
            if count == n:
                return


# -------------------------------------------------------------------- 4. tool results


async def test_a_tool_result_is_stored_published_and_folded_in() -> None:
    provider = ReconnectingProvider()
    call = ToolCall("call_1", "weather", '{"city": "Oslo"}')
    with trio.fail_after(30):
        async with open_session(provider, instructions=BASE, session_id="tools") as session:
            sub = session.subscribe()
            await provider.connected.wait()
            await provider.emit(call)
            assert await wait_for(sub, ToolCall) == call
            await session.send_tool_result("call_1", "rain, 7 degrees")
            # published once the link sent it, with the tool's name from the call
            sent = ToolResult("call_1", "rain, 7 degrees", "weather")
            assert await wait_for(sub, ToolResult) == sent
            instructions = await provider.reconnect()
            await session.end_input()
            await provider.input_ended.wait()
    assert provider.controls.count(sent) == 1  # sent to the model, once
    assert context_lines(instructions) == [
        '[tool call] name="weather" call_id="call_1" arguments="{\\"city\\": \\"Oslo\\"}"',
        '[tool result] name="weather" call_id="call_1" output="rain, 7 degrees"',
    ]
    items = session.store.items("tools")
    assert [type(i) for i in items] == [ToolCallItem, ToolResultItem]
    tool_call, result = items
    assert isinstance(tool_call, ToolCallItem)
    assert isinstance(result, ToolResultItem)
    assert (tool_call.call_id, tool_call.name, tool_call.arguments) == (
        "call_1",
        "weather",
        '{"city": "Oslo"}',
    )
    assert (result.call_id, result.name, result.output) == ("call_1", "weather", "rain, 7 degrees")
