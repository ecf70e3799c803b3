"""open_session end to end: capture -> convert -> a recording provider, push mode,
segment controls, closing, cancellation from outside, bad arguments, stats."""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import attrs
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors.base import InstructionsSource
from voxtrio.actors.capture import ArrayCapture, ByteStreamCapture
from voxtrio.codecs import AudioFormat, AudioFrame
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import (
    AudioDropped,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    LinkInput,
    ReplyAudio,
    ReplyDone,
    SendText,
    ToolResult,
)
from voxtrio.runtime import SessionClosedError, open_session
from voxtrio.testing.inprocess import RecordingProvider

PROVIDER_FORMAT = AudioFormat(24_000)
INPUTS = [AudioFormat(48_000, 2), AudioFormat(44_100, 1), AudioFormat(16_000, 1)]


def noise(samples: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-20000, 20000, (samples, channels)).astype(np.int16)


def autojump(fn: Any, *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def check_frames(frames: list[AudioFrame]) -> None:
    """Exact 20 ms frames of the provider's format with contiguous pts."""
    assert all(f.format == PROVIDER_FORMAT for f in frames)
    assert all(b.pts == a.end_pts for a, b in itertools.pairwise(frames))


class _Log(list[LinkInput]):
    """A control list that also notes, in one shared log, where each control came
    relative to the audio."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        super().__init__()
        self._log = log

    def append(self, msg: LinkInput) -> None:
        self._log.append(("control", msg))
        super().append(msg)


class OrderedProvider(RecordingProvider):
    """RecordingProvider that keeps audio and controls in one ordered log."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[str, object]] = []
        self.controls = _Log(self.log)

    def _take(self, frames: tuple[AudioFrame, ...]) -> None:
        super()._take(frames)
        self.log.append(("audio", sum(f.samples for f in frames)))

    def samples_before(self, control: LinkInput) -> int:
        n = 0
        for kind, what in self.log:
            if kind == "control" and what == control:
                return n
            if kind == "audio":
                assert isinstance(what, int)
                n += what
        raise AssertionError(f"{control} never arrived")


# ------------------------------------------------------------------ end to end


@pytest.mark.parametrize("fmt", INPUTS, ids=str)
@pytest.mark.parametrize("realtime", [False, True])
async def test_every_sample_arrives_once_in_order(
    autojump_clock: trio.testing.MockClock, fmt: AudioFormat, realtime: bool
) -> None:
    """Capture -> convert -> provider equals the one-shot conversion of the input."""
    with trio.fail_after(600):
        pcm = noise(fmt.sample_rate * 2 + 123, fmt.channels)
        provider = RecordingProvider()
        async with open_session(
            provider, capture=ArrayCapture(pcm, fmt, realtime=realtime)
        ) as session:
            await provider.input_ended.wait()
            stats = session.stats()
    want = convert_oneshot(pcm, fmt, PROVIDER_FORMAT)
    assert np.array_equal(provider.audio(), want)
    check_frames(provider.frames)
    assert all(f.samples == 480 for f in provider.frames[:-1])
    assert provider.controls == [EndOfInput()]
    assert stats.edges["capture"].samples == pcm.shape[0]
    assert stats.edges["capture"].dropped_frames == 0
    assert stats.frames_sent == len(provider.frames)
    assert stats.edges["convert"].samples == want.shape[0]


async def test_stereo_keeps_its_duration_end_to_end() -> None:
    """One second of 48 kHz stereo reaches the provider as one second of 24 kHz."""
    with trio.fail_after(30):
        provider = RecordingProvider()
        pcm = noise(48_000, 2)
        async with open_session(provider, capture=ArrayCapture(pcm, AudioFormat(48_000, 2))):
            await provider.input_ended.wait()
        assert provider.samples_received == 24_000
        assert len(provider.frames) == 50


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    fmt=st.sampled_from(INPUTS),
    seconds=st.floats(0.0, 0.5),
    as_bytes=st.booleans(),
)
def test_push_mode_with_random_chunks(
    data: st.DataObject, fmt: AudioFormat, seconds: float, as_bytes: bool
) -> None:
    pcm = noise(int(seconds * fmt.sample_rate), fmt.channels, 3)
    cuts = sorted(data.draw(st.lists(st.integers(0, pcm.shape[0]), max_size=25), label="cuts"))
    bounds = [0, *cuts, pcm.shape[0]]
    provider = RecordingProvider()

    async def main() -> None:
        with trio.fail_after(60):
            async with open_session(provider) as session:
                for a, b in itertools.pairwise(bounds):
                    piece = pcm[a:b]
                    if as_bytes:
                        await session.send_audio(piece.astype("<i2").tobytes(), fmt)
                    elif fmt.channels == 1 and data.draw(st.booleans(), label="1-D"):
                        await session.send_audio(piece[:, 0].copy(), fmt)
                    else:
                        await session.send_audio(piece, fmt)
                await session.end_input()
                await provider.input_ended.wait()

    trio.run(main)
    want = convert_oneshot(pcm, fmt, PROVIDER_FORMAT)
    got = provider.audio() if provider.frames else np.zeros((0, 1), np.int16)
    assert np.array_equal(got, want)
    check_frames(provider.frames)
    assert provider.controls == [EndOfInput()]


