"""A subscriber's bounded view of the session's events.

A :class:`Subscription` is a :class:`trio.abc.ReceiveChannel` of events. When its
queue is full, new events for it are counted instead of queued; the next
:meth:`~Subscription.receive` after the backlog is read returns
:class:`~voxtrio.messages.SubscriberLagged` with the count, exactly where the gap is,
then the events that came after it. So events are never dropped silently, the lag
notice can always be delivered (it is made at receive time, it takes no queue slot),
and other subscribers and the audio path never wait.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import trio

from ..messages import Event, SubscriberLagged

__all__ = ["Subscription"]


class Subscription(trio.abc.ReceiveChannel[Event]):
    """One consumer's bounded view of the session's events.

    Iterate it (``async for event in sub``) or call :meth:`receive`. It ends
    (``EndOfChannel``) when the session ends, after everything queued is read.
    ``aclose()`` unsubscribes.
    """

    def __init__(self, max_buffer: int, on_close: Callable[[Subscription], None]) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self._queue: collections.deque[Event] = collections.deque()
        self._max = max_buffer
        self._missed = 0  # events dropped since the last queued one
        self._gaps: collections.deque[tuple[int, int]] = collections.deque()  # (index, missed)
        self._taken = 0  # events handed out so far (for gap positions)
        self._lagged_total = 0
        self._ended = False
        self._closed = False
        self._on_close = on_close
        self._wakeup = trio.lowlevel.ParkingLot()

    @property
    def lagged_total(self) -> int:
        """Events this subscriber missed, over its whole life."""
        return self._lagged_total

    @property
    def queued(self) -> int:
        """Number of events delivered to this subscription and not yet received."""
        return len(self._queue)

    def deliver_nowait(self, event: Event) -> None:
        """Queue ``event``, or count it as missed if the queue is full. Never blocks."""
        if self._closed or self._ended:
            return
        if len(self._queue) >= self._max:
            self._missed += 1
            self._lagged_total += 1
            return
        if self._missed:
            # The gap sits just before this event.
            self._gaps.append((self._taken + len(self._queue), self._missed))
            self._missed = 0
        self._queue.append(event)
        self._wakeup.unpark_all()

    def end(self) -> None:
        """No more events will come (the session ended)."""
        self._ended = True
        self._wakeup.unpark_all()

    def receive_nowait(self) -> Event:
        """The next event, a lag notice, or ``trio.WouldBlock``."""
        if self._closed:
            raise trio.ClosedResourceError("this subscription was closed")
        if self._gaps and self._gaps[0][0] == self._taken:
            _, missed = self._gaps.popleft()
            return SubscriberLagged(missed=missed)
        if self._queue:
            self._taken += 1
            return self._queue.popleft()
        if self._missed:
            missed, self._missed = self._missed, 0
            return SubscriberLagged(missed=missed)
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Event:
        """Wait for and return the next event, in delivery order."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                event = self.receive_nowait()
            except trio.WouldBlock:
                await self._wakeup.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return event

    def close(self) -> None:
        """Unsubscribe; queued events are discarded. Synchronous."""
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._wakeup.unpark_all()
            self._on_close(self)

    async def aclose(self) -> None:
        """Unsubscribe, like :meth:`close`, then checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()
