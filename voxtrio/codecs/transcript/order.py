"""The order of a transcript's items: positions (``seq``) with room between them.

:class:`SlotOrder` keeps the builder's slots sorted by ``seq``. A slot appended at the
end gets the last ``seq`` plus :data:`GAP`, so a slot inserted later between two
others takes a ``seq`` between theirs and no other item changes: an insertion is a
binary search plus a list insert, and the store rewrites one row, not every later
one. Only when repeated insertions at one spot have used up the room there are a
few neighbours renumbered: the smallest aligned range of positions around the spot
that is sparse enough (its density below ``_T ** -level``) is spread out evenly
(the list-labelling scheme of Bender et al., amortised O(log n) renumbered per
insertion). Items given at construction (a resumed transcript) are never moved:
this run's positions are all at least ``floor``.

A user turn placed by its ``pts`` goes before this run's first user slot with a
larger known pts. The slots with a pts are kept in order with the running maximum
of their pts, which never decreases, so that first slot is found by bisection.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Final

import attrs

__all__ = ["GAP", "Slot", "SlotOrder"]

#: The room left after each appended slot (2**32: 32 insertions at one spot
#: before any neighbour is renumbered).
GAP: Final = 1 << 32
_SEQ_MAX: Final = (1 << 63) - 1  # stores keep seq as a signed 64-bit integer
_T: Final = 1.5  # the density threshold's base (1 < T < 2)


@attrs.define(eq=False)
class Slot:
    """A place in the transcript, held from the first event naming an item."""

    key: str
    seq: int
    pts: int | None = None
    mine: bool = True  # made in this run (pts are comparable)


def _seq(slot: Slot) -> int:
    return slot.seq


def _is_user(slot: Slot) -> bool:
    return slot.mine and slot.key.startswith("user:")


class SlotOrder:
    """Slots sorted by ``seq``; this run's are at ``floor`` or above."""

    def __init__(self, prior: Iterable[Slot], floor: int) -> None:
        self._slots: list[Slot] = sorted(prior, key=_seq)
        self._floor = floor
        # This run's positions: [floor, floor + 2**bits), within a signed 64-bit int.
        self._bits = min(62, max(1, (_SEQ_MAX - floor).bit_length() - 1))
        self._timed: list[Slot] = []  # this run's user slots with a pts, in order
        self._peak: list[int] = []  # running maximum of their pts

    def __iter__(self) -> Iterator[Slot]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    # -- placing

    def append(self, key: str, pts: int | None = None) -> tuple[Slot, list[Slot]]:
        """A new slot after every other; returns it and any slots renumbered."""
        last = self._slots[-1].seq if self._slots and self._slots[-1].mine else None
        # The first is at the floor (a transcript's first item has seq 0, as before),
        # so an insertion before it renumbers a few slots (rare: see _spread).
        seq = self._floor if last is None else last + GAP
        if seq >= self._floor + (1 << self._bits):  # the run used up 2**30 appends
            return self._insert_at(len(self._slots), key, pts)
        slot = Slot(key, seq, pts)
        self._slots.append(slot)
        self._track(slot)
        return slot, []

    def insert_before(self, target: Slot, key: str, pts: int | None) -> tuple[Slot, list[Slot]]:
        """A new slot just before ``target`` (one of this run's)."""
        return self._insert_at(self._index(target), key, pts)

    def _index(self, slot: Slot) -> int:
        return bisect.bisect_left(self._slots, slot.seq, key=_seq)

    def _insert_at(self, index: int, key: str, pts: int | None) -> tuple[Slot, list[Slot]]:
        low = self._floor - 1
        if index > 0 and self._slots[index - 1].mine:
            low = self._slots[index - 1].seq
        end = self._floor + (1 << self._bits)
        high = self._slots[index].seq if index < len(self._slots) else end
        slot = Slot(key, (low + high) // 2, pts)
        moved: list[Slot] = []
        if high - low < 2:
            moved = self._spread(low, slot)  # keeps the order: ``slot`` goes at ``index``
        self._slots.insert(index, slot)
        self._track(slot)
        return slot, moved

    def _spread(self, low: int, new: Slot) -> list[Slot]:
        """Renumber the sparsest-enough aligned range around ``low`` to make room
        for ``new`` just after ``low``; returns the renumbered slots (not ``new``)."""
        offset = max(0, low - self._floor)
        for level in range(1, self._bits + 1):
            start = self._floor + ((offset >> level) << level)
            size = 1 << level
            first = bisect.bisect_left(self._slots, start, key=_seq)
            end = bisect.bisect_left(self._slots, start + size, key=_seq)
            if end - first + 1 <= (2 / _T) ** level:
                break
        # (Past the last level the whole range is spread, however dense: 2**62 labels.)
        group = self._slots[first:end]
        split = bisect.bisect_right(group, low, key=_seq)
        group.insert(split, new)
        step = size // len(group)
        for n, slot in enumerate(group):
            slot.seq = start + n * step + step // 2
        return [s for s in group if s is not new]

    # -- pts

    def _track(self, slot: Slot) -> None:
        """Note a new slot's pts, if it is a user slot of this run with one."""
        if slot.pts is None or not _is_user(slot):
            return
        k = bisect.bisect_left(self._timed, slot.seq, key=_seq)
        self._timed.insert(k, slot)
        # Inserted where the running maximum first exceeds its pts (see first_after),
        # or at the end: no later maximum changes.
        self._peak.insert(k, max(slot.pts, self._peak[k - 1] if k else slot.pts))

    def set_pts(self, slot: Slot, pts: int) -> None:
        """Give ``slot`` (which had none) its pts."""
        slot.pts = pts
        if not _is_user(slot):
            return
        k = bisect.bisect_left(self._timed, slot.seq, key=_seq)
        self._timed.insert(k, slot)
        self._peak.insert(k, pts)
        # Rare (a pts learnt late): the running maximum is recomputed from here.
        for n in range(k, len(self._timed)):
            own = self._timed[n].pts
            assert own is not None
            self._peak[n] = max(own, self._peak[n - 1]) if n else own

    def first_after(self, pts: int) -> Slot | None:
        """This run's first user slot whose known pts is larger than ``pts``."""
        k = bisect.bisect_right(self._peak, pts)
        return self._timed[k] if k < len(self._timed) else None
