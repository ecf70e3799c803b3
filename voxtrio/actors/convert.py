"""The convert actor: capture format in, the provider's exact format and framing out.

Downmix (or upmix), streaming resample, exact reframe. Control messages travel
in-band with the audio, so their order is kept: at a segment end (``CommitInput``,
``ClearInput``, ``EndOfInput``, or the end of the input channel) the resampler's tail
and the reframer's partial frame are flushed *before* the control is forwarded, so no
tail is ever lost. A change of input format mid-stream is a segment end too.

G.711 input to a provider that takes that same G.711 format passes through: the codes
are only cut into frames, never decoded or resampled (see
:mod:`voxtrio.codecs.g711_stream`).

Frames go out as :class:`~voxtrio.messages.FrameBatch` messages: one channel hop per
input chunk rather than per frame.
"""

from __future__ import annotations

import trio

from ..audio import AudioFormat, AudioFrame, FrameMs
from ..codecs.convert import Converter
from ..codecs.g711_stream import FrameConverter, StreamConverter
from ..messages import ClearInput, CommitInput, EndOfInput, FrameBatch, LinkInput
from .base import EdgeCounter

__all__ = ["run"]

_SEGMENT_ENDS = (CommitInput, ClearInput, EndOfInput)


async def run(
    receive: trio.MemoryReceiveChannel[AudioFrame | LinkInput],
    send: trio.MemorySendChannel[LinkInput],
    *,
    target: AudioFormat,
    frame_ms: FrameMs = 20,
    counter: EdgeCounter | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Convert audio from ``receive`` to ``target`` frames on ``send``.

    Args:
        receive: capture chunks (any supported format, may change mid-stream) and
            link controls, in order.
        send: :class:`FrameBatch` messages of ``target`` frames, and the controls.
        target: the provider's declared input format.
        frame_ms: the provider's frame length.
        counter: updated with what is sent.

    Closes ``send`` when ``receive`` ends, after flushing. On cancellation whatever
    the converter holds (under one frame plus the filter delay) is discarded.
    """
    counter = counter if counter is not None else EdgeCounter("convert")
    converter: FrameConverter | None = None
    source: AudioFormat | None = None

    async def emit(frames: list[AudioFrame]) -> None:
        if frames:
            batch = FrameBatch(tuple(frames))
            try:
                # Without the yield of send(): the loop's receive is this task's
                # checkpoint, and a live chunk then costs one scheduler pass less.
                send.send_nowait(batch)
            except trio.WouldBlock:
                await send.send(batch)  # full: wait (backpressure)
            # The frames of one push or flush are contiguous: count them by pts.
            counter.sent(len(frames), frames[-1].end_pts - frames[0].pts, frames[0].sample_rate)

    receive_nowait = receive.receive_nowait
    with receive, send:
        task_status.started()
        while True:
            # What is queued already is taken without receive()'s scheduler pass per
            # message (chunks that queued up are converted in one go); the wait is
            # only for an empty channel. Cancellation is still seen at every message.
            try:
                msg = receive_nowait()
                await trio.lowlevel.checkpoint_if_cancelled()
            except trio.WouldBlock:
                try:
                    msg = await receive.receive()
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
            if isinstance(msg, AudioFrame):
                if (
                    source is None
                    or msg.sample_rate != source.sample_rate
                    or (msg.channels != source.channels)
                    or msg.encoding != source.encoding
                ):
                    if converter is not None:
                        await emit(converter.flush())
                    source = msg.format
                    if source.is_pcm and target.is_pcm:  # the hot path, as always
                        converter = Converter(source, target, frame_ms)
                    else:  # G.711 on a side: passed through, or decoded / encoded
                        converter = StreamConverter(source, target, frame_ms)
                assert converter is not None
                await emit(converter.push(msg.pcm))
            elif isinstance(msg, FrameBatch):
                raise TypeError("convert takes capture chunks, not FrameBatch")
            else:
                if isinstance(msg, _SEGMENT_ENDS) and converter is not None:
                    await emit(converter.flush())
                await send.send(msg)
                counter.messages += 1
        if converter is not None:
            await emit(converter.flush())
