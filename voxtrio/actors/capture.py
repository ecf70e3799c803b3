"""Capture actors: where audio enters a session.

Each capture is a small object holding its configuration, with an
``async run(send, *, events, counter, task_status)`` method that sends
:class:`~voxtrio.codecs.AudioFrame` chunks in the source's own format and closes
``send`` when the source ends.

Drop policy. A ``realtime`` source is live audio: it never blocks on a full channel;
a chunk that finds the channel full is dropped, counted, and reported as an
:class:`~voxtrio.messages.AudioDropped` event (at most one report per second of
drops, plus one when the source ends). A non-realtime source (a file read as fast as
the pipeline takes it) waits instead, and loses nothing.
"""

from __future__ import annotations

import contextlib
import os
import wave
from typing import Any, Protocol

import numpy as np
import trio

from ..audio import AudioFormat, AudioFrame, FrameMs, as_pcm, frame_fraction
from ..codecs.audio import Reframer
from ..codecs.wav import read_wav
from ..messages import AudioDropped, ErrorEvent, Event
from .base import EdgeCounter
from .pacing import Pacer

__all__ = [
    "ArrayCapture",
    "ByteStreamCapture",
    "Capture",
    "MicCapture",
    "WavCapture",
]

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
            await self._send.send(frame)
        c.messages += 1
        c.frames += 1
        c.samples += frame.samples

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


async def _send_chunks(
    chunks: Reframer,
    pcm: np.ndarray,
    sender: _Sender,
    pacer: Pacer | None,
) -> None:
    """Cut ``pcm`` with ``chunks`` and send each chunk, paced if ``pacer``."""
    # ``pcm`` is the capture's private copy and is only read: the framer may take it
    # over without copying it again (the frames are read-only views of it).
    frames = chunks.push_owned(pcm) + chunks.flush(pad=False)
    for frame in frames:
        if pacer is not None:
            await pacer.wait(frame.duration)
        await sender.send(frame)


class ArrayCapture:
    """Capture from an in-memory int16 array.

    Args:
        pcm: ``(samples, channels)`` int16, or 1-D for mono; copied.
        fmt: its format.
        realtime: pace chunks on trio's clock as a live source would, with the live
            drop policy; otherwise send as fast as the pipeline takes them.
        chunk_ms: chunk length. Defaults to 20 ms when realtime; 200 ms otherwise,
            since moving blocks costs one channel hop per block, not per frame.
    """

    def __init__(
        self,
        pcm: np.ndarray,
        fmt: AudioFormat,
        *,
        realtime: bool = False,
        chunk_ms: FrameMs | None = None,
    ) -> None:
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        self._pcm = as_pcm(pcm, fmt.channels).copy()
        self._fmt = fmt
        self._realtime = realtime
        self._chunk_ms: FrameMs = chunk_ms if chunk_ms is not None else (20 if realtime else 200)
        frame_fraction(fmt.sample_rate, self._chunk_ms)  # validate now, at the call site

    @property
    def format(self) -> AudioFormat:
        return self._fmt

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
        with send, events:
            task_status.started()
            sender = _Sender(send, events, counter, self._realtime)
            pacer = Pacer() if self._realtime else None
            await _send_chunks(Reframer(self._fmt, self._chunk_ms), self._pcm, sender, pacer)
            await sender.report()

    def __repr__(self) -> str:
        return (
            f"ArrayCapture(samples={self._pcm.shape[0]}, fmt={self._fmt!r}, "
            f"realtime={self._realtime})"
        )


def _check_wav(path: str) -> None:
    """Read only the header of ``path``: a 16-bit PCM WAV file in a format voxtrio takes."""
    try:
        with wave.open(path, "rb") as w:
            width, rate, channels = w.getsampwidth(), w.getframerate(), w.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise ValueError(
            f"WavCapture: {path!r} is not a WAV file voxtrio can read ({exc}); "
            "supported: 16-bit integer PCM WAV"
        ) from None
    if width != 2:
        raise ValueError(
            f"WavCapture: {path!r} has {8 * width}-bit samples; supported: 16-bit integer PCM WAV"
        )
    AudioFormat(rate, channels)  # an unsupported rate or channel count raises here


