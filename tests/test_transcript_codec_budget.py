"""voxtrio.codecs.transcript: the budget of instructions_with_context (what is dropped,
what is cut, what is always kept) and the JSON encoding of items, checked with the
independent block parser of test_transcript_codec."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from voxtrio.codecs.transcript import (
    MIN_BUDGET_CHARS,
    AssistantItem,
    Item,
    ToolCallItem,
    ToolResultItem,
    UserItem,
    decode_item,
    encode_item,
    instructions_with_context,
)

from .test_transcript_codec import HOSTILE, Block, expected, parse_block, renders, transcripts

# ---------------------------------------------------------------------------- budget

LONG_TEXT = st.text(alphabet='ab\n"\u2028é', max_size=600)


def folded(items: list[Item], budget: int) -> tuple[list[Item], Block]:
    """(the items that render, the parsed block of their folding into ``budget``);
    skips the example when nothing renders."""
    shown = [i for i in items if renders(i)]
    assume(shown)
    return shown, parse_block(instructions_with_context("", items, budget_chars=budget), "")


@given(
    transcripts(LONG_TEXT) | transcripts(),
    st.integers(MIN_BUDGET_CHARS, MIN_BUDGET_CHARS + 4000),
)
@settings(max_examples=300)
def test_budget_is_never_exceeded(items: list[Item], budget: int) -> None:
    out = instructions_with_context("base", items, budget_chars=budget)
    assert len(out) - len("base") <= budget


@given(transcripts(LONG_TEXT), st.integers(MIN_BUDGET_CHARS, MIN_BUDGET_CHARS + 3000))
@settings(max_examples=300)
def test_newest_turn_is_always_kept(items: list[Item], budget: int) -> None:
    shown, block = folded(items, budget)
    kind, fields = block.lines[-1]
    want_kind, want = expected(shown[-1])
    assert kind == want_kind
    assert fields.keys() == want.keys()
    for key, value in fields.items():
        if isinstance(value, str) and value != want[key]:
            # Cut to fit: an ellipsis and then the field's end.
            assert value.startswith("\u2026")
            assert want[key].endswith(value[1:])
        else:
            assert value == want[key]


@given(transcripts(LONG_TEXT), st.integers(MIN_BUDGET_CHARS, MIN_BUDGET_CHARS + 3000))
@settings(max_examples=300)
def test_only_the_oldest_turns_are_dropped(items: list[Item], budget: int) -> None:
    shown, block = folded(items, budget)
    # What is kept is exactly the newest len(kept) turns, counted by the marker.
    assert block.elided + len(block.lines) == len(shown)
    assert block.lines[:-1] == [expected(i) for i in shown[block.elided : -1]]


@given(transcripts(LONG_TEXT), st.integers(MIN_BUDGET_CHARS, MIN_BUDGET_CHARS + 3000))
@settings(max_examples=200)
def test_results_of_kept_tool_calls_are_kept(items: list[Item], budget: int) -> None:
    # Give every call a result later on, with long output, to put them under pressure.
    paired: list[Item] = []
    for item in items:
        paired.append(attrs.evolve(item, seq=len(paired)))
        if isinstance(item, ToolCallItem):
            paired.append(ToolResultItem(item.call_id, "r" * 300, item.name, len(paired)))
    assume(any(renders(i) for i in paired))
    block = parse_block(instructions_with_context("", paired, budget_chars=budget), "")
    kept_calls = {f["call_id"] for k, f in block.lines if k == "call"}
    kept_results = {f["call_id"] for k, f in block.lines if k == "result"}
    assert kept_calls <= kept_results


@given(
    transcripts(LONG_TEXT),
    st.sampled_from(["user", "assistant", "call", "result"]),
    st.text(alphabet='xy\n\u2028"', min_size=2000, max_size=6000),
    st.integers(MIN_BUDGET_CHARS, MIN_BUDGET_CHARS + 1500),
)
@settings(max_examples=100, deadline=None)
def test_an_oversized_newest_turn_is_cut_to_fit(
    items: list[Item], kind: str, big: str, budget: int
) -> None:
    seq = len(items)
    choices: dict[str, Item] = {
        "user": UserItem("u-new", big, seq),
        "assistant": AssistantItem("a-new", big, seq),
        "call": ToolCallItem("c-new", "tool", big, seq),
        "result": ToolResultItem("c-new", big, None, seq),
    }
    newest = choices[kind]
    out = instructions_with_context("", [*items, newest], budget_chars=budget)
    assert len(out) <= budget
    block = parse_block(out, "")
    assert len(block.lines) == 1
    assert block.elided == sum(renders(i) for i in items)
    got_kind, fields = block.lines[0]
    assert got_kind == kind
    cut = str(fields.get("text", fields.get("arguments", fields.get("output"))))
    assert cut.startswith("\u2026")
    assert big.endswith(cut[1:])
    assert len(cut) > 1


def test_a_large_transcript_is_cut_to_the_newest_turns() -> None:
    items: list[Item] = [UserItem(f"u{n}", f"turn {n} " + "x" * 100, n) for n in range(1000)]
    out = instructions_with_context("base", items, budget_chars=5000)
    block = parse_block(out, "base")
    assert 0 < len(block.lines) < 1000
    assert block.elided == 1000 - len(block.lines)
    assert block.lines[-1][1]["text"].startswith("turn 999 ")


def test_budget_below_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="budget_chars"):
        instructions_with_context("b", [UserItem("u", "hi", 0)], budget_chars=MIN_BUDGET_CHARS - 1)
    with pytest.raises(TypeError):
        instructions_with_context(b"b", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        instructions_with_context("b", ["not an item"])  # type: ignore[list-item]


# ------------------------------------------------------------------- item encoding


@given(transcripts(HOSTILE | st.text()))
def test_encode_decode_round_trip(items: list[Item]) -> None:
    for item in items:
        data = encode_item(item)
        assert data.isascii()
        assert decode_item(data) == item


@pytest.mark.parametrize("data", ["", "{}", '{"kind": "nope"}', '{"kind": "user"}', "[1]"])
def test_decode_rejects_garbage(data: str) -> None:
    with pytest.raises(ValueError, match="transcript item"):
        decode_item(data)
