"""Event fan-out, and the transcript fold: every event the session reports passes here.

Subscribers each get a bounded :class:`~voxtrio.runtime.subscription.Subscription`
(nobody waits on a slow one). Lossless consumers inside the session get backpressure
instead: playback (reply audio and reply ends, by channel) and the transcript, which
the hub folds itself (a :class:`~voxtrio.actors.transcript_writer.TranscriptRecorder`
it feeds before publishing each event, so whatever a subscriber saw is on its way to
the store). The provider link's instructions are answered from that fold, in order
with the events routed: :meth:`EventHub.instructions_source`.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..actors.base import InstructionsSource
from ..actors.transcript_writer import TranscriptRecorder
from ..codecs.transcript import (
    DEFAULT_BUDGET_CHARS,
    Item,
    ToolCallItem,
    instructions_with_context,
)
from ..messages import (
    Event,
    PlaybackInput,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ToolCall,
)
from .subscription import Subscription

__all__ = ["EventHub", "Subscription"]


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
    """Routes the session's events to subscribers, the transcript and playback.

    Reply audio goes to playback only (it is the one heavy event); reply ends and
    interruptions go to playback and to everyone; all other events are folded into
    the transcript and go to the subscribers.
    """

    def __init__(self, default_buffer: int = 256) -> None:
        self._subs: list[Subscription] = []
        self._default_buffer = default_buffer
        self._ended = False
        self._open = trio.Event()
        self._recorder: TranscriptRecorder | None = None
        self._receive: trio.MemoryReceiveChannel[Event] | None = None
        self._drained = trio.lowlevel.ParkingLot()
        self._tool_names: dict[str, str] = {}
        self._observers: list[Callable[[Event], None]] = []
        self.delivered = 0

    def observe(self, observer: Callable[[Event], None]) -> None:
        """Call ``observer`` (synchronous, must not block) with every event the hub
        folds and publishes, before the subscribers get it; the tool runner's hook."""
        self._observers.append(observer)

    @property
    def items(self) -> tuple[Item, ...]:
        """The transcript folded so far (nothing without a recorder)."""
        return tuple(self._recorder.items) if self._recorder is not None else ()

    def open(self) -> None:
        """Start routing. Events wait in the hub's input until then, so subscribers
        made before the session's first checkpoint see every event."""
        self._open.set()

    @property
    def ended(self) -> bool:
        """The hub has routed its last event: a new subscriber would get nothing."""
        return self._ended

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

    def tool_name(self, call_id: str) -> str | None:
        """The name of the tool ``ToolCall(call_id)`` asked for, if the hub saw it
        (or the stored transcript has it)."""
        return self._tool_names.get(call_id)

    async def wait_routed(self) -> None:
        """Return once every event sent to the hub before this call is routed (or
        the hub has ended). A checkpoint.

        The hub is its input's only receiver, so a receiver parked on the input
        (``statistics().tasks_waiting_receive``) means it is idle with nothing
        buffered; otherwise the hub wakes the waiters the next time it finds its
        input empty.
        """
        receive = self._receive
        idle = (
            receive is not None
            and self._open.is_set()
            and receive.statistics().tasks_waiting_receive > 0  # parked, nothing buffered
        )
        if self._ended or idle:
            await trio.lowlevel.checkpoint()
            return
        await self._drained.park()  # unparked when the hub finds its input empty

    def instructions_source(
        self, base: str | None, *, budget_chars: int = DEFAULT_BUDGET_CHARS
    ) -> InstructionsSource:
        """An ``InstructionsSource`` for the provider link, answered from the fold.

        Each call waits until the hub has routed every event sent before it (so a
        reconnect's instructions hold everything the link reported before it
        reconnected), then returns
        :func:`~voxtrio.codecs.transcript.instructions_with_context` of ``base`` and
        the transcript so far (nothing without a recorder).

        Raises:
            ValueError, TypeError: bad ``base`` or ``budget_chars`` (at this call).
        """
        instructions_with_context(base, (), budget_chars=budget_chars)  # validate now

        async def source() -> str:
            await self.wait_routed()
            items = self._recorder.items if self._recorder is not None else []
            return instructions_with_context(base, items, budget_chars=budget_chars)

        return source

    async def run(
        self,
        receive: trio.MemoryReceiveChannel[Event],
        *,
        recorder: TranscriptRecorder | None = None,
        store_errors: trio.MemoryReceiveChannel[Event] | None = None,
        playback: trio.MemorySendChannel[PlaybackInput] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Route events from ``receive`` until it ends, then close ``recorder`` and
        ``playback``, and end every subscriber once ``store_errors`` has ended too.

        Each event is folded into ``recorder`` before it is published, so whatever a
        subscriber saw has been handed to the transcript writer.

        What the writer reports on ``store_errors`` is passed to the subscribers as
        it comes, while the session runs (a store fault is news the app needs now)
        and while the writer finishes after ``receive`` ended: its last reports
        reach the subscribers before they end. The writer must close
        ``store_errors`` when it is done.
        """
        try:
            self._recorder = recorder
            self._receive = receive
            if recorder is not None:
                for item in recorder.items:
                    if isinstance(item, ToolCallItem):
                        self._tool_names[item.call_id] = item.name
            with receive:
                async with trio.open_nursery() as nursery:
                    if store_errors is not None:
                        nursery.start_soon(self._relay, store_errors)
                    task_status.started()
                    await self._open.wait()
                    playback = await self._route_all(receive, playback)
                    # The writer finishes (and makes its last reports) once the
                    # recorder is closed; the relay returns when it closes store_errors.
                    if recorder is not None:
                        recorder.close()
        finally:
            self._ended = True
            self._drained.unpark_all()
            for sub in self._subs:
                sub.end()
            if recorder is not None:
                recorder.close()
            if store_errors is not None:
                store_errors.close()
            if playback is not None:
                playback.close()

    async def _route_all(
        self,
        receive: trio.MemoryReceiveChannel[Event],
        playback: trio.MemorySendChannel[PlaybackInput] | None,
    ) -> trio.MemorySendChannel[PlaybackInput] | None:
        """The routing loop; returns the playback channel (None once playback ended)."""
        recorder = self._recorder
        while True:
            # ``receive()`` in two halves, so the hub knows when its input is empty.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                event = receive.receive_nowait()
            except trio.WouldBlock:
                self._drained.unpark_all()  # everything sent so far is routed
                try:
                    event = await receive.receive()
                except trio.EndOfChannel:
                    return playback
            except trio.EndOfChannel:
                return playback
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
            if isinstance(event, ReplyAudio):
                if playback is not None:
                    playback = await _to_playback(playback, event)
                continue
            if playback is not None and isinstance(event, ReplyDone | ReplyInterrupted):
                playback = await _to_playback(playback, event)
            if isinstance(event, ToolCall):
                self._tool_names[event.call_id] = event.name
            if recorder is not None:
                await recorder.record(event)
            for observer in self._observers:
                observer(event)
            self.publish_nowait(event)

    async def _relay(self, store_errors: trio.MemoryReceiveChannel[Event]) -> None:
        with store_errors:
            await self._open.wait()  # subscribers made before the start see these too
            async for event in store_errors:
                self.publish_nowait(event)
