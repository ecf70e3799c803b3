"""voxtrio.codecs.transcript: the builder that folds events into items, and its ordering
rules (with and without provider ids)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxtrio.codecs.transcript import (
    AssistantItem,
    Item,
    ToolResultItem,
    TranscriptBuilder,
    UserItem,
    render_context_as_text,
)
from voxtrio.messages import (
    Event,
    InputCommitted,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SpeechStarted,
    ToolCall,
    ToolResult,
)

from .test_transcript_codec import HOSTILE, item_text

# ------------------------------------------------------------------------- builder


def feed_all(builder: TranscriptBuilder, events: Sequence[Event]) -> list[Item]:
    """Feed events; return what a store would hold after upserting every change."""
    stored: dict[str, Item] = {}
    for event in events:
        for item in builder.feed(event, created_s=1.0):
            stored[item.key] = item
    return sorted(stored.values(), key=lambda i: i.seq)


@st.composite
def conversations(draw: st.DrawFn) -> list[Event]:
    """A plausible event stream: user turns whose completions may come late and out of
    order, replies, interruptions, tool calls and results."""
    events: list[Event] = []
    late: list[Event] = []
    n = draw(st.integers(1, 6))
    for turn in range(n):
        uid = f"u{turn}"
        events.append(SpeechStarted(item_id=uid, pts=turn * 1000))
        done = InputTranscriptionCompleted(uid, draw(HOSTILE), pts=turn * 1000)
        if draw(st.booleans()):
            late.append(done)
        else:
            events.append(done)
        rid = f"r{turn}"
        events.append(ReplyStarted(rid))
        if draw(st.booleans()):
            events.append(ToolCall(f"c{turn}", "lookup", "{}"))
            events.append(ToolResult(f"c{turn}", draw(HOSTILE)))
        events.append(ReplyTextDone(draw(HOSTILE), rid, f"a{turn}"))
        if draw(st.booleans()):
            events.append(ReplyInterrupted(rid))
        events.append(ReplyDone(rid))
        if len(late) > 0 and draw(st.booleans()):
            index: int = draw(st.integers(0, len(late) - 1))
            events.append(late.pop(index))
    rest: list[Event] = draw(st.permutations(late))
    events.extend(rest)
    return events


@given(conversations())
def test_builder_changes_reproduce_its_items(events: list[Event]) -> None:
    """Upserting what feed() returns gives exactly the builder's transcript."""
    builder = TranscriptBuilder()
    assert feed_all(builder, events) == builder.items


@given(conversations())
def test_builder_is_deterministic(events: list[Event]) -> None:
    assert feed_all(TranscriptBuilder(), events) == feed_all(TranscriptBuilder(), events)


@given(conversations(), st.data())
def test_repeated_events_never_duplicate(events: list[Event], data: st.DataObject) -> None:
    repeats = data.draw(st.lists(st.integers(0, len(events) - 1), max_size=6))
    noisy = list(events)
    for n in sorted(repeats, reverse=True):
        noisy.insert(n + 1, events[n])
    # a completion repeated at the very end, too
    noisy += [e for e in events if isinstance(e, InputTranscriptionCompleted)]
    assert feed_all(TranscriptBuilder(), noisy) == feed_all(TranscriptBuilder(), events)


@given(conversations())
def test_user_turns_keep_the_order_they_were_spoken(events: list[Event]) -> None:
    items = feed_all(TranscriptBuilder(), events)
    users = [i.item_id for i in items if isinstance(i, UserItem)]
    spoken = [e.item_id for e in events if isinstance(e, SpeechStarted)]
    assert users == spoken
    # every completion's text is recorded (a do-nothing builder fails here)
    texts = {
        e.item_id: item_text(e.transcript)
        for e in events
        if isinstance(e, InputTranscriptionCompleted)
    }
    assert {i.item_id: i.text for i in items if isinstance(i, UserItem)} == texts
    # each user turn comes before the reply to it
    order = [i.key for i in items]
    for n in range(len(spoken)):
        assert order.index(f"user:u{n}") < order.index(f"assistant:a{n}")


@given(st.permutations(list(range(6))))
def test_unannounced_completions_are_ordered_by_pts(order: list[int]) -> None:
    events: list[Event] = [
        InputTranscriptionCompleted(f"u{n}", f"t{n}", pts=n * 480) for n in order
    ]
    items = feed_all(TranscriptBuilder(), events)
    assert [i.item_id for i in items if isinstance(i, UserItem)] == [f"u{n}" for n in range(6)]
    assert len({i.seq for i in items}) == len(items)


