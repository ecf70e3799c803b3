"""Capture from the default microphone through ``sounddevice`` (``voxtrio[mic]``)."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import trio

from ...audio import AudioFormat, AudioFrame, FrameMs, frame_fraction
from ._base import _CaptureBase, _Sender


class MicCapture(_CaptureBase):
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
        self._realtime = True  # always live

    async def _feed(self, sender: _Sender, task_status: trio.TaskStatus[None]) -> None:
        try:
            import sounddevice
        except ImportError as exc:
            raise RuntimeError(
                "MicCapture needs the optional 'sounddevice' package: pip install 'voxtrio[mic]'"
            ) from exc
        counter = sender.counter
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

        with blocks_rx:
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
