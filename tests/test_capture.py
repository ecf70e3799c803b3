"""Capture actors: ArrayCapture, WavCapture, ByteStreamCapture, MicCapture (with a
stand-in ``sounddevice``), alone and inside a session."""

from __future__ import annotations

import itertools
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors.base import EdgeCounter
from voxtrio.actors.capture import (
    ArrayCapture,
    ByteStreamCapture,
    Capture,
    MicCapture,
    WavCapture,
)
from voxtrio.codecs import AudioFormat, AudioFrame, concat_frames, write_wav
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import (
    AudioDropped,
    EndOfInput,
    ErrorEvent,
    Event,
    InputTranscriptionDelta,
)
from voxtrio.runtime import open_session
from voxtrio.testing.inprocess import RecordingProvider


def noise(samples: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32767, (samples, channels), endpoint=True).astype(np.int16)


async def collect(
    capture: Capture, buffer: float = 1
) -> tuple[list[AudioFrame], list[Event], EdgeCounter]:
    """Run ``capture`` to its end with a reader on its channel."""
    send, receive = trio.open_memory_channel[AudioFrame](buffer)
    ev_send, ev_receive = trio.open_memory_channel[Event](100)
    counter = EdgeCounter("capture")
    frames: list[AudioFrame] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: capture.run(
                send, events=ev_send, counter=counter, task_status=task_status
            )
        )
        async with receive:
            async for frame in receive:
                frames.append(frame)
    events = [e async for e in ev_receive]
    return frames, events, counter


def check_contiguous(frames: list[AudioFrame]) -> None:
    assert frames[0].pts == 0
    for a, b in itertools.pairwise(frames):
        assert b.pts == a.end_pts


# ----------------------------------------------------------------- ArrayCapture


@pytest.mark.parametrize(
    ("rate", "channels", "chunk_ms"),
    [(48_000, 2, None), (44_100, 1, 20), (16_000, 1, 7.5), (11_025, 2, 20)],
)
async def test_array_capture_sends_the_input_exactly(
    rate: int, channels: int, chunk_ms: float | None
) -> None:
    with trio.fail_after(30):
        pcm = noise(rate * 2 + 37, channels)
        frames, events, counter = await collect(
            ArrayCapture(pcm, AudioFormat(rate, channels), chunk_ms=chunk_ms)
        )
    assert np.array_equal(concat_frames(frames), pcm)
    check_contiguous(frames)
    assert all(f.format == AudioFormat(rate, channels) for f in frames)
    assert all(f.padded == 0 for f in frames)
    size = rate * (chunk_ms if chunk_ms is not None else 200) / 1000
    assert all(abs(f.samples - size) < 1 for f in frames[:-1])  # exact chunks, short tail
    assert 0 < frames[-1].samples < size + 1
    assert events == []
    assert (counter.frames, counter.samples, counter.dropped_frames) == (
        len(frames),
        pcm.shape[0],
        0,
    )


async def test_array_capture_copies_its_input_and_frames_are_read_only() -> None:
    with trio.fail_after(10):
        pcm = noise(4800, 1)
        original = pcm.copy()
        capture = ArrayCapture(pcm, AudioFormat(48_000))
        pcm[:] = 0  # the caller reuses its buffer
        frames, _, _ = await collect(capture)
        assert np.array_equal(concat_frames(frames), original)
        with pytest.raises(ValueError, match="read-only"):
            frames[0].pcm[0, 0] = 1
        again, _, _ = await collect(capture)  # a capture can run again
        assert np.array_equal(concat_frames(again), original)


