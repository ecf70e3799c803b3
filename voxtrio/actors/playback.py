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
from ..codecs.audio import Reframer
from ..codecs.resample import StreamResampler, float_to_int16, int16_to_float
from ..messages import (
    AudioDropped,
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


class _Track:
    """The output track: one reframer for its whole life (pts never restart) and a
    resampler from the reply rate, replaced when either rate changes."""

    def __init__(self, in_rate: int, fmt: AudioFormat, frame_ms: FrameMs) -> None:
        self.fmt = fmt
        self.framer = Reframer(fmt, frame_ms)
        self.resampler = StreamResampler(in_rate, fmt.sample_rate, 1)

    @property
    def in_rate(self) -> int:
        return self.resampler.in_rate

    def push(self, pcm: np.ndarray) -> list[AudioFrame]:
        out = self.resampler.push_float(int16_to_float(pcm[:, 0]))
        return self.framer.push(self._channels(out))

    def drain(self) -> list[AudioFrame]:
        """Everything held, the last frame short: the end of a reply."""
        tail = self.resampler.flush_float()
        frames = self.framer.push(self._channels(tail)) if tail.size else []
        return frames + self.framer.flush(pad=False)

    def discard(self) -> None:
        """Forget held audio (barge-in). The reframer's partial frame is dropped; the
        next frame's pts skips over it, so pts stay increasing."""
        self.resampler.reset()
        self.framer.flush(pad=False)

    def set_in_rate(self, in_rate: int) -> list[AudioFrame]:
        frames = self.drain()
        self.resampler = StreamResampler(in_rate, self.fmt.sample_rate, 1)
        return frames

    def reframe(self, fmt: AudioFormat, frame_ms: FrameMs) -> list[AudioFrame]:
        tail = self.resampler.flush_float()
        frames = self.framer.push(self._channels(tail)) if tail.size else []
        frames += self.framer.reframe(fmt, frame_ms)
        self.fmt = fmt
        self.resampler = StreamResampler(self.in_rate, fmt.sample_rate, 1)
        return frames

    def _channels(self, mono: np.ndarray) -> np.ndarray:
        pcm = float_to_int16(mono).reshape(-1, 1)
        return pcm if self.fmt.channels == 1 else np.repeat(pcm, self.fmt.channels, axis=1)


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
    track = _Track(reply_rate, output, frame_ms)
    if not (max_queue_s > 0 and math.isfinite(max_queue_s)):
        raise ValueError(f"max_queue_s must be finite and > 0, got {max_queue_s}")
    drops = _DropCounter(counter)
    done = trio.Event()
    ended: list[QueuedFrame] = []  # end marks dropped with the audio before them
    played_s: dict[str | None, Fraction] = {}  # per response, handed to the output

    def enqueue(frames: list[AudioFrame], response_id: str | None, item_id: str | None) -> None:
        for f in frames:
            state.append(QueuedFrame(f, response_id, item_id))
        while state.queued_s > max_queue_s and state.queued:
            q = state.popleft()
            if q.end_of_reply:
                ended.append(q)  # reported in order by the pacer
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

    def mark_end(response_id: str | None) -> None:
        empty = np.zeros((0, track.fmt.channels), np.int16)
        frame = AudioFrame(empty, track.fmt.sample_rate, 0)
        state.append(QueuedFrame(frame, response_id, None, end_of_reply=True))
        state.wakeup.set()

    def discard_cancelled_tail(current: str | None) -> None:
        for response_id in state.tail_discards:
            if response_id is None or response_id == current:
                track.discard()
        state.tail_discards.clear()

    async def receiver() -> None:
        current: tuple[str | None, str | None] = (None, None)
        with receive:
            async for msg in receive:
                discard_cancelled_tail(current[0])
                match msg:
                    case ReplyAudio():
                        if msg.response_id is not None and msg.response_id in state.cancelled:
                            continue
                        if msg.sample_rate != track.in_rate:
                            enqueue(track.set_in_rate(msg.sample_rate), *current)
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
                        mark_end(response_id)
                    case Reframe(rate_hz=rate, frame_ms=fms):
                        enqueue(track.reframe(AudioFormat(rate, track.fmt.channels), fms), *current)
        discard_cancelled_tail(current[0])
        enqueue(track.drain(), *current)
        done.set()
        state.wakeup.set()

    async def pacer() -> None:
        pace = Pacer() if realtime else None

        async def reply_played(response_id: str | None) -> None:
            played = played_s.pop(response_id, Fraction(0))
            if events is not None:
                # Drops not yet reported came before this mark: that news goes first.
                if drops.unreported:
                    await events.send(drops.report())
                await events.send(ReplyPlayed(response_id, math.floor(played * 1000)))

        dry: list[str | None] = []  # the reply that ran dry, while it waits for audio
        last: list[str | None] = []  # the reply of the last frame sent, until it ended
        try:
            while True:
                while ended:  # marks dropped with the audio before them
                    await reply_played(ended.pop(0).response_id)
                if state.queued and state.queued[0].end_of_reply:
                    last.clear()
                    await reply_played(state.popleft().response_id)
                    continue
                if not state.queued:
                    if pace is not None and last and not dry and last[0] not in state.cancelled:
                        dry[:] = last  # ran dry in the middle of a reply: an underrun?
                    if drops.unreported and events is not None:
                        # Nothing will play after these drops: report them now.
                        await events.send(drops.report())
                        continue
                    if done.is_set():
                        return
                    state.wakeup = trio.Event()
                    await state.wakeup.wait()
                    if pace is not None:
                        pace.reset()  # an idle gap is not lag to catch up
                    continue
                q = state.queued[0]
                if pace is not None:
                    await pace.wait_due()
                    # The frame may have been cancelled while we slept: then the next
                    # one takes its slot (nothing booked, so no stall).
                    if not state.queued or state.queued[0] is not q:
                        continue
                    pace.book(q.frame.duration)
                state.popleft()
                if isinstance(sink, WavSink):
                    await sink.write(q.frame)
                else:
                    await sink.send(q.frame)
                counter.messages += 1
                counter.frames += 1
                counter.samples += q.frame.samples
                if dry and dry[0] == q.response_id:  # the reply went on after running dry
                    state.underruns += 1
                    n = state.underruns_by_response.get(q.response_id, 0)
                    state.underruns_by_response[q.response_id] = n + 1
                dry.clear()
                if not last or last[0] != q.response_id:
                    last[:] = [q.response_id]
                    state.first_played_at.setdefault(q.response_id, trio.current_time())
                if q.item_id is not None:
                    state.add_played(q.item_id, q.frame.duration)
                played_s[q.response_id] = (
                    played_s.get(q.response_id, Fraction(0)) + q.frame.duration
                )
                if drops.unreported and events is not None:
                    await events.send(drops.report())
        finally:
            if isinstance(sink, WavSink):
                with trio.CancelScope(shield=True):
                    await sink.aclose()
            else:
                sink.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        nursery.start_soon(pacer)
        task_status.started()


class _DropCounter:
    """Counts queue-overflow drops (in the edge counter at once, so stats() sees them
    while the sink is blocked) until they are reported."""

    def __init__(self, counter: EdgeCounter) -> None:
        self.counter = counter
        self.unreported = 0
        self.unreported_samples = 0
        self.total = 0

    def note(self, frame: AudioFrame) -> None:
        self.unreported += 1
        self.unreported_samples += frame.samples
        self.total += 1
        self.counter.dropped_frames += 1
        self.counter.dropped_samples += frame.samples

    def peek(self) -> AudioDropped:
        """The report of the drops not yet reported (nothing changes)."""
        return AudioDropped("playback", self.unreported, self.unreported_samples, self.total)

    def report(self) -> AudioDropped:
        """The report, and they count as reported."""
        event = self.peek()
        self.unreported = self.unreported_samples = 0
        return event
