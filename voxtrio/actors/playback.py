"""The playback actor: reply audio in, output-track frames out, paced.

Reply audio (:class:`~voxtrio.messages.ReplyAudio`, at the provider's output rate)
is resampled with one continuous stream to the output track's rate and cut into exact
frames of the track's frame length. Two tasks share a queue of ready frames: the
receiver never waits on the sink, so a provider that sends a reply faster than real
time is never slowed down; the pacer sends one frame per frame duration.

``Reframe(rate_hz, frame_ms)`` -- the seed's ``reframe_audio_track`` as a message --
is applied in order with the audio: the resampler's tail and the reframer's partial
frame are drained at the old format, then the track switches. Pacing runs on the
exact durations of the frames actually sent, so there is no burst or stall across the
switch, and pts keep increasing (see :meth:`Reframer.reframe`).

Barge-in: on :class:`~voxtrio.messages.ReplyInterrupted` (or
:meth:`PlaybackState.cancel`) queued frames of that reply are dropped and later audio
with its id is ignored. :class:`PlaybackState` knows how many samples of each item
were actually sent to the sink, so a truncate can name the played position.
"""

from __future__ import annotations

import math
import os
import wave
from fractions import Fraction

import numpy as np
import trio

from ..audio import AudioFormat, AudioFrame, FrameMs, frame_fraction
from ..messages import (
    Event,
    PlaybackInput,
    Reframe,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
)
from .base import EdgeCounter
from .pacing import Pacer
from .playback_state import PlaybackState, QueuedFrame, faded
from .playback_track import DropCounter, Track

__all__ = ["PlaybackState", "QueuedFrame", "WavSink", "faded", "run"]


class WavSink:
    """Writes output frames to a WAV file, in a worker thread.

    The file's format is fixed by the first frame. A WAV file has one format, so a
    frame of another format (after a ``Reframe`` to another rate) raises
    ``ValueError``: reframe only to the same rate when writing to a WAV sink.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._writer: wave.Wave_write | None = None
        self._fmt: AudioFormat | None = None
        self.frames_written = 0

    async def write(self, frame: AudioFrame) -> None:
        """Append ``frame`` (in a worker thread); the first frame fixes the format."""
        fmt = frame.format
        if self._writer is None:
            self._writer = await trio.to_thread.run_sync(self._open, fmt)
            self._fmt = fmt
        elif fmt != self._fmt:
            raise ValueError(f"WavSink {self._path!r} is {self._fmt}, got a frame in {fmt}")
        await trio.to_thread.run_sync(self._writer.writeframes, frame.to_bytes())
        self.frames_written += 1

    def _open(self, fmt: AudioFormat) -> wave.Wave_write:
        w = wave.open(self._path, "wb")  # noqa: SIM115 - closed by aclose()
        w.setnchannels(fmt.channels)
        w.setsampwidth(2)
        w.setframerate(fmt.sample_rate)
        return w

    async def aclose(self) -> None:
        """Finish the file (its header holds the length). Idempotent."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await trio.to_thread.run_sync(writer.close)


Sink = trio.MemorySendChannel[AudioFrame] | WavSink