def test_completion_arriving_after_the_reply_keeps_its_place() -> None:
    b = TranscriptBuilder()
    events: list[Event] = [
        SpeechStarted(item_id="u1", pts=0),
        ReplyStarted("r1"),
        ReplyTextDelta("Hel", "r1", "a1"),
        ReplyTextDone("Hello!", "r1", "a1"),
        ReplyDone("r1"),
        InputTranscriptionCompleted("u1", "hi there"),
        InputTranscriptionCompleted("u1", "hi there"),
    ]
    items = feed_all(b, events)
    assert [type(i).__name__ for i in items] == ["UserItem", "AssistantItem"]
    assert items[0].seq < items[1].seq  # positions leave room between (order.py)
    assert items[0] == UserItem("u1", "hi there", 0, 0, 1.0)


@pytest.mark.parametrize("announced", [True, False])
def test_a_committed_turn_keeps_its_place_before_a_reply_that_finishes_first(
    announced: bool,
) -> None:
    # A manual commit: no SpeechStarted, and the transcription only after the reply.
    events: list[Event] = [InputCommitted("u1")] if announced else []
    events += [
        ReplyStarted("r1"),
        ReplyTextDelta("Hel", "r1", "a1"),
        ReplyTextDone("Hello!", "r1", "a1"),
        ReplyDone("r1"),
        InputTranscriptionCompleted("u1", "hi there"),
    ]
    items = feed_all(TranscriptBuilder(), events)
    kinds = [type(i).__name__ for i in items]
    # Without the commit's announcement the turn lands after the reply, as it arrived.
    assert kinds == (["UserItem", "AssistantItem"] if announced else ["AssistantItem", "UserItem"])


def test_interruptions_mark_the_right_assistant_item() -> None:
    b = TranscriptBuilder()
    feed_all(
        b,
        [
            ReplyStarted("r1"),
            ReplyTextDone("first", "r1", "a1"),
            ReplyDone("r1"),
            ReplyStarted("r2"),
            ReplyInterrupted(),
            ReplyTextDone("second", None, "a2"),
            ReplyDone("r2", "cancelled"),
            ReplyStarted("r3"),
            ReplyTextDone("third", "r3", "a3"),
            ReplyDone("r3"),
            ReplyInterrupted(),  # nothing in progress: the last assistant item
        ],
    )
    flags = {i.item_id: i.interrupted for i in b.items if isinstance(i, AssistantItem)}
    assert flags == {"a1": False, "a2": True, "a3": True}


def test_tool_results_take_their_calls_name_and_deltas_reserve_places() -> None:
    b = TranscriptBuilder()
    feed_all(
        b,
        [
            InputTranscriptionDelta("wha", "u1"),
            ToolCall("c1", "weather", '{"city":"Oslo"}'),
            ToolResult("c1", "rain"),
            InputTranscriptionCompleted("u1", "what's the weather"),
            ReplyTextDone("It rains.", None, None),
            ReplyTextDone("Take an umbrella.", None, None),
        ],
    )
    kinds = [type(i).__name__ for i in b.items]
    assert kinds == ["UserItem", "ToolCallItem", "ToolResultItem", "AssistantItem", "AssistantItem"]
    result = b.items[2]
    assert isinstance(result, ToolResultItem)
    assert result.name == "weather"
    assert len({i.key for i in b.items}) == 5  # anonymous replies get distinct ids


@given(conversations(), conversations())
def test_resumed_builder_appends_after_prior_items(first: list[Event], second: list[Event]) -> None:
    prior = feed_all(TranscriptBuilder(), first)
    resumed = TranscriptBuilder(prior)
    assert resumed.items == prior
    feed_all(
        resumed,
        [
            *second,
            # a completion without pts or announcement, and one whose pts is below every
            # prior item's: neither may move before the prior transcript (pts restart at 0)
            InputTranscriptionCompleted("late", "late"),
            InputTranscriptionCompleted("early", "early", pts=-1),
        ],
    )
    prior_keys = {p.key for p in prior}
    new = [i for i in resumed.items if i.key not in prior_keys]
    assert [i.key for i in resumed.items[: len(prior)]] == [p.key for p in prior]
    assert all(i.seq > max((p.seq for p in prior), default=-1) for i in new)
    assert len({i.key for i in resumed.items}) == len(resumed.items)
    assert [i.seq for i in resumed.items] == sorted({i.seq for i in resumed.items})


