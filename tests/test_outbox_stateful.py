"""The link's outbox as a hypothesis state machine: no socket, no event loop.

Rules put audio and controls, write (peek + pop, as one or two wire messages),
consume up to an index the provider reports, drop by the outage budget while
disconnected, and move between connections that retain or not and reconnects that
resume or not. A plain model says what must have happened; the invariants:

* order: what the outbox offers next is exactly the model's next item(s), so
  inputs leave in the order they were put (resent ones first, in order);
* controls are never dropped;
* while disconnected, after a put, the audio kept is within the budget, and only
  the oldest audio was dropped;
* every frame put is in exactly one of: waiting, kept (written-unconfirmed),
  released (written-unconfirmed beyond the retention budget, no longer kept),
  delivered (once), dropped (counted once in the DropCounter);
* kept audio never makes the outbox full (only waiting audio does), and it stays
  within the retention budget unless the oldest kept entry holds a control;
* released audio is delivered when consumed, dropped on a resumption; a control
  is never released;
* a text is offered as a first write exactly once;
* giving up (abandon, with no connection up) returns exactly what waited, in
  order, and counts its audio as dropped: what is abandoned + what was delivered
  + what the outage budget dropped == what was put.

The retention budget is drawn per run (below, at or above the outage budget), so
runs with and without releases are both explored.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from voxtrio.actors.base import DropCounter
from voxtrio.actors.link.outbox import Outbox
from voxtrio.audio import AudioFormat, AudioFrame
from voxtrio.messages import FrameBatch, SendText

FMT = AudioFormat(16_000)
BUDGET_S = 0.1
#: Retention budgets drawn per run: 0 releases every audio-only entry at once.
KEPT_BUDGETS_S = (0.0, 0.0, 0.01, 0.03, 0.1, 0.25)
_NS = 1_000_000_000

Item = AudioFrame | SendText


def _ns(item: Item) -> int:
    return item.samples * _NS // item.sample_rate if isinstance(item, AudioFrame) else 0


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.drops = DropCounter("link_buffer")
        self.kept_budget_s: float | None = None  # set by the initialize rule
        self.connected = False
        self.retain = False
        self.next_index = 0  # wire messages written on this connection
        self.consumed = -1  # the provider's last consumed index on this connection
        self.pts = 0
        self.texts = 0
        self.put_items: list[Item] = []
        self.waiting: list[tuple[Item, bool]] = []  # (item, written before)
        self.unconfirmed: list[tuple[int, list[Item]]] = []  # (last index, items)
        self.released: list[tuple[int, list[AudioFrame]]] = []  # (last index, frames)
        self.delivered: list[Item] = []
        self.dropped: list[AudioFrame] = []
        self.abandoned: list[Item] = []
        self.first_writes: list[SendText] = []

    @initialize(kept_budget_s=st.sampled_from(KEPT_BUDGETS_S))
    def make_outbox(self, kept_budget_s: float) -> None:
        self.kept_budget_s = kept_budget_s
        self.box = Outbox(BUDGET_S, self.drops, max_kept_s=kept_budget_s)

    # ------------------------------------------------------------- input

    @precondition(lambda self: not (self.connected and self.box.full()))  # the link waits
    @rule(sizes=st.lists(st.sampled_from([80, 160, 320]), min_size=1, max_size=6))
    def put_audio(self, sizes: list[int]) -> None:
        frames = []
        for n in sizes:
            frames.append(AudioFrame.from_pcm(np.zeros((n, 1), np.int16), FMT, pts=self.pts))
            self.pts += n
        self.box.put(FrameBatch(tuple(frames)))
        self.put_items += frames
        self.waiting += [(f, False) for f in frames]
        self._drop_if_disconnected()

    @rule()
    def put_text(self) -> None:
        self.texts += 1
        text = SendText(f"text {self.texts}")
        self.box.put(text)
        self.put_items.append(text)
        self.waiting.append((text, False))
        self._drop_if_disconnected()

    def _drop_if_disconnected(self) -> None:
        if self.connected:
            return
        self.box.drop_oldest_audio()
        # The spec: the oldest waiting audio goes, just until the budget holds.
        total = sum(_ns(i) for i, _ in self.waiting)
        kept: list[tuple[Item, bool]] = []
        for item, again in self.waiting:
            if isinstance(item, AudioFrame) and total > round(BUDGET_S * _NS):
                total -= _ns(item)
                self.dropped.append(item)
            else:
                kept.append((item, again))
        self.waiting = kept
        assert self.box.audio_s <= BUDGET_S + 1e-9

    # ------------------------------------------------------------- writing

    @precondition(lambda self: self.connected and self.waiting)
    @rule(max_frames=st.integers(1, 4), wires=st.integers(1, 2))
    def write(self, max_frames: int, wires: int) -> None:
        peeked = self.box.peek(max_frames)
        first, again = self.waiting[0]
        if isinstance(first, SendText):
            assert peeked.message is first
            assert peeked.count == 1
            assert peeked.first_write is (not again)
            if peeked.first_write:
                self.first_writes.append(first)
            items: list[Item] = [first]
        else:
            run: list[Item] = []
            for item, _ in self.waiting:
                if not isinstance(item, AudioFrame) or len(run) == max_frames:
                    break
                run.append(item)
            assert isinstance(peeked.message, FrameBatch)
            assert len(peeked.message.frames) == peeked.count == len(run)
            assert all(a is b for a, b in zip(peeked.message.frames, run, strict=True))
            items = list(run)
        self.box.pop(peeked.count, wires)
        del self.waiting[: len(items)]
        self.next_index += wires
        if self.retain:
            self.unconfirmed.append((self.next_index - 1, items))
            self._release()
        else:
            self.delivered += items

    def _release(self) -> None:
        # The spec: the oldest audio-only entries go, until the kept audio is within
        # the retention budget; the first entry holding a control stops it.
        assert self.kept_budget_s is not None
        limit = round(self.kept_budget_s * _NS)
        while self.unconfirmed and self._kept_ns() > limit:
            last, items = self.unconfirmed[0]
            if not all(isinstance(i, AudioFrame) for i in items):
                break
            self.unconfirmed.pop(0)
            self.released.append((last, [i for i in items if isinstance(i, AudioFrame)]))

    def _kept_ns(self) -> int:
        return sum(_ns(i) for _, items in self.unconfirmed for i in items)

    @precondition(lambda self: self.connected and self.next_index > self.consumed + 1)
    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.consumed + 1, self.next_index - 1))
        self.consumed = index
        self.box.consume(index)
        while self.released and self.released[0][0] <= index:
            self.delivered += self.released.pop(0)[1]
        while self.unconfirmed and self.unconfirmed[0][0] <= index:
            self.delivered += self.unconfirmed.pop(0)[1]
        self._release()

    # ------------------------------------------------------------- connections

    @precondition(lambda self: not self.connected)
    @rule(retain=st.booleans())
    def connect(self, retain: bool) -> None:
        self.box.connection_up(retain=retain)
        self.connected, self.retain = True, retain
        self.next_index, self.consumed = 0, -1

    @precondition(lambda self: self.connected)
    @rule(resume=st.booleans())
    def disconnect(self, resume: bool) -> None:
        resume = resume and self.retain  # only a provider that resumes can
        self.box.connection_down(resume=resume)
        again = [(item, True) for _, items in self.unconfirmed for item in items]
        released = [frame for _, frames in self.released for frame in frames]
        if resume:
            self.waiting = again + self.waiting
            self.dropped += released  # not consumed, and gone: it cannot be resent
        else:
            self.delivered += released + [item for item, _ in again]
        self.unconfirmed = []
        self.released = []
        self.connected = self.retain = False

    # ------------------------------------------------------------- giving up

    @precondition(lambda self: not self.connected)
    @rule()
    def abandon(self) -> None:
        gone = self.box.abandon()
        assert [id(i) for i in gone] == [id(i) for i, _ in self.waiting]  # in order
        self.abandoned += [i for i, _ in self.waiting]
        self.waiting = []
        assert len(self.box) == 0
        assert self.box.audio_s == 0
        # Nothing kept or released with no connection up: every input is accounted.
        assert not self.unconfirmed
        assert not self.released
        accounted = self.abandoned + self.delivered + self.dropped
        assert sorted(map(id, accounted)) == sorted(map(id, self.put_items))

    # ------------------------------------------------------------- invariants

    @invariant()
    def every_item_is_in_exactly_one_place(self) -> None:
        places = (
            [i for i, _ in self.waiting]
            + [i for _, items in self.unconfirmed for i in items]
            + [f for _, frames in self.released for f in frames]
            + self.delivered
            + list(self.dropped)
            + self.abandoned
        )
        assert sorted(map(id, places)) == sorted(map(id, self.put_items))

    @invariant()
    def delivered_once_and_in_order(self) -> None:
        order = {id(item): n for n, item in enumerate(self.put_items)}
        positions = [order[id(item)] for item in self.delivered]
        assert positions == sorted(set(positions))

    @invariant()
    def controls_are_never_dropped(self) -> None:
        assert all(isinstance(f, AudioFrame) for f in self.dropped)

    @invariant()
    def drops_are_counted_once(self) -> None:
        lost = self.dropped + [i for i in self.abandoned if isinstance(i, AudioFrame)]
        assert self.drops.frames == len(lost)
        assert self.drops.samples == sum(f.samples for f in lost)

    @invariant()
    def the_outbox_agrees_with_the_model(self) -> None:
        assert len(self.box) == len(self.waiting)
        assert self.box.unconfirmed == sum(len(items) for _, items in self.unconfirmed)
        kept = [i for i, _ in self.waiting] + [i for _, it in self.unconfirmed for i in it]
        assert self.box.audio_s == sum(_ns(i) for i in kept) / _NS
        assert self.box.kept_s == self._kept_ns() / _NS
        assert self.box.released == sum(len(frames) for _, frames in self.released)

    @invariant()
    def kept_audio_never_makes_it_full(self) -> None:
        waiting_ns = sum(_ns(i) for i, _ in self.waiting)
        assert self.box.full() == (waiting_ns >= round(BUDGET_S * _NS))

    @invariant()
    def kept_audio_stays_within_the_retention_budget(self) -> None:
        if self.kept_budget_s is None:
            return
        over = self._kept_ns() > round(self.kept_budget_s * _NS)
        if over:  # only an unconfirmed control at the head holds it there
            assert not all(isinstance(i, AudioFrame) for i in self.unconfirmed[0][1])

    @invariant()
    def controls_are_never_released(self) -> None:
        assert all(isinstance(f, AudioFrame) for _, fs in self.released for f in fs)

    @invariant()
    def a_text_is_written_first_once(self) -> None:
        assert len(set(map(id, self.first_writes))) == len(self.first_writes)
        written = {id(t) for t in self.first_writes}
        assert all(id(i) in written for i in self.delivered if isinstance(i, SendText))


OutboxMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=50, deadline=None)
test_outbox_state_machine = OutboxMachine.TestCase


def test_a_do_nothing_drop_policy_would_be_caught() -> None:
    """The budget check has teeth: 0.3 s of audio put while disconnected leaves at
    most the budget, and the oldest frames are the ones counted."""
    drops = DropCounter("link_buffer")
    box = Outbox(BUDGET_S, drops)
    silence = np.zeros((320, 1), np.int16)
    frames = [AudioFrame.from_pcm(silence, FMT, pts=i * 320) for i in range(15)]
    box.put(FrameBatch(tuple(frames)))
    box.drop_oldest_audio()
    assert drops.frames == 10
    assert box.audio_s == BUDGET_S
    box.connection_up(retain=False)
    peeked = box.peek(10)
    assert isinstance(peeked.message, FrameBatch)
    assert peeked.message.frames == tuple(frames[10:])
    report = drops.report()
    assert report is not None
    assert (report.frames, report.samples, report.total_frames) == (10, 3200, 10)
    assert drops.report() is None  # each drop in one report


def _frames(n: int, samples: int = 320) -> list[AudioFrame]:
    silence = np.zeros((samples, 1), np.int16)
    return [AudioFrame.from_pcm(silence, FMT, pts=i * samples) for i in range(n)]


def _write_all(box: Outbox) -> None:
    while len(box):
        peeked = box.peek(1)
        box.pop(peeked.count, 1)


def test_a_provider_that_never_confirms_does_not_make_it_full() -> None:
    """Retaining, never consumed: 1 s of audio written (ten times the 0.1 s outage
    budget, which used to make the outbox full and the link push back for good)
    never makes it full; the kept audio stays within the retention budget and the
    rest is released. (Fails on the code before the retention budget.)"""
    drops = DropCounter("link_buffer")
    box = Outbox(BUDGET_S, drops, max_kept_s=0.05)
    box.connection_up(retain=True)
    for frame in _frames(50):  # 50 x 20 ms
        assert not box.full()
        box.put(frame)
        _write_all(box)
        assert not box.full()
    assert box.kept_s == 0.04  # two whole frames more would exceed 0.05 s
    assert box.released == 48
    assert drops.frames == 0


def test_released_audio_is_delivered_when_consumed_and_dropped_on_a_resumption() -> None:
    """Released entries up to the consumed index are delivered; the rest, on a
    resumption, are counted as dropped (the kept ones are resent); without a
    resumption nothing is dropped."""
    for resume in (True, False):
        drops = DropCounter("link_buffer")
        box = Outbox(BUDGET_S, drops, max_kept_s=0.02)
        box.connection_up(retain=True)
        frames = _frames(6)
        box.put(FrameBatch(tuple(frames)))
        _write_all(box)  # wire messages 0..5, one frame each; 0..4 released
        assert (box.released, box.kept_s) == (5, 0.02)
        box.consume(1)  # 0 and 1 delivered
        assert box.released == 3
        box.connection_down(resume=resume)
        if resume:
            assert (drops.frames, drops.samples) == (3, 3 * 320)
            peeked = box.peek(10)
            assert isinstance(peeked.message, FrameBatch)
            assert peeked.message.frames == (frames[5],)  # the kept one, resent
        else:
            assert (drops.frames, len(box)) == (0, 0)
        assert box.released == 0


def test_a_control_is_never_released() -> None:
    """Releasing stops at the first kept entry holding a control: the text and the
    audio after it stay kept (over the budget) and are resent after a resumption;
    only the audio before it is released and counted as dropped."""
    drops = DropCounter("link_buffer")
    box = Outbox(BUDGET_S, drops, max_kept_s=0.0)
    box.connection_up(retain=True)
    before, after = _frames(2), _frames(3)
    text = SendText("hello")
    box.put(FrameBatch(tuple(before)))
    box.put(text)
    box.put(FrameBatch(tuple(after)))
    _write_all(box)
    assert box.released == 2
    assert box.unconfirmed == 4
    assert box.kept_s == 0.06
    assert not box.full()
    box.connection_down(resume=True)
    assert drops.frames == 2
    first = box.peek(10)
    assert first.message is text
    assert not first.first_write
    box.connection_up(retain=False)
    box.pop(first.count, 1)
    rest = box.peek(10)
    assert isinstance(rest.message, FrameBatch)
    assert rest.message.frames == tuple(after)


def test_abandon_counts_what_waited_to_be_resent() -> None:
    """Giving up after a connection whose session was to resume: the inputs put
    back for the resend (their exact wire messages, and a text written before) are
    abandoned with what never went out, in order, and every frame among them is
    counted as dropped once; the outbox is empty after."""
    drops = DropCounter("link_buffer")
    box = Outbox(BUDGET_S, drops)
    box.connection_up(retain=True)
    written, text, waiting = _frames(2), SendText("hello"), _frames(3)
    box.put(FrameBatch(tuple(written)))
    box.put(text)
    peeked = box.peek(10)
    box.pop(peeked.count, ["wire 0", "wire 1"])  # kept as they were written
    peeked = box.peek(10)
    box.pop(peeked.count, ["wire 2"])  # the text
    box.connection_down(resume=True)  # both wait to be resent
    box.put(FrameBatch(tuple(waiting)))
    gone = box.abandon()
    assert gone == (*written, text, *waiting)
    assert (drops.frames, drops.samples) == (5, 5 * 320)
    assert (len(box), box.audio_s, box.full()) == (0, 0, False)
