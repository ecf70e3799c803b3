"""The convert actor: capture chunks in, provider frames out, controls kept in order
with the converter's tail flushed before each segment end."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors import convert
from voxtrio.actors.base import EdgeCounter
from voxtrio.codecs import AudioFormat, AudioFrame, concat_frames
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import (
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    FrameBatch,
    LinkInput,
    SendText,
)

TARGET = AudioFormat(24_000)


def noise(samples: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, (samples, channels)).astype(np.int16)


def chunks_of(
    pcm: np.ndarray, fmt: AudioFormat, sizes: list[int], pts: int = 0
) -> list[AudioFrame]:
    out = []
    i = 0
    for n in sizes:
        if i >= pcm.shape[0]:
            break
        piece = pcm[i : i + n]
        out.append(AudioFrame.from_pcm(piece, fmt, pts + i))
        i += piece.shape[0]
    if i < pcm.shape[0]:
        out.append(AudioFrame.from_pcm(pcm[i:], fmt, pts + i))
    return out


async def run_convert(
    inputs: list[AudioFrame | LinkInput],
    target: AudioFormat = TARGET,
    frame_ms: float = 20,
    close: bool = True,
) -> tuple[list[LinkInput], EdgeCounter]:
    send_in, receive_in = trio.open_memory_channel[AudioFrame | LinkInput](0)
    send_out, receive_out = trio.open_memory_channel[LinkInput](0)
    counter = EdgeCounter("convert")
    out: list[LinkInput] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                convert.run,
                receive_in,
                send_out,
                target=target,
                frame_ms=frame_ms,
                counter=counter,
            )
        )

        async def feed() -> None:
            async with send_in:
                for msg in inputs:
                    await send_in.send(msg)

        nursery.start_soon(feed)
        async for msg in receive_out:
            out.append(msg)
    return out, counter


def segments(out: list[LinkInput]) -> list[tuple[list[AudioFrame], LinkInput | None]]:
    """Split the output at controls: (frames before it, the control)."""
    result: list[tuple[list[AudioFrame], LinkInput | None]] = []
    frames: list[AudioFrame] = []
    for msg in out:
        if isinstance(msg, FrameBatch):
            frames.extend(msg.frames)
        else:
            result.append((frames, msg))
            frames = []
    result.append((frames, None))
    return result


def joined(frames: list[AudioFrame], channels: int = 1) -> np.ndarray:
    return concat_frames(frames) if frames else np.zeros((0, channels), np.int16)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    fmt=st.sampled_from(
        [
            AudioFormat(48_000, 2),
            AudioFormat(44_100, 1),
            AudioFormat(16_000, 1),
            AudioFormat(24_000, 2),
            AudioFormat(8_000, 1),
        ]
    ),
    seconds=st.floats(0.0, 0.6),
)
def test_output_is_the_one_shot_conversion_whatever_the_chunking(
    data: st.DataObject, fmt: AudioFormat, seconds: float
) -> None:
    pcm = noise(int(seconds * fmt.sample_rate), fmt.channels)
    sizes = data.draw(st.lists(st.integers(1, 5000), max_size=30), label="chunk sizes")

    async def main() -> tuple[list[LinkInput], EdgeCounter]:
        with trio.fail_after(30):
            return await run_convert(list(chunks_of(pcm, fmt, sizes)))

    out, counter = trio.run(main)
    assert all(isinstance(m, FrameBatch) for m in out)
    frames = [f for m in out if isinstance(m, FrameBatch) for f in m.frames]
    assert np.array_equal(joined(frames), convert_oneshot(pcm, fmt, TARGET))
    if frames:
        assert frames[0].pts == 0
        assert all(b.pts == a.end_pts for a, b in itertools.pairwise(frames))
        assert all(f.samples == 480 for f in frames[:-1])  # exact 20 ms frames
        assert all(f.format == TARGET for f in frames)
    assert counter.frames == len(frames)
    assert counter.samples == sum(f.samples for f in frames)
    assert counter.messages == len(out)


@pytest.mark.parametrize("control", [CommitInput(), ClearInput(), EndOfInput()])
async def test_segment_ends_flush_the_tail_before_the_control(control: LinkInput) -> None:
    """Everything of the segment reaches the link before the control does, and the
    next segment is converted on its own (a fresh filter)."""
    with trio.fail_after(30):
        fmt = AudioFormat(44_100, 2)
        first, second = noise(44_100 // 3 + 17, 2, 1), noise(44_100 // 5 + 3, 2, 2)
        inputs: list[AudioFrame | LinkInput] = [
            *chunks_of(first, fmt, [1000] * 100),
            control,
            SendText("not a segment end"),
            *chunks_of(second, fmt, [333] * 100, pts=first.shape[0]),
        ]
        out, _ = await run_convert(inputs)
    parts = segments(out)
    assert [c for _, c in parts] == [control, SendText("not a segment end"), None]
    assert np.array_equal(joined(parts[0][0]), convert_oneshot(first, fmt, TARGET))
    assert parts[1][0] == []
    assert np.array_equal(joined(parts[2][0]), convert_oneshot(second, fmt, TARGET))
    # pts continue across segments.
    all_frames = parts[0][0] + parts[2][0]
    assert all(b.pts == a.end_pts for a, b in itertools.pairwise(all_frames))


async def test_other_controls_do_not_flush() -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(16_000)
        pcm = noise(16_000, 1)
        out, _ = await run_convert(
            [
                *chunks_of(pcm[:8000], fmt, [8000]),
                CreateReply("hi"),
                *chunks_of(pcm[8000:], fmt, [8000], pts=8000),
            ]
        )
    parts = segments(out)
    assert parts[0][1] == CreateReply("hi")
    # Without a flush the filter runs on across the control: the same as no control.
    assert np.array_equal(joined(parts[0][0] + parts[1][0]), convert_oneshot(pcm, fmt, TARGET))
    assert len(joined(parts[0][0])) < 12_000  # the filter's delay is still held


async def test_a_format_change_is_a_segment_end() -> None:
    with trio.fail_after(30):
        a_fmt, b_fmt = AudioFormat(48_000, 2), AudioFormat(16_000, 1)
        a, b = noise(48_000 // 2 + 5, 2), noise(16_000 // 2 + 9, 1)
        out, _ = await run_convert(
            [*chunks_of(a, a_fmt, [960] * 100), *chunks_of(b, b_fmt, [320] * 100)]
        )
    frames = [f for m in out if isinstance(m, FrameBatch) for f in m.frames]
    want = np.concatenate([convert_oneshot(a, a_fmt, TARGET), convert_oneshot(b, b_fmt, TARGET)])
    assert np.array_equal(joined(frames), want)


async def test_stereo_is_never_read_as_mono() -> None:
    """One second of 48 kHz stereo is one second at 24 kHz mono, not two: the classic
    interleaved-as-mono bug doubles the duration (half-speed audio)."""
    with trio.fail_after(30):
        fmt = AudioFormat(48_000, 2)
        t = np.arange(48_000) / 48_000
        left = (np.sin(2 * np.pi * 440 * t) * 10_000).astype(np.int16)
        pcm = np.stack([left, left], axis=1)
        out, _ = await run_convert(list(chunks_of(pcm, fmt, [960] * 50)))
    frames = [f for m in out if isinstance(m, FrameBatch) for f in m.frames]
    mono = joined(frames)[:, 0]
    assert mono.shape[0] == 24_000
    spectrum = np.abs(np.fft.rfft(mono.astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 Hz bins over one second


async def test_upmix_to_a_stereo_provider() -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(16_000, 1)
        target = AudioFormat(48_000, 2)
        pcm = noise(16_000 // 4, 1)
        out, _ = await run_convert(list(chunks_of(pcm, fmt, [160] * 100)), target=target)
    frames = [f for m in out if isinstance(m, FrameBatch) for f in m.frames]
    got = joined(frames, 2)
    assert np.array_equal(got, convert_oneshot(pcm, fmt, target))
    assert np.array_equal(got[:, 0], got[:, 1])


async def test_frame_batches_are_refused_as_input() -> None:
    with trio.fail_after(30):
        frame = AudioFrame.from_pcm(noise(480, 1), TARGET)
        with pytest.RaisesGroup(
            pytest.RaisesExc(TypeError, match="FrameBatch"), flatten_subgroups=True
        ):
            await run_convert([FrameBatch((frame,))])


async def test_convert_is_cancelled_between_queued_chunks() -> None:
    """Chunks already queued are taken without a scheduler pass each, but a cancel is
    still seen at the next chunk: none is converted after it."""
    dst = AudioFormat(24_000, 1)
    chunk = np.zeros((960, 2), dtype=np.int16)
    with trio.fail_after(5):
        in_tx, in_rx = trio.open_memory_channel[AudioFrame](100)
        out_tx, out_rx = trio.open_memory_channel[LinkInput](100)
        for k in range(50):
            in_tx.send_nowait(AudioFrame(chunk, 48_000, k * 960))
        counter = EdgeCounter("convert")
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled before it ran: it must not drain the queue
            await convert.run(in_rx, out_tx, target=dst, counter=counter)
        assert counter.frames == 0
        assert out_rx.statistics().current_buffer_used == 0
