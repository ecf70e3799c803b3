"""The transcript fold with completions arriving out of order (issue 13, failure 11):
the order is the simple rule's for any arrival order, the store's order (by seq) is
the builder's, an insertion with room changes only the inserted item, and 4,000
out-of-order items renumber a bounded number of others (before: every later item,
for each insertion -- about n**2/2 rewrites, 50 s of folding).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs.transcript import TranscriptBuilder, sort_items
from voxtrio.messages import Event, InputTranscriptionCompleted, ReplyTextDone, SpeechStarted


def _reference(events: list[Event]) -> list[str]:
    """The rule, the slow obvious way: a user completion with a pts and no earlier
    event naming it goes before the first user item with a larger known pts."""
    order: list[tuple[str, int | None]] = []  # (key, pts of a user slot)
    for event in events:
        match event:
            case SpeechStarted(item_id=str(item_id), pts=pts):
                if all(k != f"user:{item_id}" for k, _ in order):
                    order.append((f"user:{item_id}", pts))
            case InputTranscriptionCompleted(item_id=str(item_id), pts=pts):
                key = f"user:{item_id}"
                if any(k == key for k, _ in order):
                    continue
                later = [n for n, (k, p) in enumerate(order) if p is not None and pts is not None
                         and k.startswith("user:") and p > pts]  # fmt: skip
                order.insert(later[0] if later else len(order), (key, pts))
            case ReplyTextDone(item_id=str(item_id)):
                order.append((f"assistant:{item_id}", None))
            case _:
                pass
    return [k for k, _ in order]


@st.composite
def _arrivals(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 40))
    order = draw(st.permutations(range(n)))
    events: list[Event] = []
    for k in order:
        if draw(st.booleans()):
            events.append(SpeechStarted(item_id=f"u{k}", pts=k * 4800))
        events.append(InputTranscriptionCompleted(f"u{k}", f"turn {k}", pts=k * 4800))
        if draw(st.integers(0, 3)) == 0:
            events.append(ReplyTextDone(f"reply {k}", f"r{k}", f"a{k}"))
    return events


@settings(max_examples=300, deadline=None)
@given(_arrivals())
def test_the_order_is_the_rules_for_any_arrival_order(events: list[Event]) -> None:
    builder = TranscriptBuilder()
    stored: dict[str, object] = {}
    for event in events:
        for item in builder.feed(event):
            stored[item.key] = item
    keys = [i.key for i in builder.items]
    assert keys == _reference(events)
    # What a store holds (the latest of each item, sorted by seq) is the same order.
    assert [i.key for i in sort_items(list(stored.values()))] == keys  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(30)))
def test_an_insertion_with_room_changes_only_the_inserted_item(order: list[int]) -> None:
    """After a first item (anything before the run's very first one renumbers it),
    30 completions in any order: each changes exactly one item, itself."""
    builder = TranscriptBuilder()
    builder.feed(InputTranscriptionCompleted("first", "first", pts=0))
    for k in order:
        changed = builder.feed(InputTranscriptionCompleted(f"u{k}", f"turn {k}", pts=k + 1))
        assert [i.key for i in changed] == [f"user:u{k}"]
    assert [i.key for i in builder.items][1:] == [f"user:u{k}" for k in range(30)]


def test_four_thousand_out_of_order_items_renumber_few_others() -> None:
    n = 4000
    for arrival in ("random", "reverse"):
        ks = list(range(n))
        if arrival == "random":
            random.Random(7).shuffle(ks)
        else:
            ks.reverse()
        builder = TranscriptBuilder()
        changed = 0
        for k in ks:
            changed += len(builder.feed(InputTranscriptionCompleted(f"u{k}", "t", pts=k)))
        assert [i.key for i in builder.items] == [f"user:u{k}" for k in range(n)]
        # Before: each insertion rewrote every later item (~8,000,000 for reverse).
        assert changed <= 12 * n, (arrival, changed)
