"""Capture from a trio byte stream (a socket, a pipe, a WebRTC bridge)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import trio

from ...audio import AudioFormat, FrameMs, frame_fraction
from ...codecs.audio import Reframer
from ._base import _CaptureBase, _Sender


class ByteStreamCapture(_CaptureBase):
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

    def _held(self) -> AbstractAsyncContextManager[object]:
        return self._stream

    async def _feed(self, sender: _Sender, task_status: trio.TaskStatus[None]) -> None:
        chunks = Reframer(self._fmt, self._chunk_ms)
        task_status.started()
        try:
            while data := await self._stream.receive_some(self._max_read):
                for frame in chunks.push(data):
                    await sender.send(frame)
        except (trio.BrokenResourceError, OSError) as exc:
            await sender.failed(f"audio byte stream failed: {type(exc).__name__}: {exc}")
        for frame in chunks.flush(pad=False):
            await sender.send(frame)
        await sender.report()