async def test_non_realtime_capture_waits_for_a_slow_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A file read as fast as the pipeline takes it loses nothing to backpressure."""
    with trio.fail_after(600):
        pcm = noise(16_000 * 3, 1)
        send, receive = trio.open_memory_channel[AudioFrame](0)
        ev_send, _ev_receive = trio.open_memory_channel[Event](10)
        counter = EdgeCounter("capture")
        capture = ArrayCapture(pcm, AudioFormat(16_000), chunk_ms=20)
        frames: list[AudioFrame] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: capture.run(send, events=ev_send, counter=counter))
            async for frame in receive:
                frames.append(frame)
                await trio.sleep(1.0)  # far slower than real time
    assert np.array_equal(concat_frames(frames), pcm)
    assert counter.dropped_frames == 0


def test_array_capture_rejects_bad_arguments() -> None:
    pcm = noise(100, 2)
    with pytest.raises(ValueError, match="AudioFormat"):
        ArrayCapture(pcm, "48k")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        ArrayCapture(pcm, AudioFormat(48_000, 1))
    with pytest.raises(ValueError, match="int16"):
        ArrayCapture(pcm.astype(np.float32), AudioFormat(48_000, 2))
    for bad in (0, -20, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="frame_ms"):
            ArrayCapture(pcm, AudioFormat(48_000, 2), chunk_ms=bad)
    with pytest.raises(ValueError, match="sample_rate"):
        ArrayCapture(pcm, AudioFormat(7, 2))


# ------------------------------------------------------------------- WavCapture


async def test_wav_capture_reads_the_file(tmp_path: Path) -> None:
    with trio.fail_after(30):
        pcm = noise(44_100 + 11, 2)
        path = tmp_path / "in.wav"
        write_wav(path, pcm, AudioFormat(44_100, 2))
        frames, events, _ = await collect(WavCapture(path))
    assert np.array_equal(concat_frames(frames), pcm)
    assert frames[0].format == AudioFormat(44_100, 2)
    check_contiguous(frames)
    assert events == []


@pytest.mark.parametrize("content", [None, b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"not a wav"])
async def test_wav_capture_of_a_bad_file_is_an_error_event(
    tmp_path: Path, content: bytes | None
) -> None:
    with trio.fail_after(30):
        path = tmp_path / "bad.wav"
        if content is not None:
            path.write_bytes(content)
        frames, events, _ = await collect(WavCapture(path))
    assert frames == []
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, ErrorEvent)
    assert error.code == "capture_failed"
    assert error.source == "capture"
    assert "bad.wav" in error.message


async def test_session_survives_a_wav_that_vanishes_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file gone between ``open_session``'s check and the read (the check is
    skipped here to stand for that): the capture fails, the app hears about it, and
    the session goes on: the provider is told the input ended and events still flow.
    (A file missing at the call raises there: tests/test_usage_errors.py.)"""
    monkeypatch.setattr(WavCapture, "check", lambda self: None)
    with trio.fail_after(30):
        provider = RecordingProvider()
        async with open_session(provider, capture=WavCapture(tmp_path / "missing.wav")) as s:
            sub = s.subscribe()
            await provider.input_ended.wait()
            await provider.emit(InputTranscriptionDelta("still here"))
            got = []
            async for event in sub:
                got.append(event)
                if isinstance(event, InputTranscriptionDelta):
                    break
        errors = [e for e in got if isinstance(e, ErrorEvent)]
        assert len(errors) == 1
        assert errors[0].code == "capture_failed"
        assert errors[0].recoverable  # the session did not end
        assert provider.controls == [EndOfInput()]
        assert provider.frames == []


# ------------------------------------------------------------ ByteStreamCapture


def split_points(data: st.DataObject, length: int) -> list[int]:
    cuts = data.draw(
        st.lists(st.integers(0, length), max_size=40) | st.just(list(range(length))),
        label="cuts",
    )
    return sorted(set(cuts))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    channels=st.integers(1, 2),
    samples=st.integers(0, 2000),
    realtime=st.booleans(),
)
def test_byte_stream_capture_delivers_exactly_the_bytes(
    data: st.DataObject, channels: int, samples: int, realtime: bool
) -> None:
    """Bytes split anywhere (down to single bytes, mid-sample) come out as whole
    frames whose bytes are exactly the stream's; a partial last sample is dropped."""
    fmt = AudioFormat(16_000, channels)
    pcm = noise(samples, channels, seed=samples)
    payload = pcm.astype("<i2").tobytes() + data.draw(st.sampled_from([b"", b"\x01"]))
    cuts = split_points(data, len(payload))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    chunk_ms = data.draw(st.sampled_from([20, 10, 2.5]), label="chunk_ms")

    async def main() -> list[AudioFrame]:
        with trio.fail_after(30):
            # Lockstep: each piece is one receive_some() on the capture's side.
            client, server = trio.testing.lockstep_stream_pair()

            async def writer() -> None:
                async with client:
                    for piece in pieces:
                        await client.send_all(piece)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                # A live capture never blocks its source: give it room for everything.
                frames, events, counter = await collect(
                    ByteStreamCapture(server, fmt, chunk_ms=chunk_ms, realtime=realtime),
                    buffer=float("inf") if realtime else 0,
                )
            assert events == []
            assert counter.dropped_frames == 0
            return frames

    frames = trio.run(main)
    got = concat_frames(frames) if frames else np.zeros((0, channels), np.int16)
    assert got.shape == pcm.shape
    assert got.tobytes() == pcm.astype("<i2").tobytes()
    if frames:
        check_contiguous(frames)
        size = 16_000 * chunk_ms / 1000
        assert all(f.samples == size for f in frames[:-1])


