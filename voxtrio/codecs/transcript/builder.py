"""Folding the session's events into transcript items: :class:`TranscriptBuilder`.

Ordering of items
-----------------
Each item has a ``seq``; stores return items sorted by it. The builder gives an item its
position when it first hears of it: a user item at its ``SpeechStarted``, ``InputCommitted``
or first transcription delta if that came with the item id, an assistant item at its first text
delta, otherwise at the completion itself. So transcriptions that complete out of order
land where the speech happened. A user completion that arrives with no earlier event
naming it but with a ``pts`` is placed before any user item of the same run (not of a
resumed earlier run: pts restart at 0 each session) whose known pts is larger.

Providers that name no items (``InputTranscriptionCompleted.item_id`` is None): each
such completion is a turn of its own, under an id the builder makes up, placed by its
``pts`` as above when it has one, else where it arrived. It never merges with another
turn, named or unnamed, and a provider id that happens to spell the same made-up id
is a different turn too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from ...messages import (
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
from .items import AssistantItem, Item, ToolCallItem, ToolResultItem, UserItem, check_items
from .order import Slot as _Slot
from .order import SlotOrder

__all__ = ["TranscriptBuilder"]

_Role = Literal["user", "assistant"]


class TranscriptBuilder:
    """Folds the session's events into transcript items (pure, no I/O, no clock).

    Feed events in the order the session delivered them; :meth:`feed` returns the
    items that are new or changed (to upsert by :attr:`Item.key`), and
    :attr:`items` the whole transcript in order. Rules:

    * ``InputTranscriptionCompleted`` makes or updates the user item with that id; a
      repeated completion never duplicates it (the latest text wins, its place stays);
    * ``ReplyTextDone`` makes the assistant item (id: the item id, else the response
      id, else a fresh one);
    * ``ReplyInterrupted`` marks the interrupted reply's assistant items (the given
      response, else the reply in progress, else the last assistant item); a reply
      whose text arrives after its interruption is marked when it arrives;
    * ``ToolCall`` and ``ToolResult`` make tool items, by call id; a result takes the
      name of its call;
    * ``SpeechStarted``/``InputCommitted``/``InputTranscriptionDelta``/``ReplyTextDelta``
      with an item id reserve the item's place (see "Ordering of items" in the module docstring);
    * everything else is ignored.

    Resuming (``items`` given): the prior items stay as they are, and new ones go
    after them. Provider ids (item, response and call ids) are unique within one
    provider conversation only, and a resumed call is a new one: a provider may
    well hand out ``item_1`` again. So when this builder first hears of an id that
    a prior item already has, the new item is stored under a fresh one (``id~2``,
    ``id~3``, ...) and every later event of this run naming that id maps to it;
    a prior item is never overwritten, moved or marked interrupted by this run.
    The one exception: a ``ToolResult`` for a prior call that has no result yet
    answers that call.

    Args:
        items: the transcript so far (e.g. a store's, on resume); new items go after it.
        first_seq: the least ``seq`` a new item gets (new items go after ``items``
            anyway).
    """

    def __init__(self, items: Iterable[Item] = (), *, first_seq: int = 0) -> None:
        if isinstance(first_seq, bool) or not isinstance(first_seq, int):
            raise TypeError(f"first_seq must be an int, got {first_seq!r}")
        prior = sorted(check_items(items), key=lambda i: i.seq)
        self._items: dict[str, Item] = {}
        self._slots: dict[str, _Slot] = {}
        for item in prior:
            if item.key in self._slots:
                continue
            slot = _Slot(item.key, item.seq, getattr(item, "pts", None), mine=False)
            self._slots[item.key] = slot
            self._items[item.key] = item
        # Counts this run's slots from the least new seq: names the made-up ids.
        self._next_seq = max(first_seq, (prior[-1].seq + 1) if prior else 0)
        self._order = SlotOrder(self._slots.values(), floor=self._next_seq)
        self._open_response: str | None = None
        # Interrupted replies, with the part of their audio the caller heard.
        self._interrupted_responses: dict[str, float | None] = {}
        self._last_assistant: str | None = None
        self._tool_names: dict[str, str] = {
            i.call_id: i.name for i in self._items.values() if isinstance(i, ToolCallItem)
        }
        # (space, provider id) -> the id this run stores it under; see the docstring.
        self._local: dict[tuple[str, str], str] = {}

    def _id(self, space: Literal["user", "assistant", "tool"], raw: str, *taken: str) -> str:
        """The id this run stores the provider's id ``raw`` under: ``raw`` itself,
        unless an item with one of the key prefixes ``taken`` (default: ``space``)
        and that id exists already when this run first hears of ``raw``."""
        local = self._local.get((space, raw))
        if local is None:
            prefixes = taken or (space,)
            local, n = raw, 1
            while any(f"{prefix}:{local}" in self._slots for prefix in prefixes):
                n += 1
                local = f"{raw}~{n}"
            self._local[(space, raw)] = local
        return local

    def _fresh_id(self, space: Literal["user", "assistant"], stem: str) -> str:
        """An id of this run's own for an item the provider named not at all.

        Not recorded as the local id of any provider id: a provider id that happens
        to spell the same later gets an id of its own (``_id`` sees the slot taken),
        so an unnamed item never merges with a named one, nor with another unnamed.
        """
        local, n = f"{stem}~{self._next_seq}", 1
        while f"{space}:{local}" in self._slots:
            n += 1
            local = f"{stem}~{self._next_seq}~{n}"
        return local

    @property
    def items(self) -> list[Item]:
        """Every item made so far, in transcript order."""
        return [self._items[s.key] for s in self._order if s.key in self._items]

    def __len__(self) -> int:
        return len(self._items)

    # -- slots

    def _append_slot(self, key: str, pts: int | None = None) -> _Slot:
        slot, moved = self._order.append(key, pts)
        self._next_seq += 1
        self._slots[key] = slot
        self._renumber(moved)  # only once 2**30 slots were appended
        return slot

    def _insert_slot(self, before: _Slot, key: str, pts: int | None) -> list[Item]:
        """Insert a slot just before ``before``; returns the items renumbered to make
        room (usually none: see :mod:`voxtrio.codecs.transcript.order`)."""
        slot, moved = self._order.insert_before(before, key, pts)
        self._next_seq += 1
        self._slots[key] = slot
        return self._renumber(moved)

    def _renumber(self, moved: list[_Slot]) -> list[Item]:
        """The items of ``moved`` slots, given their slot's new seq."""
        changed: list[Item] = []
        for slot in moved:
            item = self._items.get(slot.key)
            if item is not None:
                item = attrs.evolve(item, seq=slot.seq)
                self._items[slot.key] = item
                changed.append(item)
        return changed

    def _reserve(self, key: str, pts: int | None = None) -> None:
        slot = self._slots.get(key)
        if slot is None:
            self._append_slot(key, pts)
        elif slot.pts is None and pts is not None:
            self._order.set_pts(slot, pts)

    def _put(self, item: Item) -> list[Item]:
        if self._items.get(item.key) == item:
            return []
        self._items[item.key] = item
        return [item]

    # -- events

    def feed(self, event: Event, *, created_s: float | None = None) -> list[Item]:
        """Fold one event in; returns the items it made or changed (usually 0 or 1)."""
        match event:
            case SpeechStarted(item_id=str(item_id), pts=pts):
                self._reserve(f"user:{self._id('user', item_id)}", pts)
            case InputTranscriptionDelta(item_id=str(item_id)) | InputCommitted(
                item_id=str(item_id)
            ):
                self._reserve(f"user:{self._id('user', item_id)}")
            case InputTranscriptionCompleted():
                return self._user_done(event, created_s)
            case ReplyStarted(response_id=response_id):
                self._open_response = response_id
            case ReplyTextDelta(item_id=str(item_id)):
                self._reserve(f"assistant:{self._id('assistant', item_id)}")
            case ReplyTextDone():
                return self._assistant_done(event, created_s)
            case ReplyInterrupted(response_id=response_id):
                return self._interrupt(response_id, heard_fraction(event))
            case ReplyDone(response_id=response_id):
                if response_id is None or response_id == self._open_response:
                    self._open_response = None
            case ToolCall(call_id=raw_id, name=name, arguments=arguments):
                call_id = self._id("tool", raw_id, "tool_call", "tool_result")
                self._tool_names[call_id] = name
                seq, created = self._place(f"tool_call:{call_id}", created_s)
                return self._put(ToolCallItem(call_id, name, arguments, seq, created))
            case SendText(text=text, item_id=raw_id):
                # The app's own text message: a user turn (no id: one of its own).
                if raw_id is None:
                    item_id = self._fresh_id("user", "text")
                else:
                    item_id = self._id("user", raw_id)
                seq, created = self._place(f"user:{item_id}", created_s)
                return self._put(UserItem(item_id, text, seq, None, created))
            case ToolResult(call_id=raw_id, output=output):
                call_id = self._id("tool", raw_id, "tool_result")  # may answer a prior call
                seq, created = self._place(f"tool_result:{call_id}", created_s)
                tool = self._tool_names.get(call_id)
                return self._put(ToolResultItem(call_id, output, tool, seq, created))
            case _:
                pass
        return []

    def _place(self, key: str, created_s: float | None) -> tuple[int, float | None]:
        """(the item's seq, its creation time): an item keeps both once it has them."""
        slot = self._slots.get(key) or self._append_slot(key)
        old = self._items.get(key)
        return slot.seq, old.created_s if old is not None else created_s

    def _user_done(self, event: InputTranscriptionCompleted, created_s: float | None) -> list[Item]:
        # A provider that names no items: the turn gets a fresh id of its own (so it
        # never merges with another turn), and its place comes from its pts or arrival.
        if event.item_id is None:
            item_id = self._fresh_id("user", "turn")
        else:
            item_id = self._id("user", event.item_id)
        key = f"user:{item_id}"
        moved: list[Item] = []
        slot = self._slots.get(key)
        if slot is None:
            # Before this run's first user slot with a larger known pts, if any.
            later = None if event.pts is None else self._order.first_after(event.pts)
            if later is None:
                slot = self._append_slot(key, event.pts)
            else:
                moved = self._insert_slot(later, key, event.pts)
                slot = self._slots[key]
        old = self._items.get(key)
        pts = event.pts if event.pts is not None else slot.pts
        if isinstance(old, UserItem):
            item = attrs.evolve(old, text=event.transcript, pts=old.pts if pts is None else pts)
        else:
            item = UserItem(item_id, event.transcript, slot.seq, pts, created_s)
        return moved + self._put(item)

    def _assistant_done(self, event: ReplyTextDone, created_s: float | None) -> list[Item]:
        if event.item_id is not None:
            item_id = self._id("assistant", event.item_id)
        elif event.response_id is not None:
            item_id = self._id("assistant", f"response:{event.response_id}")
        else:
            item_id = self._fresh_id("assistant", "")
        key = f"assistant:{item_id}"
        slot = self._slots.get(key) or self._append_slot(key)
        response_id = event.response_id
        if response_id is None and event.item_id is not None:
            response_id = self._open_response
        interrupted = response_id is not None and response_id in self._interrupted_responses
        text = event.text
        if interrupted and response_id is not None:
            text = heard_part(text, self._interrupted_responses[response_id])
        old = self._items.get(key)
        if isinstance(old, AssistantItem):
            item = attrs.evolve(
                old,
                text=text,
                interrupted=old.interrupted or interrupted,
                response_id=old.response_id or response_id,
            )
        else:
            item = AssistantItem(item_id, text, slot.seq, None, created_s, interrupted, response_id)
        self._last_assistant = key
        return self._put(item)

    def _interrupt(self, response_id: str | None, heard: float | None) -> list[Item]:
        target = response_id if response_id is not None else self._open_response
        changed: list[Item] = []
        if target is not None:
            self._interrupted_responses[target] = heard
            for key, item in list(self._items.items()):
                # Only this run's: response ids repeat across provider conversations.
                mine = self._slots[key].mine
                if mine and isinstance(item, AssistantItem) and item.response_id == target:
                    changed += self._mark(key, item, heard)
            return changed
        if self._last_assistant is not None:
            item = self._items[self._last_assistant]
            if isinstance(item, AssistantItem):
                changed += self._mark(self._last_assistant, item, heard)
        return changed

    def _mark(self, key: str, item: AssistantItem, heard: float | None) -> list[Item]:
        if item.interrupted:
            return []
        new = attrs.evolve(item, text=heard_part(item.text, heard), interrupted=True)
        self._items[key] = new
        return [new]


def heard_fraction(event: ReplyInterrupted) -> float | None:
    """The part of the interrupted item's audio the caller heard (None: unknown)."""
    if event.played_ms is None or not event.received_ms:
        return None
    return min(1.0, max(0.0, event.played_ms / event.received_ms))


def heard_part(text: str, fraction: float | None) -> str:
    """The words of ``text`` the caller heard, estimated from the part of its audio
    that played (the providers give no word timing): the text up to that share of
    its characters, cut back to a whole word. The whole text when unknown."""
    if fraction is None or fraction >= 1.0:
        return text
    end = round(len(text) * fraction)
    if end < len(text) and not text[end].isspace():
        space = text.rfind(" ", 0, end)
        end = max(space, 0)
    return text[:end].rstrip()
