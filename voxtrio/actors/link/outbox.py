"""The link's ordered outbox: what waits to go out, and what went out unconfirmed.

Pure bookkeeping apart from its wake-up (:class:`_Waiters`, so the pump and the
writer can wait on it); every rule is tested by a hypothesis state
machine (``tests/test_outbox_stateful.py``) without a socket.

The rules:

* **Order.** Inputs leave in the order they were put. Audio is kept as single
  frames, so a batch can be cut at any frame (``max_batch_frames``) and a failed
  send retried exactly.
* **Controls are never dropped.**
* **Live audio has a budget while disconnected.** The link calls
  :meth:`Outbox.drop_oldest_audio` only while no connection is up: waiting audio
  beyond ``max_audio_s`` is dropped oldest first, each frame counted once in the
  :class:`~voxtrio.actors.base.DropCounter` (``edge="link_buffer"``). While
  connected a full outbox pushes back instead (:meth:`Outbox.full`).
* **Resend after resumption.** On a connection whose provider can resume
  (``retain=True`` in :meth:`Outbox.connection_up`), an input that was written is
  kept, numbered by the wire messages it took (counted per connection from 0, after
  the connect messages), until the provider reports it consumed
  (:meth:`Outbox.consume`, from ``ResumptionHandle.last_consumed_index``).
  When the connection ends (:meth:`Outbox.connection_down`):

  - the next connection **resumes** (the link holds a usable handle): the inputs
    not consumed go back to the front of the outbox, in order, and are written
    first on the next connection. The provider kept what it consumed and gets
    exactly the rest of what is kept: none twice, and no audio lost unless it
    was released (below). A text or tool result written again is not reported
    again (:attr:`Peeked.first_write` is false).
  - it **does not resume**: nothing already written is written again, audio or
    control. The provider starts a fresh session, seeded through the instructions
    with the transcript, which already holds every text and tool result as of the
    moment it was written; a resent text would reach the model twice, a resent
    commit or reply request would refer to a session that is gone.

  **What is resent is what was written**: when the writer hands :meth:`Outbox.pop`
  the wire messages themselves (not just their count), those exact messages are
  kept and resent, not the inputs encoded again. A codec is made per connection and
  may keep state (Gemini's activity bracket, say): encoding again on the new
  connection could add or drop a message, and the consumed index counts messages.
  Kept wires are consumed one by one, so a consumed index that stops inside a
  multi-message input resends only its unconsumed tail. (Given only a count, the
  input is kept, counts as consumed once its last message is, and is encoded again.)

  :meth:`Outbox.forget_resends` drops what waits to be resent, for a resumption the
  provider refused: the fresh session is seeded through the instructions instead.

* **Late confirmations never stall the link.** Kept audio has its own budget,
  ``max_kept_s`` (the retention budget), apart from ``max_audio_s``: only audio
  *waiting* to be written makes the outbox full (:meth:`Outbox.full`), so a
  provider that confirms late, or never, costs no push-back. When kept audio
  exceeds ``max_kept_s`` (checked after each write, and after a confirmation that
  freed a control), the oldest kept entries are **released**: no longer kept for a
  resend, remembered only as their last wire index and their frames' count and
  samples (a few integers per written message). Only audio-only entries are
  released, oldest first, and releasing stops at the first kept entry that holds a
  control (a text, a tool result, an end of input, a reply request): a control is
  never released, so never lost. That cannot stall either, since kept audio never
  makes the outbox full; behind an unconfirmed control the kept audio grows past
  ``max_kept_s`` (memory, not push-back) until the provider confirms the control
  or the connection ends. (A Gemini ``activityStart`` that the codec writes ahead
  of a segment's first audio rides inside that audio's entry: the outbox sees
  wire messages, not what they say, so such an entry counts as audio.)
  A released entry is delivered once the provider consumes past it. If the
  connection ends first and the next one resumes, it cannot be resent: its frames
  are counted as dropped (the link reports ``AudioDropped`` at the next attempt:
  exactly the audio the resumed session never got). If the next one does not
  resume, it counts as delivered, like everything else written.

* **Giving up loses nothing silently.** When the link gives up for good (refused
  for good, out of retries), :meth:`Outbox.abandon` empties the outbox: every frame
  still waiting -- never written, or written on a connection that is gone and
  waiting to be resent to a resumed session that will not come -- is counted as
  dropped, and the inputs are returned (the link reports the count as
  ``AudioDropped`` before its final error). Not on a deliberate close (the link is
  cancelled then, and nothing is counted).

Accounting: every frame put is, at any time, in exactly one of: waiting, kept
(written, unconfirmed, held for a resend), released (written, unconfirmed, no
longer held: see above), delivered (written on a connection that did not retain
it, confirmed, or written on a connection after which the session did not resume),
or counted as dropped (by the outage budget, released and not consumed before a
resumption, or abandoned when the link gave up).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Sequence
from typing import cast

import attrs
import trio

from ...audio import AudioFrame
from ...messages import FrameBatch, LinkInput
from ..base import DropCounter

__all__ = ["Outbox", "Peeked"]

_NS = 1_000_000_000


def _duration_ns(frame: AudioFrame) -> int:
    # Integer nanoseconds: a frame adds and removes the same amount, so the total
    # never drifts (Fractions would cost ~10 us per frame here).
    return frame.samples * _NS // frame.sample_rate


def _frames_ns(items: Sequence[object]) -> int:
    """The audio in ``items`` (the frames among them), each frame rounded as
    :func:`_duration_ns` rounds it. On the hot path: one pass, no call per frame."""
    return sum(
        [i.pcm.shape[0] * _NS // i.sample_rate for i in items if isinstance(i, AudioFrame)]
    )


class _Waiters:
    """Tasks parked until the outbox changes; :meth:`wake` reschedules them all.

    A :class:`trio.lowlevel.ParkingLot` with only what the outbox needs, on trio's
    public low-level API: it parks and wakes on every live frame, and the lot's
    breakers and ordered dict cost ~2 us a frame. Cancelling a parked task takes it
    out (its wait raises ``Cancelled``; nothing else changed).
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: list[trio.lowlevel.Task] = []

    def __bool__(self) -> bool:
        return bool(self._tasks)

    async def park(self) -> None:
        task = trio.lowlevel.current_task()
        tasks = self._tasks
        tasks.append(task)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            tasks.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            trio.lowlevel.reschedule(task)