async def test_send_audio_copies_the_callers_buffer() -> None:
    with trio.fail_after(30):
        provider = RecordingProvider()
        fmt = AudioFormat(24_000)
        buf = noise(4800, 1)
        first = buf.copy()
        async with open_session(provider) as session:
            await session.send_audio(buf, fmt)
            buf[:] = 0  # reused by the caller at once
            await session.end_input()
            await provider.input_ended.wait()
        assert np.array_equal(provider.audio(), first)


@pytest.mark.parametrize("control", ["commit", "clear"])
async def test_commit_and_clear_flush_the_tail_first(control: str) -> None:
    """Every sample of the segment reaches the provider before the control, and the
    next segment is converted afresh."""
    with trio.fail_after(30):
        fmt = AudioFormat(44_100, 2)
        first, second = noise(44_100 // 3 + 11, 2, 1), noise(44_100 // 4 + 5, 2, 2)
        provider = OrderedProvider()
        async with open_session(provider) as session:
            for i in range(0, first.shape[0], 1000):
                await session.send_audio(first[i : i + 1000], fmt)
            await (session.commit() if control == "commit" else session.clear_input())
            await session.send_audio(second, fmt)
            await session.end_input()
            await provider.input_ended.wait()
        msg = CommitInput() if control == "commit" else ClearInput()
        one = convert_oneshot(first, fmt, PROVIDER_FORMAT)
        two = convert_oneshot(second, fmt, PROVIDER_FORMAT)
        assert provider.samples_before(msg) == one.shape[0]
        assert provider.samples_before(EndOfInput()) == one.shape[0] + two.shape[0]
        assert np.array_equal(provider.audio(), np.concatenate([one, two]))
        check_frames(provider.frames)


async def test_controls_reach_the_link_in_order() -> None:
    with trio.fail_after(30):
        provider = RecordingProvider()
        async with open_session(provider) as session:
            await session.create_reply("be brief")
            await session.send_text("hello")
            await session.send_tool_result("call_1", "42")
            await session.truncate("nothing played")  # 0 ms: no truncate is sent
            await session.end_input()
            await session.end_input()  # idempotent
            await provider.input_ended.wait()
        assert without_text_ids(provider.controls) == [
            CreateReply("be brief"),
            SendText("hello"),
            ToolResult("call_1", "42"),
            EndOfInput(),
        ]


async def test_replies_text_and_tool_results_go_on_after_the_capture_ends() -> None:
    """A capture ends the audio input by itself; with manual turns the app must
    still be able to ask for a reply, add text and answer a tool call."""
    with trio.fail_after(30):
        provider = RecordingProvider()
        capture = ArrayCapture(noise(2_400, 1), AudioFormat(24_000))
        async with open_session(provider, capture=capture) as session:
            await provider.input_ended.wait()
            await session.create_reply("now")
            await session.send_text("and this")
            await session.send_tool_result("call_7", "done")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(SessionClosedError, match="audio input has ended"):
                await session.commit()
        assert without_text_ids(provider.controls) == [
            EndOfInput(),
            CreateReply("now"),
            SendText("and this"),
            ToolResult("call_7", "done"),
        ]


@pytest.mark.parametrize(
    ("realtime", "override", "expected"),
    [
        (None, None, True),  # push mode: live unless the app says otherwise
        (None, False, False),
        (False, None, False),  # a file read as fast as possible can wait
        (True, None, True),  # a realtime capture cannot
        (False, True, True),
    ],
)
async def test_the_link_is_told_whether_the_input_is_live(
    realtime: bool | None, override: bool | None, expected: bool
) -> None:
    with trio.fail_after(30):
        provider = RecordingProvider()
        capture = (
            None
            if realtime is None
            else ArrayCapture(noise(480, 1), AudioFormat(24_000), realtime=realtime)
        )
        assert capture is None or capture.live is realtime
        async with open_session(provider, capture=capture, live_input=override):
            await provider.connected.wait()
        assert provider.live_input is expected


def without_text_ids(controls: list[LinkInput]) -> list[LinkInput]:
    """The controls, text messages without the item id the session gave them."""
    for c in controls:
        if isinstance(c, SendText):
            assert c.item_id is not None
            assert c.item_id.startswith("text_")
    return [attrs.evolve(c, item_id=None) if isinstance(c, SendText) else c for c in controls]


# ------------------------------------------------------------- events, closing


async def test_queued_events_stay_readable_after_aclose() -> None:
    """aclose() stops the session; the block goes on, and what was queued for a
    subscriber can still be read, then the subscription ends."""
    with trio.fail_after(30):
        provider = RecordingProvider()
        after_aclose: list[Event] = []
        async with open_session(provider) as session:
            sub = session.subscribe()
            await provider.connected.wait()
            for i in range(5):
                await provider.emit(InputTranscriptionCompleted(f"item_{i}", str(i)))
            await trio.testing.wait_all_tasks_blocked()
            await session.aclose()
            await session.aclose()  # idempotent
            assert session.closed
            async for event in sub:
                after_aclose.append(event)
            with pytest.raises(SessionClosedError):
                await session.send_audio(noise(10, 1), AudioFormat(24_000))
        assert len(after_aclose) == 6


async def test_leaving_the_block_with_reply_audio_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Reply audio still on its way to playback when the block ends is dropped with
    the session; leaving never fails or hangs."""
    with trio.fail_after(600):
        provider = RecordingProvider()
        async with open_session(provider):
            await provider.connected.wait()
            for _ in range(50):
                await provider.emit(ReplyAudio(noise(2400, 1), 24_000, "r1", "i1"))
            await provider.emit(ReplyDone("r1"))


async def test_the_session_nests_in_an_app_nursery_and_leaves_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        before = trio.lowlevel.current_statistics().tasks_living
        provider = RecordingProvider()
        client, server = trio.testing.memory_stream_pair()
        fmt = AudioFormat(16_000)
        async with trio.open_nursery() as app:
            app.start_soon(trio.sleep, 1.0)  # the app's own work
            async with open_session(provider, capture=ByteStreamCapture(server, fmt)) as session:
                sub = session.subscribe()
                await client.send_all(noise(16_000, 1).astype("<i2").tobytes())
                await provider.connected.wait()
                app.start_soon(partial(_drain, sub))
                app.start_soon(partial(_drain, session.output))
                await trio.sleep(0.5)
            # The session's channels ended with it, so the app's readers return.
        assert trio.lowlevel.current_statistics().tasks_living == before
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some(1)  # the capture closed its stream
        assert provider.samples_received > 0


async def _drain(channel: trio.abc.ReceiveChannel[Any]) -> None:
    async for _ in channel:
        pass


# -------------------------------------------------------------- bad arguments


async def test_bad_arguments_raise_at_the_call() -> None:
    with trio.fail_after(30):
        provider = RecordingProvider()
        with pytest.raises(TypeError, match="Provider"):
            async with open_session(object()):  # type: ignore[arg-type]
                pass
        for kwargs in (
            {"output_frame_ms": 0},
            {"output_frame_ms": -20},
            {"output_format": "24k"},
            {"subscriber_buffer": 0},
            {"audio_buffer": 0},
            {"close_timeout_s": float("nan")},
        ):
            with pytest.raises(ValueError):  # noqa: PT011 - each names its own argument
                async with open_session(provider, **kwargs):
                    pass
        with pytest.raises(ValueError, match="frame_ms"):
            async with open_session(RecordingProvider(input_frame_ms=0)):
                pass
        assert provider.instructions == []  # nothing was started

        async with open_session(provider) as session:
            with pytest.raises(ValueError, match="AudioFormat"):
                await session.send_audio(noise(10, 1), "24k")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="channels"):
                await session.send_audio(noise(10, 2), AudioFormat(24_000))
            with pytest.raises(ValueError, match="int16"):
                await session.send_audio(np.zeros(10, np.float32), AudioFormat(24_000))
            with pytest.raises(ValueError, match="whole number"):
                await session.send_audio(b"\x00\x01\x02", AudioFormat(24_000))
            with pytest.raises(ValueError, match="max_buffer"):
                session.subscribe(max_buffer=0)
            await session.end_input()
            with pytest.raises(SessionClosedError, match="audio input has ended"):
                await session.send_audio(noise(10, 1), AudioFormat(24_000))
            with pytest.raises(SessionClosedError, match="audio input has ended"):
                await session.commit()
            with pytest.raises(SessionClosedError, match="audio input has ended"):
                await session.clear_input()
        with pytest.raises(SessionClosedError):
            await session.send_audio(noise(10, 1), AudioFormat(24_000))
        with pytest.raises(SessionClosedError):
            await session.cancel_reply()


async def test_send_audio_is_for_push_mode_only() -> None:
    with trio.fail_after(30):
        fmt = AudioFormat(16_000)
        async with open_session(
            RecordingProvider(), capture=ArrayCapture(noise(160, 1), fmt)
        ) as session:
            with pytest.raises(RuntimeError, match="push mode"):
                await session.send_audio(noise(160, 1), fmt)


async def test_send_audio_after_aclose_raises() -> None:
    with trio.fail_after(30):
        async with open_session(RecordingProvider()) as session:
            await session.aclose()
            with pytest.raises(SessionClosedError, match="closed"):
                await session.send_audio(noise(160, 1), AudioFormat(16_000))


# ----------------------------------------------------------------------- stats


async def test_stats_add_up_when_a_stalled_link_makes_capture_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A link that stops reading fills the pipeline; live capture then drops, and
    every chunk is either delivered or counted (and reported) as dropped."""
    with trio.fail_after(600):
        fmt = AudioFormat(16_000)
        pcm = noise(16_000 * 4, 1)
        provider = RecordingProvider()
        provider.pause()  # a link that reads nothing
        async with open_session(
            provider, capture=ArrayCapture(pcm, fmt, realtime=True), audio_buffer=2
        ) as session:
            sub = session.subscribe()
            await trio.sleep(2.0)  # the capture runs on; the link reads nothing
            stalled = session.stats()
            provider.resume()
            await provider.input_ended.wait()
            await trio.testing.wait_all_tasks_blocked()
            stats = session.stats()
            events = [e async for e in _until_quiet(sub)]
    chunks = 200  # 4 s of 20 ms chunks
    capture, convert = stats.edges["capture"], stats.edges["convert"]
    assert stalled.edges["capture"].dropped_frames > 0
    assert capture.frames + capture.dropped_frames == chunks
    assert capture.samples + capture.dropped_samples == pcm.shape[0]
    drops = [e for e in events if isinstance(e, AudioDropped)]
    assert sum(d.frames for d in drops) == capture.dropped_frames
    assert sum(d.samples for d in drops) == capture.dropped_samples
    assert convert.frames == provider.frames_received
    assert convert.samples == provider.samples_received
    assert capture.queued == convert.queued == 0
    assert stats.dropped_frames == capture.dropped_frames
    # What got through is whole chunks of the input, in order.
    assert provider.samples_received < convert_oneshot(pcm, fmt, PROVIDER_FORMAT).shape[0]


async def _until_quiet(sub: Any) -> Any:
    while True:
        try:
            yield sub.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return


async def test_stats_count_playback_and_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        provider = RecordingProvider()
        async with open_session(provider, max_playback_queue_s=0.5) as session:
            sub = session.subscribe()
            await provider.connected.wait()
            await provider.emit(ReplyAudio(noise(24_000, 1), 24_000, "r1", "i1"))
            await provider.emit(ReplyDone("r1"))
            await provider.emit(InputTranscriptionCompleted("i0", "x"))
            out = []
            async for frame in session.output:
                out.append(frame)
                if len(out) == 25:
                    break
            await trio.testing.wait_all_tasks_blocked()
            stats = session.stats()
            events = [e async for e in _until_quiet(sub)]
    playback = stats.edges["playback"]
    assert playback.frames == 25
    assert playback.frames + playback.dropped_frames == 50
    assert playback.dropped_samples == 25 * 480
    assert playback.queued == 0
    assert stats.frames_out == 25
    dropped = [e for e in events if isinstance(e, AudioDropped)]
    assert sum(d.frames for d in dropped) == 25
    # SessionConnected, ReplyDone, the transcript, the drop report(s); not the audio.
    assert stats.events == len(events)
    assert stats.subscribers_lagged == (0,)


class GivingUpProvider(RecordingProvider):
    """A link that reports a fatal error and ends by itself (a rejected key)."""

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with receive, events:
            task_status.started()
            await events.send(
                ErrorEvent("the key was rejected", code="invalid_api_key", recoverable=False)
            )


async def test_a_link_that_gives_up_ends_the_session_but_not_the_app() -> None:
    """The app still reads the fatal error, then its subscription and the output end;
    more input is refused."""
    with trio.fail_after(30):
        got: list[Event] = []
        async with open_session(GivingUpProvider()) as session:
            sub = session.subscribe()
            async for event in sub:
                got.append(event)
            async for _ in session.output:
                raise AssertionError("no output expected")
            assert session.closed
            with pytest.raises(SessionClosedError):
                await session.send_audio(noise(160, 1), AudioFormat(16_000))
        assert got == [
            ErrorEvent("the key was rejected", code="invalid_api_key", recoverable=False)
        ]