async def test_byte_stream_capture_over_a_real_socket() -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(24_000, 1)
        pcm = noise(24_000 * 2 + 5, 1)
        payload = pcm.astype("<i2").tobytes()
        a, b = trio.socket.socketpair()
        sender, receiver = trio.SocketStream(a), trio.SocketStream(b)
        rng = np.random.default_rng(7)

        async def writer() -> None:
            async with sender:
                i = 0
                while i < len(payload):
                    n = int(rng.integers(1, 3000))
                    await sender.send_all(payload[i : i + n])
                    i += n

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            frames, events, _ = await collect(
                ByteStreamCapture(receiver, fmt, realtime=False, max_read=777)
            )
        assert events == []
        assert concat_frames(frames).tobytes() == payload
        with pytest.raises(trio.ClosedResourceError):
            await receiver.receive_some(1)  # the capture closed its stream


async def test_a_broken_byte_stream_is_an_error_event() -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(16_000, 1)
        stream = trio.testing.MemoryReceiveStream()
        good = noise(1000, 1).astype("<i2").tobytes()
        stream.put_data(good + b"\x07")  # and half a sample

        calls = 0

        async def break_after_data() -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise trio.BrokenResourceError("peer reset")

        stream.receive_some_hook = break_after_data
        frames, events, _ = await collect(ByteStreamCapture(stream, fmt), buffer=10)
    # What arrived before the break is delivered (the partial sample is not audio).
    assert concat_frames(frames).tobytes() == good
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, ErrorEvent)
    assert error.code == "capture_failed"
    assert error.source == "capture"
    assert "BrokenResourceError" in error.message
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some(1)


def test_byte_stream_capture_rejects_bad_arguments() -> None:
    stream = trio.testing.MemoryReceiveStream()
    with pytest.raises(ValueError, match="AudioFormat"):
        ByteStreamCapture(stream, 16_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame_ms"):
        ByteStreamCapture(stream, AudioFormat(16_000), chunk_ms=0)
    with pytest.raises(ValueError, match="max_read"):
        ByteStreamCapture(stream, AudioFormat(16_000, 2), max_read=3)


# ------------------------------------------------------------------- MicCapture


class FakeInputStream:
    """Stands in for ``sounddevice.InputStream``: a PortAudio-like thread calls
    ``callback`` with ``blocks`` blocks, and a last block races the stop."""

    instances: ClassVar[list[FakeInputStream]] = []
    blocks: ClassVar[int] = 0

    def __init__(
        self,
        *,
        samplerate: int,
        channels: int,
        dtype: str,
        blocksize: int,
        device: Any,
        callback: Callable[..., None],
    ) -> None:
        self.samplerate, self.channels, self.blocksize = samplerate, channels, blocksize
        self.dtype = dtype
        self.callback = callback
        self.sent: list[np.ndarray] = []
        self.thread = threading.Thread(target=self._run)
        self.closed = False
        FakeInputStream.instances.append(self)

    def _block(self) -> np.ndarray:
        block = noise(self.blocksize, self.channels, seed=len(self.sent))
        self.sent.append(block)
        return block

    def _run(self) -> None:
        for _ in range(self.blocks):
            self.callback(self._block(), self.blocksize, None, None)

    def __enter__(self) -> FakeInputStream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()
        # PortAudio may deliver one more block while the stream stops.
        self.callback(self._block(), self.blocksize, None, None)
        self.closed = True


@pytest.fixture
def fake_sounddevice(monkeypatch: pytest.MonkeyPatch) -> type[FakeInputStream]:
    module = types.ModuleType("sounddevice")
    module.InputStream = FakeInputStream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    FakeInputStream.instances = []
    FakeInputStream.blocks = 25
    return FakeInputStream


async def test_mic_capture_hands_blocks_from_the_audio_thread_to_trio(
    fake_sounddevice: type[FakeInputStream],
) -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(16_000, 2)
        send, receive = trio.open_memory_channel[AudioFrame](100)
        ev_send, _ev_receive = trio.open_memory_channel[Event](10)
        counter = EdgeCounter("capture")
        frames: list[AudioFrame] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: MicCapture(fmt).run(
                    send, events=ev_send, counter=counter, task_status=task_status
                )
            )
            async for frame in receive:
                frames.append(frame)
                if len(frames) == fake_sounddevice.blocks:
                    nursery.cancel_scope.cancel()
        # Let a block delivered while the stream stopped reach the closed channel.
        await trio.testing.wait_all_tasks_blocked()
    stream = fake_sounddevice.instances[0]
    assert (stream.samplerate, stream.channels, stream.blocksize) == (16_000, 2, 320)
    assert stream.closed
    assert np.array_equal(concat_frames(frames), np.concatenate(stream.sent[: len(frames)]))
    check_contiguous(frames)