class WavCapture:
    """Capture from a 16-bit PCM WAV file, read in a worker thread.

    ``open_session`` checks the file (:meth:`check`): a missing or unsupported one
    raises there. One that goes bad later (removed before it is read) becomes an
    :class:`~voxtrio.messages.ErrorEvent` (``capture_failed``) and the capture ends.
    See :class:`ArrayCapture` for ``realtime`` and ``chunk_ms``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        realtime: bool = False,
        chunk_ms: FrameMs | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._realtime = realtime
        self._chunk_ms = chunk_ms

    @property
    def live(self) -> bool:
        """Whether this source is live (see :class:`Capture`)."""
        return self._realtime

    def check(self) -> None:
        """Raise now if the file cannot be read: ``open_session`` calls this, so a
        missing or unsupported file is an error at the call, not a session that idles.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a 16-bit PCM WAV file (the message says what it is).
        """
        if not os.path.exists(self._path):
            raise FileNotFoundError(f"WavCapture: no such file: {self._path!r}")
        _check_wav(self._path)

    async def run(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        *,
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            pcm, fmt = await trio.to_thread.run_sync(read_wav, self._path)
        except (OSError, ValueError) as exc:
            with send, events:
                task_status.started()
                await events.send(
                    ErrorEvent(
                        f"cannot read WAV input: {exc}",
                        code="capture_failed",
                        source="capture",
                    )
                )
            return
        inner = ArrayCapture(pcm, fmt, realtime=self._realtime, chunk_ms=self._chunk_ms)
        await inner.run(send, events=events, counter=counter, task_status=task_status)

    def __repr__(self) -> str:
        return f"WavCapture({self._path!r}, realtime={self._realtime})"


class ByteStreamCapture:
    """Capture interleaved little-endian int16 bytes from a trio ``ReceiveStream``.

    A socket, a pipe, or a WebRTC bridge: the stream's own pace is the live pace, so
    this capture uses the live drop policy (never blocks the source). Chunks are
    whole frames of ``chunk_ms`` (partial samples and frames are carried over); when
    the stream ends the rest is sent short. A broken stream becomes an
    :class:`~voxtrio.messages.ErrorEvent` (``capture_failed``) and the capture ends.

    Args:
        stream: the byte source; closed when the capture ends.
        fmt: the format of its bytes.
        chunk_ms: chunk length.
        max_read: bytes asked for per ``receive_some`` call.
        realtime: True (default) for a live source: never block it, drop what the
            pipeline cannot take (counted and reported). False for a source that can
            wait, such as a file piped in faster than real time: the capture then
            stops reading while the pipeline is full, and nothing is lost.
    """

    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        fmt: AudioFormat,
        *,
        chunk_ms: FrameMs = 20,
        max_read: int = 65536,
        realtime: bool = True,
    ) -> None:
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        frame_fraction(fmt.sample_rate, chunk_ms)
        if max_read < fmt.bytes_per_sample:
            raise ValueError(f"max_read must be at least one sample ({fmt.bytes_per_sample} bytes)")
        self._stream = stream
        self._fmt = fmt
        self._chunk_ms = chunk_ms
        self._max_read = max_read
        self._realtime = realtime

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
        chunks = Reframer(self._fmt, self._chunk_ms)
        async with self._stream:
            with send, events:
                task_status.started()
                sender = _Sender(send, events, counter, self._realtime)
                try:
                    while data := await self._stream.receive_some(self._max_read):
                        for frame in chunks.push(data):
                            await sender.send(frame)
                except (trio.BrokenResourceError, OSError) as exc:
                    await events.send(
                        ErrorEvent(
                            f"audio byte stream failed: {type(exc).__name__}: {exc}",
                            code="capture_failed",
                            source="capture",
                        )
                    )
                for frame in chunks.flush(pad=False):
                    await sender.send(frame)
                await sender.report()


class MicCapture:
    """Capture from the default microphone through ``sounddevice`` (``voxtrio[mic]``).

    The audio callback runs on PortAudio's thread and hands blocks to trio through
    a bounded queue with the live drop policy: a block that finds the queue full is
    dropped, counted and reported as ``AudioDropped(edge="capture")``, and the next
    block's pts skips the dropped samples, so pts stay tied to the microphone's clock.
    """

    def __init__(self, fmt: AudioFormat, *, chunk_ms: FrameMs = 20, device: Any = None) -> None:
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        self._fmt = fmt
        self._block = int(frame_fraction(fmt.sample_rate, chunk_ms))
        self._device = device

    @property
    def live(self) -> bool:
        """Whether this source is live (see :class:`Capture`)."""
        return True

    async def run(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        *,
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            import sounddevice
        except ImportError as exc:
            raise RuntimeError(
                "MicCapture needs the optional 'sounddevice' package: pip install 'voxtrio[mic]'"
            ) from exc
        token = trio.lowlevel.current_trio_token()
        # Each accepted block travels with the drops just before it, so the consumer
        # knows exactly where the gaps are.
        blocks_tx, blocks_rx = trio.open_memory_channel[tuple[int, int, np.ndarray]](32)
        lost = [0, 0]  # blocks and samples dropped since the last accepted block

        def deliver(block: np.ndarray) -> None:  # runs in trio's thread
            try:
                blocks_tx.send_nowait((lost[0], lost[1], block))
                lost[0] = lost[1] = 0
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                # Full, or the capture already ended (a block PortAudio delivered while
                # the stream stopped): an exception here would crash the trio run.
                counter.dropped_frames += 1
                counter.dropped_samples += block.shape[0]
                lost[0] += 1
                lost[1] += block.shape[0]

        def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
            block = indata.copy()
            block.flags.writeable = False
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(deliver, block)

        with send, events, blocks_rx:
            sender = _Sender(send, events, counter, realtime=True)
            stream = sounddevice.InputStream(
                samplerate=self._fmt.sample_rate,
                channels=self._fmt.channels,
                dtype="int16",
                blocksize=self._block,
                device=self._device,
                callback=callback,
            )
            pts = 0
            with stream:
                task_status.started()
                async for frames_lost, samples_lost, block in blocks_rx:
                    if frames_lost:
                        pts += samples_lost
                        await sender.dropped_upstream(frames_lost, samples_lost)
                    frame = AudioFrame(block, self._fmt.sample_rate, pts, 0)
                    pts += block.shape[0]
                    await sender.send(frame)