@attrs.frozen
class Peeked:
    """The next message to write.

    Attributes:
        message: a run of frames as one :class:`FrameBatch`, or one control.
        count: how many outbox items it covers (pass to :meth:`Outbox.pop`).
        first_write: false for a control being written again after a resumption.
        wires: for a resend, the exact wire messages to write (do not encode
            ``message`` again); None: encode ``message``.
    """

    message: LinkInput
    count: int
    first_write: bool = True
    wires: tuple[str | bytes, ...] | None = None


@attrs.frozen
class _Again:
    """A control that was written on a connection that is gone, to be written again."""

    control: LinkInput


@attrs.frozen
class _Resend:
    """Wire messages written on a connection that is gone and not consumed, to be
    written again as they are; ``items`` are the inputs they carry."""

    items: tuple[AudioFrame | LinkInput, ...]
    wires: tuple[str | bytes, ...]

    @property
    def audio_ns(self) -> int:
        return sum(_duration_ns(i) for i in self.items if isinstance(i, AudioFrame))


_Item = AudioFrame | LinkInput | _Again | _Resend


def _unwrap(item: _Item) -> AudioFrame | LinkInput:
    """The input itself, out of its wrapper (a written batch holds no resend:
    :meth:`Outbox.pop` unpacks those)."""
    if isinstance(item, _Again):
        return item.control
    assert not isinstance(item, _Resend)
    return item


@attrs.define
class _Sent:
    """Items written on this connection, as wire messages ``last - n + 1 .. last``
    (``wires`` holds the unconsumed ones when the writer gave them)."""

    items: tuple[_Item, ...]
    last: int
    audio_ns: int
    wires: tuple[str | bytes, ...] | None = None


@attrs.frozen
class _Released:
    """Audio written on this connection, unconfirmed and no longer kept (over the
    retention budget): wire messages up to ``last``, ``frames`` frames of
    ``samples`` samples in all."""

    last: int
    frames: int
    samples: int