def test_items_hold_only_valid_text() -> None:
    item = UserItem("id\udc00", "a\ud83d\ude00b\ud800")  # a pair and a lone surrogate
    assert item.text == "a\U0001f600b\ufffd"
    assert item.item_id == "id\ufffd"
    item.text.encode("utf-8")
    with pytest.raises(TypeError):
        UserItem(1, "x")  # type: ignore[arg-type]


def test_the_apps_text_messages_are_user_turns_in_order() -> None:
    builder = TranscriptBuilder()
    builder.feed(InputTranscriptionCompleted("item_1", "spoken"))
    made = builder.feed(SendText("typed", item_id="text_1"))
    assert [(type(i), i.text) for i in made if isinstance(i, UserItem)] == [(UserItem, "typed")]
    assert len(made) == 1
    assert builder.feed(SendText("typed", item_id="text_1")) == []  # idempotent by id
    builder.feed(SendText("no id"))
    assert [(i.item_id, i.text) for i in builder.items if isinstance(i, UserItem)] == [
        ("item_1", "spoken"),
        ("text_1", "typed"),
        ("text~2", "no id"),
    ]
    assert len(builder.items) == 3
    assert '"typed"' in render_context_as_text(builder.items)


# ------------------------------------------------------------- providers with no ids


@st.composite
def unnamed_turns(draw: st.DrawFn) -> list[InputTranscriptionCompleted]:
    """Completions with no item id, arriving in any order; some know their pts."""
    n = draw(st.integers(1, 8))
    turns = [
        InputTranscriptionCompleted(
            None, f"turn {k}", pts=draw(st.none() | st.just(k * 4800), label=f"pts {k}")
        )
        for k in range(n)
    ]
    shuffled: list[InputTranscriptionCompleted] = draw(st.permutations(turns))
    return shuffled


@given(unnamed_turns())
def test_unnamed_turns_never_merge_and_are_placed_by_pts_else_arrival(
    events: list[InputTranscriptionCompleted],
) -> None:
    builder = TranscriptBuilder()
    items = feed_all(builder, events)
    users = [i for i in items if isinstance(i, UserItem)]
    # one item per completion, every text kept, every id distinct
    assert sorted(u.text for u in users) == sorted(e.transcript for e in events)
    assert len({u.item_id for u in users}) == len(events)
    assert len({u.seq for u in users}) == len(events)
    # the turns that know their pts are in pts order
    timed = [u.pts for u in users if u.pts is not None]
    assert timed == sorted(timed)
    # the turns that do not are in arrival order
    untimed = [e.transcript for e in events if e.pts is None]
    assert [u.text for u in users if u.pts is None] == untimed
    assert feed_all(TranscriptBuilder(), events) == builder.items


@given(unnamed_turns(), st.data())
def test_unnamed_turns_do_not_merge_with_named_ones(
    events: list[InputTranscriptionCompleted], data: st.DataObject
) -> None:
    """Named turns whose ids spell the builder's made-up ones stay separate turns."""
    builder = TranscriptBuilder()
    named = 0
    for event in events:
        builder.feed(event)
        if data.draw(st.booleans()):
            # The next id the builder would make up, and the one it just made.
            for raw in (f"turn~{len(builder.items)}", builder.items[-1].key.split(":", 1)[1]):
                builder.feed(InputTranscriptionCompleted(raw, f"named {named}"))
                named += 1
    users = [i for i in builder.items if isinstance(i, UserItem)]
    assert len(users) == len(events) + named
    assert len({u.key for u in users}) == len(users)
    assert sorted(u.text for u in users) == sorted(
        [e.transcript for e in events] + [f"named {n}" for n in range(named)]
    )


def test_an_unnamed_turn_with_pts_goes_before_a_later_spoken_one() -> None:
    builder = TranscriptBuilder()
    builder.feed(SpeechStarted(item_id="u2", pts=9600))
    builder.feed(InputTranscriptionCompleted("u2", "second"))
    builder.feed(InputTranscriptionCompleted(None, "first", pts=0))
    builder.feed(InputTranscriptionCompleted(None, "third"))  # no pts: by arrival
    assert [i.text for i in builder.items if isinstance(i, UserItem)] == [
        "first",
        "second",
        "third",
    ]
    seqs = [i.seq for i in builder.items]
    assert seqs == sorted(set(seqs))  # the store's order is the builder's
