"""Event fan-out: every subscriber gets its own bounded queue, and nobody waits on
a slow one.

A :class:`Subscription` is a :class:`trio.abc.ReceiveChannel` of events. When its
queue is full, new events for it are counted instead of queued; the next
:meth:`~Subscription.receive` after the backlog is read returns
:class:`~voxtrio.messages.SubscriberLagged` with the count, exactly where the gap is,
then the events that came after it. So events are never dropped silently, the lag
notice can always be delivered (it is made at receive time, it takes no queue slot),
and other subscribers and the audio path never wait.

Lossless consumers inside the session (the transcript store, playback) get plain
memory channels and backpressure instead.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable

import trio

from ..actors.transcript_store import SnapshotRequest, StoreInput
from ..messages import (
    Event,
    PlaybackInput,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    SubscriberLagged,
)

__all__ = ["EventHub", "Subscription"]


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
        self.close()
        await trio.lowlevel.checkpoint()


async def _to_playback(
    playback: trio.MemorySendChannel[PlaybackInput], event: PlaybackInput
) -> trio.MemorySendChannel[PlaybackInput] | None:
    """Send ``event`` to playback; None once playback has ended (the session is
    closing, and reply audio still on its way has nowhere to go)."""
    try:
        await playback.send(event)
    except trio.BrokenResourceError:
        playback.close()
        return None
    return playback


class EventHub:
    """Routes the session's events to subscribers, the store and playback.

    Reply audio goes to playback only (it is the one heavy event); reply ends and
    interruptions go to playback and to everyone; all other events go to the store
    and the subscribers.
    """

    def __init__(self, default_buffer: int = 256) -> None:
        self._subs: list[Subscription] = []
        self._default_buffer = default_buffer
        self._ended = False
        self._open = trio.Event()
        self.delivered = 0

    def open(self) -> None:
        """Start routing. Events wait in the hub's input until then, so subscribers
        made before the session's first checkpoint see every event."""
        self._open.set()

    @property
    def subscribers(self) -> tuple[Subscription, ...]:
        return tuple(self._subs)

    def subscribe(self, max_buffer: int | None = None) -> Subscription:
        sub = Subscription(max_buffer or self._default_buffer, self._subs.remove)
        if self._ended:
            sub.end()
        else:
            self._subs.append(sub)
        return sub

    def publish_nowait(self, event: Event) -> None:
        """Give ``event`` to every subscriber; never blocks."""
        self.delivered += 1
        for sub in self._subs:
            sub.deliver_nowait(event)

    async def run(
        self,
        receive: trio.MemoryReceiveChannel[StoreInput],
        *,
        store: trio.MemorySendChannel[StoreInput] | None = None,
        store_errors: trio.MemoryReceiveChannel[Event] | None = None,
        playback: trio.MemorySendChannel[PlaybackInput] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Route events from ``receive`` until it ends, then close ``store`` and
        ``playback``, and end every subscriber once ``store_errors`` has ended too.

        :class:`SnapshotRequest` messages on ``receive`` go to the store in order
        with the events, so a snapshot requested after an event was sent includes
        it. Without a store they are answered with no items.

        What the store reports on ``store_errors`` is passed to the subscribers as
        it comes, while the session runs (a store fault is news the app needs now,
        and a store blocked on reporting would stall the events behind it) and
        while the store finishes after ``receive`` ended: its last reports reach
        the subscribers before they end. The store must close ``store_errors``
        when it is done.
        """
        try:
            with receive:
                async with trio.open_nursery() as nursery:
                    if store_errors is not None:
                        nursery.start_soon(self._relay, store_errors)
                    task_status.started()
                    await self._open.wait()
                    async for event in receive:
                        if isinstance(event, ReplyAudio):
                            if playback is not None:
                                playback = await _to_playback(playback, event)
                            continue
                        if isinstance(event, SnapshotRequest):
                            if store is not None:
                                await store.send(event)
                            else:
                                await _answer_empty(event)
                            continue
                        if playback is not None and isinstance(event, ReplyDone | ReplyInterrupted):
                            playback = await _to_playback(playback, event)
                        if store is not None:
                            await store.send(event)
                        self.publish_nowait(event)
                    # The store finishes (and makes its last reports) once its input
                    # ends; the relay returns when it closes ``store_errors``.
                    if store is not None:
                        store.close()
        finally:
            self._ended = True
            for sub in self._subs:
                sub.end()
            if store is not None:
                store.close()
            if store_errors is not None:
                store_errors.close()
            if playback is not None:
                playback.close()

    async def _relay(self, store_errors: trio.MemoryReceiveChannel[Event]) -> None:
        with store_errors:
            await self._open.wait()  # subscribers made before the start see these too
            async for event in store_errors:
                self.publish_nowait(event)


async def _answer_empty(request: SnapshotRequest) -> None:
    with request.reply, contextlib.suppress(trio.BrokenResourceError):
        await request.reply.send([])