class Outbox:
    """Ordered queue of link inputs with an outage budget for live audio and a
    retention budget for audio kept for a resend.

    Args:
        max_audio_s: the audio waiting to be written that makes the outbox full
            (push-back while connected); while disconnected, live audio beyond it
            is dropped.
        drops: where dropped frames are counted.
        max_kept_s: the audio written and kept unconfirmed (for a resend after a
            resumption) before the oldest is released (see the module docstring).
            None: ``max_audio_s``, so a resumption resends at most about the
            outage buffer.
    """

    def __init__(
        self, max_audio_s: float, drops: DropCounter, max_kept_s: float | None = None
    ) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._sent: collections.deque[_Sent] = collections.deque()
        self._released: collections.deque[_Released] = collections.deque()
        self._waiting_ns = 0  # audio in _items
        self._kept_ns = 0  # audio in _sent
        self._max_audio_ns = round(max_audio_s * _NS)
        self._max_kept_ns = round((max_audio_s if max_kept_s is None else max_kept_s) * _NS)
        self._retain = False
        self._next_index = 0  # wire messages written on this connection
        self._lot = _Waiters()
        self.drops = drops

    # ----------------------------------------------------------------- queries

    def __len__(self) -> int:
        """Inputs waiting to be written."""
        return len(self._items)

    @property
    def audio_s(self) -> float:
        """Audio waiting or kept unconfirmed (not released), in seconds."""
        return (self._waiting_ns + self._kept_ns) / _NS

    @property
    def kept_s(self) -> float:
        """Audio written on this connection and kept unconfirmed, in seconds."""
        return self._kept_ns / _NS

    @property
    def unconfirmed(self) -> int:
        """Inputs written on this connection and kept until consumed."""
        return sum(len(sent.items) for sent in self._sent)

    @property
    def released(self) -> int:
        """Frames written on this connection, unconfirmed and released (no longer
        kept for a resend)."""
        return sum(r.frames for r in self._released)

    def full(self) -> bool:
        """Whether the audio waiting to be written fills ``max_audio_s`` (kept
        audio does not count: it has the retention budget)."""
        return self._waiting_ns >= self._max_audio_ns

    # ----------------------------------------------------------------- input side

    def put(self, msg: LinkInput) -> None:
        """Queue ``msg`` (a batch as its single frames)."""
        if isinstance(msg, FrameBatch):
            self._items.extend(msg.frames)
            self._waiting_ns += _frames_ns(msg.frames)
        else:
            self._items.append(msg)
            if isinstance(msg, AudioFrame):
                self._waiting_ns += _duration_ns(msg)
        self._wake()

    def drop_oldest_audio(self) -> None:
        """Drop the oldest waiting audio until the budget holds; controls stay, in
        order, and so does a resend (part of a session the provider resumes). For
        live input, while disconnected."""
        if self._waiting_ns <= self._max_audio_ns:
            return
        kept: collections.deque[_Item] = collections.deque()
        while self._items and self._waiting_ns > self._max_audio_ns:
            item = self._items.popleft()
            if isinstance(item, AudioFrame):
                self._waiting_ns -= _duration_ns(item)
                self.drops.count(item.samples)
            else:
                kept.append(item)
        kept.extend(self._items)
        self._items = kept

    # ----------------------------------------------------------------- writer side

    def peek(self, max_frames: int) -> Peeked:
        """The next message to write: up to ``max_frames`` frames, or one control.
        The outbox must not be empty."""
        first = self._items[0]
        if isinstance(first, _Again):
            return Peeked(first.control, 1, first_write=False)
        if isinstance(first, _Resend):
            frames = tuple(i for i in first.items if isinstance(i, AudioFrame))
            control = next((i for i in first.items if not isinstance(i, AudioFrame)), None)
            shown = FrameBatch(frames) if control is None else control
            return Peeked(shown, 1, first_write=False, wires=first.wires)
        if not isinstance(first, AudioFrame):
            return Peeked(first, 1)
        run = tuple(itertools.islice(self._items, max_frames))
        for n, item in enumerate(run):  # the run ends at the first control
            if not isinstance(item, AudioFrame):
                run = run[:n]
                break
        return Peeked(FrameBatch(cast(tuple[AudioFrame, ...], run)), len(run))

    def pop(self, count: int, wires: int | Sequence[str | bytes]) -> None:
        """The ``count`` items :meth:`peek` returned were written as ``wires`` (the
        wire messages themselves, kept for a resend; or just how many there were).
        Kept until consumed if the connection retains (the oldest kept audio is
        released beyond ``max_kept_s``), else delivered."""
        popleft = self._items.popleft
        items: list[_Item] = [popleft() for _ in range(count)]
        first = items[0]
        if isinstance(first, _Resend):  # its inputs again, once written (peek: alone)
            items = [*first.items, *items[1:]]
        audio_ns = _frames_ns(items)
        self._waiting_ns -= audio_ns
        n = wires if isinstance(wires, int) else len(wires)
        self._next_index += n
        if self._retain and n > 0:
            kept = None if isinstance(wires, int) else tuple(wires)
            self._sent.append(_Sent(tuple(items), self._next_index - 1, audio_ns, kept))
            self._kept_ns += audio_ns
            if self._kept_ns > self._max_kept_ns:
                self._release()
        self._wake()

    def _release(self) -> None:
        """Release the oldest kept audio-only entries until kept audio is within
        ``max_kept_s``; stop at the first entry holding a control."""
        sent = self._sent
        while sent and self._kept_ns > self._max_kept_ns:
            head = sent[0]
            if not all(isinstance(i, AudioFrame) for i in head.items):
                return  # a control stays kept, and so does everything after it
            sent.popleft()
            self._kept_ns -= head.audio_ns
            frames = cast(tuple[AudioFrame, ...], head.items)
            samples = sum(f.samples for f in frames)
            self._released.append(_Released(head.last, len(frames), samples))

    def consume(self, last_index: int) -> None:
        """The provider consumed every wire message up to ``last_index`` (0-based, on
        this connection): what they carried is delivered and no longer kept (or
        released)."""
        freed = False
        while self._released and self._released[0].last <= last_index:
            self._released.popleft()  # delivered
        while self._sent and self._sent[0].last <= last_index:
            self._kept_ns -= self._sent.popleft().audio_ns
            freed = True
        if freed and self._kept_ns > self._max_kept_ns:
            self._release()  # a confirmed control no longer holds the audio after it
        if self._sent and self._sent[0].wires is not None:
            head = self._sent[0]  # consumed up to a message inside it: keep the tail
            assert head.wires is not None
            first = head.last - len(head.wires) + 1
            if last_index >= first:
                head.wires = head.wires[last_index - first + 1 :]
        if freed:
            self._wake()

    # ----------------------------------------------------------------- connections

    def connection_up(self, *, retain: bool) -> None:
        """A connection is up; ``retain``: its provider can resume, so keep what is
        written until it is consumed. Numbering starts again at 0."""
        self._retain = retain
        self._next_index = 0

    def connection_down(self, *, resume: bool) -> None:
        """The connection ended; ``resume``: the next one resumes the provider's
        session, so what it did not consume goes back to the front, in order, and
        released audio it did not consume is counted as dropped (it cannot be
        resent). Otherwise it counts as delivered (see the module docstring)."""
        if resume:
            for released in self._released:
                self.drops.count(released.samples, released.frames)
            again: list[_Item] = []
            for sent in self._sent:
                if sent.wires is not None:
                    inputs = tuple(_unwrap(i) for i in sent.items)
                    again.append(_Resend(inputs, sent.wires))
                    continue
                for item in sent.items:
                    if isinstance(item, AudioFrame | _Again):
                        again.append(item)
                    else:
                        again.append(_Again(_unwrap(item)))
            self._items.extendleft(reversed(again))
            self._waiting_ns += self._kept_ns
        self._kept_ns = 0
        self._sent.clear()
        self._released.clear()
        self._retain = False
        self._wake()

    def forget_resends(self) -> None:
        """Drop what waits to be written again (the provider refused to resume: a
        fresh session gets the transcript through the instructions instead). It
        counts as delivered, as after a connection that does not resume."""
        kept: collections.deque[_Item] = collections.deque()
        for item in self._items:
            if isinstance(item, _Resend):
                self._waiting_ns -= item.audio_ns
            elif not isinstance(item, _Again):
                kept.append(item)
        self._items = kept
        self._wake()

    def abandon(self) -> tuple[AudioFrame | LinkInput, ...]:
        """The link gave up for good: empty the outbox, count every frame in it as
        dropped, and return, in order, the inputs it held -- what waited to be
        written and what waited to be written again (a resend's inputs, a control
        written before). Call it with no connection up: :meth:`connection_down` has
        then settled what was kept (resent, delivered or dropped)."""
        assert not self._sent, "abandon() while connected"
        assert not self._released, "abandon() while connected"
        gone: list[AudioFrame | LinkInput] = []
        for item in self._items:
            if isinstance(item, _Resend):
                gone.extend(item.items)
            else:
                gone.append(_unwrap(item))
        frames = [i for i in gone if isinstance(i, AudioFrame)]
        if frames:
            self.drops.count(sum(f.samples for f in frames), len(frames))
        self._items.clear()
        self._waiting_ns = 0
        self._wake()
        return tuple(gone)

    # ----------------------------------------------------------------- waiting

    async def wait_nonempty(self, stop: Callable[[], bool] | None = None) -> None:
        """Wait until something waits to be written, or ``stop()`` (checked at
        every :meth:`wake`) is true."""
        while not self._items and not (stop is not None and stop()):
            await self._lot.park()

    async def wait_not_full(self, connected: Callable[[], bool]) -> None:
        """Wait while the outbox is full and ``connected()``: a connection that ends
        wakes this (:meth:`wake`), and from then on audio is dropped, not waited for."""
        while self.full() and connected():
            await self._lot.park()

    def wake(self) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._lot:  # twice per batch: only a call when somebody waits
            self._lot.wake()
