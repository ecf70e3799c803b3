"""Captures of audio that is all there from the start: an in-memory array and an audio
file (WAV, FLAC, Ogg, MP3; read in a worker thread, then sent as an array)."""

from __future__ import annotations

import os

import numpy as np
import trio

from ...audio import AudioFormat, FrameMs, as_pcm, frame_fraction
from ...codecs.audio import Reframer
from ...codecs.audiofile import probe_audio, read_audio
from ..pacing import Pacer
from ._base import _CaptureBase, _Sender


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


class ArrayCapture(_CaptureBase):
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
        """The format of the frames this capture yields (the array's rate and channels)."""
        return self._fmt

    async def _feed(self, sender: _Sender, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        pacer = Pacer() if self._realtime else None
        await _send_chunks(Reframer(self._fmt, self._chunk_ms), self._pcm, sender, pacer)
        await sender.report()

    def __repr__(self) -> str:
        return (
            f"ArrayCapture(samples={self._pcm.shape[0]}, fmt={self._fmt!r}, "
            f"realtime={self._realtime})"
        )


def _check_wav(path: str) -> None:
    """Read only the header of ``path``: an audio file in a format voxtrio takes."""
    try:
        probe_audio(path)
    except ValueError as exc:
        raise ValueError(f"WavCapture: {exc}") from None


class WavCapture(_CaptureBase):
    """Capture from an audio file, read whole in a worker thread.

    Reads 16-bit PCM WAV bit-exactly, and 24/32-bit integer or float WAV, FLAC, Ogg
    Vorbis/Opus and MP3 converted to int16 as :mod:`voxtrio.codecs.audiofile` says, at
    the file's own rate and channel count.

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

    def check(self) -> None:
        """Raise now if the file cannot be read: ``open_session`` calls this, so a
        missing or unsupported file is an error at the call, not a session that idles.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not an audio file of a supported kind (the message says what it
                is and what is supported).
        """
        if not os.path.exists(self._path):
            raise FileNotFoundError(f"WavCapture: no such file: {self._path!r}")
        _check_wav(self._path)

    async def _feed(self, sender: _Sender, task_status: trio.TaskStatus[None]) -> None:
        try:
            pcm, fmt = await trio.to_thread.run_sync(read_audio, self._path)
        except (OSError, ValueError) as exc:
            task_status.started()
            await sender.failed(f"cannot read audio input: {exc}")
            return
        inner = ArrayCapture(pcm, fmt, realtime=self._realtime, chunk_ms=self._chunk_ms)
        await inner._feed(sender, task_status)

    def __repr__(self) -> str:
        return f"WavCapture({self._path!r}, realtime={self._realtime})"


#: The same capture under a name that says it reads more than WAV.
FileCapture = WavCapture
