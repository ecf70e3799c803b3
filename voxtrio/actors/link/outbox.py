"""The link's ordered outbox: what waits to go out, and what went out unconfirmed.

Pure bookkeeping apart from its wake-up (a :class:`trio.lowlevel.ParkingLot`, so the
pump and the writer can wait on it); every rule is tested by a hypothesis state
machine (``tests/test_outbox_stateful.py``) without a socket.

The rules:

* **Order.** Inputs leave in the order they were put. Audio is kept as single
  frames, so a batch can be cut at any frame (``max_batch_frames``) and a failed
  send retried exactly.
* **Controls are never dropped.**
* **Live audio has a budget while disconnected.** The link calls
  :meth:`Outbox.drop_oldest_audio` only while no connection is up: audio beyond
  ``max_audio_s`` is dropped oldest first, each frame counted once in the
  :class:`~voxtrio.actors.base.DropCounter` (``edge="link_buffer"``). While
  connected a full outbox pushes back instead (:meth:`Outbox.full`).
* **Resend after resumption.** On a connection whose provider can resume
  (``retain=True`` in :meth:`Outbox.connection_up`), an input that was written is
  kept, numbered by the wire messages it took (counted per connection from 0, after
  the connect messages), until the provider reports it consumed
  (:meth:`Outbox.consume`, from ``ResumptionHandle.last_consumed_index``). Kept
  audio still counts toward the budget, so a provider that never confirms makes
  the link push back rather than grow without bound. When the connection ends
  (:meth:`Outbox.connection_down`):

  - the next connection **resumes** (the link holds a usable handle): the inputs
    not consumed go back to the front of the outbox, in order, and are written
    first on the next connection. The provider kept what it consumed and gets
    exactly the rest: no audio lost, none twice. A text or tool result written
    again is not reported again (:attr:`Peeked.first_write` is false).
  - it **does not resume**: nothing already written is written again, audio or
    control. The provider starts a fresh session, seeded through the instructions
    with the transcript, which already holds every text and tool result as of the
    moment it was written; a resent text would reach the model twice, a resent
    commit or reply request would refer to a session that is gone.

  An input whose encoding took several wire messages counts as consumed once its
  last message is; a provider whose consumed index stops inside such an input gets
  the whole input again. Codecs that support resumption therefore encode one wire
  message per input (the echo test codec does).

Accounting: every frame put is, at any time, in exactly one of: waiting, written
and kept (unconfirmed), delivered (written on a connection that did not retain it,
confirmed, or written on a connection after which the session did not resume), or
counted as dropped.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

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


@attrs.frozen
class Peeked:
    """The next message to write.

    Attributes:
        message: a run of frames as one :class:`FrameBatch`, or one control.
        count: how many outbox items it covers (pass to :meth:`Outbox.pop`).
        first_write: false for a control being written again after a resumption.
    """

    message: LinkInput
    count: int
    first_write: bool = True


@attrs.frozen
class _Again:
    """A control that was written on a connection that is gone, to be written again."""

    control: LinkInput


_Item = AudioFrame | LinkInput | _Again


@attrs.frozen
class _Sent:
    """Items written on this connection, as wire messages ``first..last``."""

    items: tuple[_Item, ...]
    last: int
    audio_ns: int


class Outbox:
    """Ordered queue of link inputs with an outage budget for live audio.

    Args:
        max_audio_s: the audio kept (waiting and unconfirmed) while disconnected.
        drops: where dropped frames are counted.
    """

    def __init__(self, max_audio_s: float, drops: DropCounter) -> None:
        self._items: collections.deque[_Item] = collections.deque()
        self._sent: collections.deque[_Sent] = collections.deque()
        self._audio_ns = 0  # waiting + kept
        self._max_audio_ns = round(max_audio_s * _NS)
        self._retain = False
        self._next_index = 0  # wire messages written on this connection
        self._lot = trio.lowlevel.ParkingLot()
        self.drops = drops

    # ----------------------------------------------------------------- queries

    def __len__(self) -> int:
        """Inputs waiting to be written."""
        return len(self._items)

    @property
    def audio_s(self) -> float:
        """Audio waiting or kept unconfirmed, in seconds."""
        return self._audio_ns / _NS

    @property
    def unconfirmed(self) -> int:
        """Inputs written on this connection and kept until consumed."""
        return sum(len(sent.items) for sent in self._sent)

    def full(self) -> bool:
        return self._audio_ns >= self._max_audio_ns

    # ----------------------------------------------------------------- input side

    def put(self, msg: LinkInput) -> None:
        """Queue ``msg`` (a batch as its single frames)."""
        if isinstance(msg, FrameBatch):
            for frame in msg.frames:
                self._items.append(frame)
                self._audio_ns += _duration_ns(frame)
        else:
            self._items.append(msg)
            if isinstance(msg, AudioFrame):
                self._audio_ns += _duration_ns(msg)
        self._lot.unpark_all()

    def drop_oldest_audio(self) -> None:
        """Drop the oldest waiting audio until the budget holds; controls stay, in
        order. For live input, while disconnected."""
        if self._audio_ns <= self._max_audio_ns:
            return
        kept: collections.deque[_Item] = collections.deque()
        while self._items and self._audio_ns > self._max_audio_ns:
            item = self._items.popleft()
            if isinstance(item, AudioFrame):
                self._audio_ns -= _duration_ns(item)
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
        if not isinstance(first, AudioFrame):
            return Peeked(first, 1)
        run: list[AudioFrame] = []
        for item in self._items:
            if not isinstance(item, AudioFrame) or len(run) >= max_frames:
                break
            run.append(item)
        return Peeked(FrameBatch(tuple(run)), len(run))

    def pop(self, count: int, wires: int) -> None:
        """The ``count`` items :meth:`peek` returned were written, as ``wires`` wire
        messages. Kept until consumed if the connection retains, else delivered."""
        items = tuple(self._items.popleft() for _ in range(count))
        audio_ns = sum(_duration_ns(i) for i in items if isinstance(i, AudioFrame))
        if self._retain and wires > 0:
            self._next_index += wires
            self._sent.append(_Sent(items, self._next_index - 1, audio_ns))
        else:
            self._next_index += wires
            self._audio_ns -= audio_ns
        self._lot.unpark_all()

    def consume(self, last_index: int) -> None:
        """The provider consumed every wire message up to ``last_index`` (0-based, on
        this connection): what they carried is delivered and no longer kept."""
        freed = False
        while self._sent and self._sent[0].last <= last_index:
            self._audio_ns -= self._sent.popleft().audio_ns
            freed = True
        if freed:
            self._lot.unpark_all()

    # ----------------------------------------------------------------- connections

    def connection_up(self, *, retain: bool) -> None:
        """A connection is up; ``retain``: its provider can resume, so keep what is
        written until it is consumed. Numbering starts again at 0."""
        self._retain = retain
        self._next_index = 0

    def connection_down(self, *, resume: bool) -> None:
        """The connection ended; ``resume``: the next one resumes the provider's
        session, so what it did not consume goes back to the front, in order.
        Otherwise it counts as delivered (see the module docstring)."""
        if resume:
            again: list[_Item] = []
            for sent in self._sent:
                for item in sent.items:
                    if isinstance(item, AudioFrame | _Again):
                        again.append(item)
                    else:
                        again.append(_Again(item))
            self._items.extendleft(reversed(again))
        else:
            self._audio_ns -= sum(sent.audio_ns for sent in self._sent)
        self._sent.clear()
        self._retain = False
        self._lot.unpark_all()

    # ----------------------------------------------------------------- waiting

    async def wait_nonempty(self) -> None:
        while not self._items:
            await self._lot.park()

    async def wait_not_full(self, connected: Callable[[], bool]) -> None:
        """Wait while the outbox is full and ``connected()``: a connection that ends
        wakes this (:meth:`wake`), and from then on audio is dropped, not waited for."""
        while self.full() and connected():
            await self._lot.park()

    def wake(self) -> None:
        self._lot.unpark_all()
