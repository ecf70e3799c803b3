"""What every capture shares: the :class:`Capture` protocol, the sender that applies
the drop policy and reports drops, and the base that runs a capture's feed."""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import trio

from ...audio import AudioFrame
from ...messages import AudioDropped, ErrorEvent, Event
from ..base import EdgeCounter

_REPORT_INTERVAL_S = 1.0


class Capture(Protocol):
    """Anything the session can run as its audio source.

    ``live``: the source cannot wait (a microphone, a realtime stream): under
    backpressure its audio is dropped by policy. A source that is not live (a file
    read as fast as the pipeline takes it) waits instead and loses nothing.
    """

    @property
    def live(self) -> bool: ...

    async def run(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        *,
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...


class _Sender:
    """Sends chunks under the capture drop policy and reports drops."""

    def __init__(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        realtime: bool,
    ) -> None:
        self._send = send
        self._events = events
        self._counter = counter
        self._realtime = realtime
        self._unreported_frames = 0
        self._unreported_samples = 0
        self._last_report = -float("inf")

    @property
    def counter(self) -> EdgeCounter:
        return self._counter

    async def send(self, frame: AudioFrame) -> None:
        c = self._counter
        if self._realtime:
            try:
                self._send.send_nowait(frame)
            except trio.WouldBlock:
                c.dropped_frames += 1
                c.dropped_samples += frame.samples
                self._unreported_frames += 1
                self._unreported_samples += frame.samples
                if trio.current_time() - self._last_report >= _REPORT_INTERVAL_S:
                    await self.report()
                return
        else:
            # A source that can wait: straight into the channel while it has room (no
            # scheduler pass per chunk: the chunks queue up and the converter takes
            # them in one go), waiting only when it is full. Cancellation is still
            # seen here at every chunk.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                self._send.send_nowait(frame)
            except trio.WouldBlock:
                await self._send.send(frame)
        c.sent(1, frame.samples, frame.sample_rate)

    async def failed(self, message: str) -> None:
        """Tell the app the source failed (``capture_failed``); the capture then ends."""
        await self._events.send(ErrorEvent(message, code="capture_failed", source="capture"))

    async def dropped_upstream(self, frames: int, samples: int) -> None:
        """Account for chunks the source dropped before they reached this sender
        (already in the counter); reported under the same policy."""
        self._unreported_frames += frames
        self._unreported_samples += samples
        if trio.current_time() - self._last_report >= _REPORT_INTERVAL_S:
            await self.report()

    async def report(self) -> None:
        if not self._unreported_frames:
            return
        event = AudioDropped(
            edge="capture",
            frames=self._unreported_frames,
            samples=self._unreported_samples,
            total_frames=self._counter.dropped_frames,
        )
        self._unreported_frames = self._unreported_samples = 0
        self._last_report = trio.current_time()
        await self._events.send(event)


class _CaptureBase:
    """A capture's ``live`` and ``run``: ``run`` owns (and closes) ``send``, ``events``
    and what :meth:`_held` gives, and hands a :class:`_Sender` to the subclass's
    :meth:`_feed`."""

    _realtime: bool

    @property
    def live(self) -> bool:
        """Whether this source is live (see :class:`Capture`)."""
        return self._realtime

    async def run(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        *,
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed frames into ``send`` until the source ends, then close ``send`` and ``events``."""
        async with self._held():  # closed last, after ``send`` and ``events``
            with send, events:
                sender = _Sender(send, events, counter, self._realtime)
                await self._feed(sender, task_status)

    def _held(self) -> AbstractAsyncContextManager[object]:
        """What the capture holds open while it runs (a stream it reads): none here."""
        return contextlib.nullcontext()

    async def _feed(self, sender: _Sender, task_status: trio.TaskStatus[None]) -> None:
        """Send the source's audio through ``sender``; call ``task_status.started()``
        once the source is running."""
        raise NotImplementedError