async def test_mic_capture_reports_blocks_dropped_on_the_audio_thread_and_keeps_pts(
    fake_sounddevice: type[FakeInputStream],
) -> None:
    """The consumer is held up (its drop report cannot be delivered), so blocks pile
    up and the audio thread must drop some: each drop is counted, reported, and the
    next delivered frame's pts skips exactly the dropped samples."""
    fake_sounddevice.blocks = 100
    with trio.fail_after(30):
        fmt = AudioFormat(16_000)
        send, receive = trio.open_memory_channel[AudioFrame](0)
        ev_send, ev_receive = trio.open_memory_channel[Event](0)
        counter = EdgeCounter("capture")
        frames: list[AudioFrame] = []
        reports: list[AudioDropped] = []

        async def read_frames() -> None:
            async for frame in receive:
                frames.append(frame)

        async def read_events() -> None:
            async for event in ev_receive:
                assert isinstance(event, AudioDropped)
                reports.append(event)

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: MicCapture(fmt).run(
                    send, events=ev_send, counter=counter, task_status=task_status
                )
            )
            stream = fake_sounddevice.instances[0]
            # Nobody reads frames or events until the audio thread is done.
            await trio.to_thread.run_sync(stream.thread.join)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(read_frames)
            nursery.start_soon(read_events)
            await trio.testing.wait_all_tasks_blocked()
            # The queue has drained; blocks captured now follow the gap.
            for _ in range(3):
                await trio.to_thread.run_sync(
                    lambda: stream.callback(stream._block(), stream.blocksize, None, None)
                )
                await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    sent = np.concatenate(stream.sent[: fake_sounddevice.blocks + 3])
    block = stream.blocksize
    # The queue between the threads holds 32 blocks: at least the rest were dropped.
    assert counter.dropped_frames >= fake_sounddevice.blocks - 32 - 1
    assert frames
    for frame in frames:
        assert frame.pts % block == 0
        assert np.array_equal(frame.pcm, sent[frame.pts : frame.pts + frame.samples])
    assert [f.pts for f in frames] == sorted({f.pts for f in frames})
    # The blocks after the gap arrived, at their true position in the stream.
    assert [f.pts for f in frames[-3:]] == [(fake_sounddevice.blocks + i) * block for i in range(3)]
    gaps = [b.pts - a.pts - a.samples for a, b in itertools.pairwise(frames)]
    # Every sample of the stream is either in a frame, or in a gap (or before the
    # first frame: blocks the held-up sender dropped).
    total = (fake_sounddevice.blocks + 3) * block
    assert frames[0].pts + sum(f.samples for f in frames) + sum(gaps) == total
    assert counter.frames == len(frames)
    reported = sum(r.frames for r in reports)
    assert 0 < reported <= counter.dropped_frames
    assert reports[-1].total_frames <= counter.dropped_frames


async def test_mic_capture_without_sounddevice_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails
    with trio.fail_after(10):
        send, _receive = trio.open_memory_channel[AudioFrame](1)
        ev_send, _ev_receive = trio.open_memory_channel[Event](1)
        with pytest.raises(RuntimeError, match=r"voxtrio\[mic\]"):
            await MicCapture(AudioFormat(16_000)).run(
                send, events=ev_send, counter=EdgeCounter("capture")
            )


# ------------------------------------------------------- end to end, via sessions


@pytest.mark.parametrize("realtime", [False, True])
async def test_byte_stream_capture_in_a_session(
    autojump_clock: trio.testing.MockClock, realtime: bool
) -> None:
    with trio.fail_after(600):
        fmt = AudioFormat(44_100, 2)
        pcm = noise(44_100 + 3, 2)
        client, server = trio.testing.memory_stream_pair()
        provider = RecordingProvider()
        async with open_session(
            provider, capture=ByteStreamCapture(server, fmt, realtime=realtime)
        ) as session:
            async with client:
                for i in range(0, pcm.shape[0], 441):  # 10 ms a piece, in real time
                    await client.send_all(pcm[i : i + 441].astype("<i2").tobytes())
                    await trio.sleep(0.01)
            await provider.input_ended.wait()
            stats = session.stats()
    assert stats.edges["capture"].dropped_frames == 0
    assert np.array_equal(provider.audio(), convert_oneshot(pcm, fmt, AudioFormat(24_000)))