async def run(
    receive: trio.MemoryReceiveChannel[PlaybackInput],
    sink: Sink,
    *,
    reply_rate: int,
    output: AudioFormat,
    frame_ms: FrameMs = 20,
    realtime: bool = True,
    max_queue_s: float = 120.0,
    state: PlaybackState | None = None,
    events: trio.MemorySendChannel[Event] | None = None,
    counter: EdgeCounter | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Play reply audio from ``receive`` into ``sink``.

    Args:
        receive: reply audio and playback controls.
        sink: a channel of frames for the app, or a :class:`WavSink`; closed when
            playback ends.
        reply_rate: the provider's output rate (a ``ReplyAudio`` of another rate
            switches the resampler after draining).
        output: the output track's format (mono reply audio is copied to every
            channel).
        frame_ms: the output frame length.
        realtime: pace frames on trio's clock; otherwise send as fast as the sink
            takes them.
        max_queue_s: audio queued beyond this many seconds is dropped (oldest
            first), counted and reported as ``AudioDropped(edge="playback")``.
        state: shared :class:`PlaybackState` (played positions, cancellations).
        events: where drop reports go.

    When ``receive`` ends, everything queued is played (the tail drained, the last
    frame short), then the sink is closed. On cancellation queued audio is dropped
    and the sink is closed.
    """
    frame_fraction(output.sample_rate, frame_ms)
    state = state if state is not None else PlaybackState()
    counter = counter if counter is not None else EdgeCounter("playback")
    track = Track(reply_rate, output, frame_ms)
    if not (max_queue_s > 0 and math.isfinite(max_queue_s)):
        raise ValueError(f"max_queue_s must be finite and > 0, got {max_queue_s}")
    playback = _Playback(receive, sink, track, state, counter, events, realtime, max_queue_s)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(playback.receiver)
        nursery.start_soon(playback.pacer)
        task_status.started()


class _Playback:
    """One run of the actor: the receiver and the pacer tasks, and what they share."""

    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[PlaybackInput],
        sink: Sink,
        track: Track,
        state: PlaybackState,
        counter: EdgeCounter,
        events: trio.MemorySendChannel[Event] | None,
        realtime: bool,
        max_queue_s: float,
    ) -> None:
        self.receive = receive
        self.sink = sink
        self.track = track
        self.state = state
        self.counter = counter
        self.events = events
        self.realtime = realtime
        self.max_queue_s = max_queue_s
        self.drops = DropCounter(counter)
        self.done = trio.Event()
        self.ended: list[QueuedFrame] = []  # end marks dropped with the audio before them
        self.played_s: dict[str | None, Fraction] = {}  # per response, handed to the output
        self.dry: list[str | None] = []  # the reply that ran dry, while it waits for audio
        self.last: list[str | None] = []  # the reply of the last frame sent, until it ended

    # ------------------------------------------------------------------ receiver

    def enqueue(
        self, frames: list[AudioFrame], response_id: str | None, item_id: str | None
    ) -> None:
        state, drops, events = self.state, self.drops, self.events
        for f in frames:
            state.append(QueuedFrame(f, response_id, item_id))
        while state.queued_s > self.max_queue_s and state.queued:
            q = state.popleft()
            if q.end_of_reply:
                self.ended.append(q)  # reported in order by the pacer
            else:
                drops.note(q.frame)
        state.wakeup.set()
        if drops.unreported and events is not None:
            # Told now, not when a frame next reaches a sink nobody may be reading.
            # Never waits (the hub may be waiting on this receiver): if the event
            # channel is full, the pacer reports them later.
            try:
                events.send_nowait(drops.peek())
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                drops.report()  # the session is ending: nobody to tell
            else:
                drops.report()

    def mark_end(self, response_id: str | None) -> None:
        track = self.track
        empty = np.zeros((0, track.fmt.channels), np.int16)
        frame = AudioFrame(empty, track.fmt.sample_rate, 0)
        self.state.append(QueuedFrame(frame, response_id, None, end_of_reply=True))
        self.state.wakeup.set()

    def discard_cancelled_tail(self, current: str | None) -> None:
        for response_id in self.state.tail_discards:
            if response_id is None or response_id == current:
                self.track.discard()
        self.state.tail_discards.clear()

    async def receiver(self) -> None:
        state, track, enqueue = self.state, self.track, self.enqueue
        current: tuple[str | None, str | None] = (None, None)
        with self.receive:
            async for msg in self.receive:
                self.discard_cancelled_tail(current[0])
                match msg:
                    case ReplyAudio():
                        if msg.response_id is not None and msg.response_id in state.cancelled:
                            continue
                        if (
                            msg.sample_rate != track.in_rate
                            or msg.encoding != track.in_encoding
                        ):
                            enqueue(track.set_in_rate(msg.sample_rate, msg.encoding), *current)
                        current = (msg.response_id, msg.item_id)
                        state.current_response = msg.response_id
                        enqueue(track.push(msg.pcm), *current)
                    case ReplyInterrupted():
                        state.cancel(msg.response_id)
                        if msg.response_id is None or msg.response_id == current[0]:
                            track.discard()  # what the filter and framer hold is its
                    case ReplyDone(response_id=response_id):
                        # The reply's last samples are in the filter: play them now.
                        enqueue(track.drain(), *current)
                        self.mark_end(response_id)
                    case Reframe(rate_hz=rate, frame_ms=fms):
                        fmt = AudioFormat(rate, track.fmt.channels, encoding=track.fmt.encoding)
                        enqueue(track.reframe(fmt, fms), *current)
        self.discard_cancelled_tail(current[0])
        enqueue(track.drain(), *current)
        self.done.set()
        state.wakeup.set()

    # --------------------------------------------------------------------- pacer

    async def pacer(self) -> None:
        pace = Pacer() if self.realtime else None
        try:
            while await self._pace_step(pace):
                pass
        finally:
            if isinstance(self.sink, WavSink):
                with trio.CancelScope(shield=True):
                    await self.sink.aclose()
            else:
                self.sink.close()

    async def _pace_step(self, pace: Pacer | None) -> bool:
        """One turn of the pacer: an end mark, an idle wait or one frame sent.
        False once everything is played and the input has ended."""
        state = self.state
        while self.ended:  # marks dropped with the audio before them
            await self._reply_played(self.ended.pop(0).response_id)
        if state.queued and state.queued[0].end_of_reply:
            self.last.clear()
            await self._reply_played(state.popleft().response_id)
            return True
        if not state.queued:
            return await self._idle(pace)
        q = state.queued[0]
        if pace is not None:
            await pace.wait_due()
            # The frame may have been cancelled while we slept: then the next
            # one takes its slot (nothing booked, so no stall).
            if not state.queued or state.queued[0] is not q:
                return True
            pace.book(q.frame.duration)
        state.popleft()
        await self._send(q)
        return True

    async def _idle(self, pace: Pacer | None) -> bool:
        """Nothing queued: report drops, or end, or wait for more."""
        state, last = self.state, self.last
        if pace is not None and last and not self.dry and last[0] not in state.cancelled:
            self.dry[:] = last  # ran dry in the middle of a reply: an underrun?
        if self.drops.unreported and self.events is not None:
            # Nothing will play after these drops: report them now.
            await self.events.send(self.drops.report())
            return True
        if self.done.is_set():
            return False
        state.wakeup = trio.Event()
        await state.wakeup.wait()
        if pace is not None:
            pace.reset()  # an idle gap is not lag to catch up
        return True

    async def _send(self, q: QueuedFrame) -> None:
        """Hand one frame to the sink and account for it."""
        state, counter = self.state, self.counter
        if isinstance(self.sink, WavSink):
            await self.sink.write(q.frame)
        else:
            await self.sink.send(q.frame)
        counter.sent(1, q.frame.samples, q.frame.sample_rate)
        if self.dry and self.dry[0] == q.response_id:  # the reply went on after running dry
            state.underruns += 1
            n = state.underruns_by_response.get(q.response_id, 0)
            state.underruns_by_response[q.response_id] = n + 1
        self.dry.clear()
        if not self.last or self.last[0] != q.response_id:
            self.last[:] = [q.response_id]
            state.first_played_at.setdefault(q.response_id, trio.current_time())
        if q.item_id is not None:
            state.add_played(q.item_id, q.frame.duration)
        played = self.played_s.get(q.response_id, Fraction(0))
        self.played_s[q.response_id] = played + q.frame.duration
        if self.drops.unreported and self.events is not None:
            await self.events.send(self.drops.report())

    async def _reply_played(self, response_id: str | None) -> None:
        played = self.played_s.pop(response_id, Fraction(0))
        if self.events is not None:
            # Drops not yet reported came before this mark: that news goes first.
            if self.drops.unreported:
                await self.events.send(self.drops.report())
            await self.events.send(ReplyPlayed(response_id, math.floor(played * 1000)))
