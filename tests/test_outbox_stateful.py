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
* every frame put is in exactly one of: waiting, written-unconfirmed, delivered
  (once), dropped (counted once in the DropCounter);
* a text is offered as a first write exactly once.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from voxtrio.actors.base import DropCounter
from voxtrio.actors.link.outbox import Outbox
from voxtrio.audio import AudioFormat, AudioFrame
from voxtrio.messages import FrameBatch, SendText

FMT = AudioFormat(16_000)
BUDGET_S = 0.1
_NS = 1_000_000_000

Item = AudioFrame | SendText


def _ns(item: Item) -> int:
    return item.samples * _NS // item.sample_rate if isinstance(item, AudioFrame) else 0


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.drops = DropCounter("link_buffer")
        self.box = Outbox(BUDGET_S, self.drops)
        self.connected = False
        self.retain = False
        self.next_index = 0  # wire messages written on this connection
        self.consumed = -1  # the provider's last consumed index on this connection
        self.pts = 0
        self.texts = 0
        self.put_items: list[Item] = []
        self.waiting: list[tuple[Item, bool]] = []  # (item, written before)
        self.unconfirmed: list[tuple[int, list[Item]]] = []  # (last index, items)
        self.delivered: list[Item] = []
        self.dropped: list[AudioFrame] = []
        self.first_writes: list[SendText] = []

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
        else:
            self.delivered += items

    @precondition(lambda self: self.connected and self.next_index > self.consumed + 1)
    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(self.consumed + 1, self.next_index - 1))
        self.consumed = index
        self.box.consume(index)
        while self.unconfirmed and self.unconfirmed[0][0] <= index:
            self.delivered += self.unconfirmed.pop(0)[1]

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
        if resume:
            self.waiting = again + self.waiting
        else:
            self.delivered += [item for item, _ in again]
        self.unconfirmed = []
        self.connected = self.retain = False

    # ------------------------------------------------------------- invariants

    @invariant()
    def every_item_is_in_exactly_one_place(self) -> None:
        places = (
            [i for i, _ in self.waiting]
            + [i for _, items in self.unconfirmed for i in items]
            + self.delivered
            + list(self.dropped)
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
        assert self.drops.frames == len(self.dropped)
        assert self.drops.samples == sum(f.samples for f in self.dropped)

    @invariant()
    def the_outbox_agrees_with_the_model(self) -> None:
        assert len(self.box) == len(self.waiting)
        assert self.box.unconfirmed == sum(len(items) for _, items in self.unconfirmed)
        kept = [i for i, _ in self.waiting] + [i for _, it in self.unconfirmed for i in it]
        assert self.box.audio_s == sum(_ns(i) for i in kept) / _NS

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
