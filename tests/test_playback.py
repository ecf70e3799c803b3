"""The playback actor: reply audio reframed to the output track, paced; Reframe
mid-stream, barge-in, played positions, queue overflow, WAV sink; and the same
through a session."""

from __future__ import annotations

import itertools
import math
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.actors import playback
from voxtrio.actors.base import EdgeCounter
from voxtrio.codecs import AudioFormat, AudioFrame, concat_frames, read_wav
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import (
    AudioDropped,
    CancelReply,
    Event,
    PlaybackInput,
    Reframe,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
    TruncateItem,
)
from voxtrio.runtime import SessionClosedError, open_session
from voxtrio.testing.inprocess import RecordingProvider

TICK = 1e-6
REPLY = 24_000
REPLY_FORMAT = AudioFormat(REPLY)


def tone(samples: int, seed: int = 0) -> np.ndarray:
    """Mono int16 ``(samples, 1)``: a sweep plus noise, so a lost or repeated sample
    anywhere shows."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / REPLY
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(samples)
    return np.round(x * 32767).astype(np.int16).reshape(-1, 1)


def audio(pcm: np.ndarray, response: str = "r1", item: str = "i1") -> ReplyAudio:
    return ReplyAudio(pcm, REPLY, response, item)


def pieces(pcm: np.ndarray, size: int, response: str = "r1", item: str = "i1") -> list[ReplyAudio]:
    return [audio(pcm[i : i + size], response, item) for i in range(0, pcm.shape[0], size)]


def joined(frames: list[AudioFrame], channels: int = 1) -> np.ndarray:
    return concat_frames(frames) if frames else np.zeros((0, channels), np.int16)


def oneshot(pcm: np.ndarray, out: AudioFormat) -> np.ndarray:
    return convert_oneshot(pcm, AudioFormat(REPLY), out)


@dataclass
class Played:
    frames: list[AudioFrame] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    frames_at_event: list[int] = field(default_factory=list)  # sink frames at receipt
    state: playback.PlaybackState = field(default_factory=playback.PlaybackState)
    counter: EdgeCounter = field(default_factory=lambda: EdgeCounter("playback"))


Script = list["PlaybackInput | float"]  # a float: sleep that long before the next message


async def play(
    script: Script,
    output: AudioFormat = REPLY_FORMAT,
    frame_ms: float = 20,
    realtime: bool = True,
    max_queue_s: float = 120.0,
    read_delay_s: float = 0.0,
) -> Played:
    """Run playback on ``script`` into a 0-buffer channel read by a recorder; return
    what the sink got and when (relative to the start)."""
    result = Played()
    send, receive = trio.open_memory_channel[PlaybackInput](1000)
    sink_send, sink_receive = trio.open_memory_channel[AudioFrame](0)
    ev_send, ev_receive = trio.open_memory_channel[Event](1000)
    start = trio.current_time()

    async def read_events() -> None:
        async for event in ev_receive:
            result.events.append(event)
            result.frames_at_event.append(result.counter.frames)

    async with trio.open_nursery() as outer:
        outer.start_soon(read_events)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    playback.run,
                    receive,
                    sink_send,
                    reply_rate=REPLY,
                    output=output,
                    frame_ms=frame_ms,
                    realtime=realtime,
                    max_queue_s=max_queue_s,
                    state=result.state,
                    events=ev_send,
                    counter=result.counter,
                )
            )

            async def feed() -> None:
                async with send:
                    for step in script:
                        if isinstance(step, float):
                            await trio.sleep(step)
                        else:
                            await send.send(step)

            nursery.start_soon(feed)
            async with sink_receive:
                async for frame in sink_receive:
                    result.times.append(trio.current_time() - start)
                    result.frames.append(frame)
                    if read_delay_s:
                        await trio.sleep(read_delay_s)
        ev_send.close()
    return result


def played_events(p: Played) -> list[tuple[ReplyPlayed, int]]:
    """The ReplyPlayed events, each with how many frames the sink had by then."""
    return [
        (e, n)
        for e, n in zip(p.events, p.frames_at_event, strict=True)
        if isinstance(e, ReplyPlayed)
    ]


def split_at(frames: list[AudioFrame], samples: int) -> tuple[list[AudioFrame], list[AudioFrame]]:
    """The frames holding the first ``samples`` samples, and the rest; the cut must
    fall on a frame boundary (a reframe drains the old framing)."""
    total = 0
    for i, f in enumerate(frames):
        if total == samples:
            return frames[:i], frames[i:]
        total += f.samples
        assert total <= samples, "the cut is not on a frame boundary"
    assert total == samples
    return frames, []


def check_paced(p: Played) -> None:
    """Each frame follows the previous one after exactly its duration: no burst, no
    stall (for a script that keeps the queue busy)."""
    for i in range(1, len(p.frames)):
        gap = p.times[i] - p.times[i - 1]
        assert gap == pytest.approx(float(p.frames[i - 1].duration), abs=TICK), i


def check_pts(frames: list[AudioFrame]) -> None:
    """pts contiguous within a format, increasing in time across a switch."""
    for a, b in itertools.pairwise(frames):
        if a.sample_rate == b.sample_rate:
            assert b.pts == a.end_pts
        else:
            assert b.time >= a.time + a.duration
            assert b.pts == math.ceil(a.end_pts * b.sample_rate / a.sample_rate)


# ------------------------------------------------------------------- reframing


@pytest.mark.parametrize(
    ("first", "first_ms", "second", "second_ms"),
    [
        (AudioFormat(48_000), 20, AudioFormat(16_000), 10),
        (AudioFormat(24_000), 20, AudioFormat(24_000), 30),
        (AudioFormat(11_025), 20, AudioFormat(44_100), 7.5),
        (AudioFormat(16_000, 2), 10, AudioFormat(22_050, 2), 20),
    ],
)
async def test_reframe_mid_stream_keeps_pacing_samples_and_pts(
    autojump_clock: trio.testing.MockClock,
    first: AudioFormat,
    first_ms: float,
    second: AudioFormat,
    second_ms: float,
) -> None:
    with trio.fail_after(600):
        a, b = tone(REPLY + 1234, 1), tone(REPLY // 2 + 77, 2)
        p = await play(
            [
                *pieces(a, 1000),
                0.25,  # the switch comes while the first part is still queued
                Reframe(second.sample_rate, second_ms),
                *pieces(b, 1000),
                ReplyDone("r1"),
            ],
            output=first,
            frame_ms=first_ms,
        )
    old, new = split_at(p.frames, len(oneshot(a, first)))
    assert old
    assert new
    assert all(f.format == first for f in old)
    assert all(f.format == second for f in new)
    # Nothing lost or repeated on either side of the switch.
    assert np.array_equal(joined(old, first.channels), oneshot(a, first))
    assert np.array_equal(joined(new, second.channels), oneshot(b, second))
    # Exact frames: only the last one before the switch and the very last are short.
    size_old = Fraction(first.sample_rate * Fraction(first_ms) / 1000)
    size_new = Fraction(second.sample_rate * Fraction(second_ms) / 1000)
    assert all(abs(f.samples - size_old) < 1 for f in old[:-1])
    assert all(abs(f.samples - size_new) < 1 for f in new[:-1])
    check_pts(p.frames)
    check_paced(p)
    assert p.state.played_ms("i1") == math.floor(1000 * sum(f.duration for f in p.frames))


@settings(max_examples=15, deadline=None)
@given(
    split=st.integers(0, 30_000),
    delay_ms=st.integers(0, 1500),
    rate=st.sampled_from([8_000, 16_000, 24_000, 44_100, 48_000]),
    frame_ms=st.sampled_from([10, 20, 7.5, 40]),
)
def test_reframe_at_any_point_loses_nothing(
    split: int, delay_ms: int, rate: int, frame_ms: float
) -> None:
    """Wherever the Reframe lands in the reply, and whenever it arrives, the audio
    before it is the one-shot conversion at the old format and the rest at the new."""
    pcm = tone(30_000, 3)
    old_fmt, new_fmt = AudioFormat(16_000), AudioFormat(rate)

    async def main() -> Played:
        with trio.fail_after(600):
            return await play(
                [
                    *pieces(pcm[:split], 700),
                    delay_ms / 1000,
                    Reframe(rate, frame_ms),
                    *pieces(pcm[split:], 700),
                ],
                output=old_fmt,
            )

    p = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # Formats may coincide: split where the reframed (new frame length) part starts.
    n_old = len(oneshot(pcm[:split], old_fmt)) if split else 0
    got = joined(p.frames)
    assert np.array_equal(got[:n_old], oneshot(pcm[:split], old_fmt))
    assert np.array_equal(got[n_old:], oneshot(pcm[split:], new_fmt))
    check_pts(p.frames)


async def test_reframe_through_the_session(autojump_clock: trio.testing.MockClock) -> None:
    """``session.reframe_output`` between two reply chunks: the output channel gets
    the first at 24 kHz / 20 ms and the second at 16 kHz / 10 ms, paced throughout."""
    with trio.fail_after(600):
        provider = RecordingProvider()
        a, b = tone(REPLY, 4), tone(REPLY // 2 + 13, 5)
        frames: list[AudioFrame] = []
        times: list[float] = []
        async with open_session(provider) as session:
            await provider.connected.wait()
            await provider.emit(audio(a))
            await trio.testing.wait_all_tasks_blocked()  # routed to playback
            await session.reframe_output(16_000, 10)
            await provider.emit(audio(b))
            await provider.emit(ReplyDone("r1"))
            t0 = trio.current_time()
            async for frame in session.output:
                frames.append(frame)
                times.append(trio.current_time() - t0)
                if sum(f.samples for f in frames if f.sample_rate == 16_000) >= len(
                    oneshot(b, AudioFormat(16_000))
                ):
                    break
            await trio.testing.wait_all_tasks_blocked()  # playback counts after a send
            stats = session.stats()
        old = [f for f in frames if f.sample_rate == REPLY]
        new = [f for f in frames if f.sample_rate == 16_000]
        assert frames == old + new
        assert np.array_equal(joined(old), a)  # 24 kHz to 24 kHz: passed through
        assert np.array_equal(joined(new), oneshot(b, AudioFormat(16_000)))
        assert {f.samples for f in new[:-1]} == {160}
        check_pts(frames)
        check_paced(Played(frames=frames, times=times))
        assert stats.edges["playback"].frames == len(frames)
        assert session.played_ms("i1") == 1000 + len(joined(new)) * 1000 // 16_000


async def test_bad_reframe_arguments_raise_at_the_call() -> None:
    with trio.fail_after(30):
        async with open_session(RecordingProvider()) as session:
            for rate, ms in [(7, 20), (24_000, 0), (24_000, -10), (1_000_000, 20)]:
                with pytest.raises(ValueError):  # noqa: PT011 - rate or frame_ms
                    await session.reframe_output(rate, ms)
            await session.aclose()
            with pytest.raises(SessionClosedError):
                await session.reframe_output(16_000, 20)


# ---------------------------------------------------------------- pacing, gaps


async def test_idle_gap_is_not_caught_up(autojump_clock: trio.testing.MockClock) -> None:
    """A second reply after silence starts when it arrives and is paced from there:
    the silence is not lag to burst through."""
    with trio.fail_after(600):
        p = await play(
            [
                *pieces(tone(4800), 960),
                ReplyDone("r1"),
                5.0,
                *pieces(tone(4800, 1), 960, "r2", "i2"),
            ]
        )
    assert len(p.frames) == 20
    first, second = p.times[:10], p.times[10:]
    assert np.diff(first) == pytest.approx(0.02, abs=TICK)
    assert np.diff(second) == pytest.approx(0.02, abs=TICK)
    assert second[0] == pytest.approx(5.0, abs=TICK)  # when it arrived


async def test_a_stalled_sink_resyncs_without_a_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An app that stops reading for 1 s blocks playback; afterwards frames come at
    most ``max_lag`` in a burst (here: the one that was waiting), then paced again."""
    with trio.fail_after(600):
        stalled = False

        p = Played()
        send, receive = trio.open_memory_channel[PlaybackInput](100)
        sink_send, sink_receive = trio.open_memory_channel[AudioFrame](0)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    playback.run, receive, sink_send, reply_rate=REPLY, output=AudioFormat(REPLY)
                )
            )
            for m in pieces(tone(REPLY * 2), 2400):
                send.send_nowait(m)
            send.close()
            start = trio.current_time()
            async for frame in sink_receive:
                p.frames.append(frame)
                p.times.append(trio.current_time() - start)
                if len(p.frames) == 20 and not stalled:
                    stalled = True
                    await trio.sleep(1.0)
    assert len(p.frames) == 100
    assert p.times[20] == pytest.approx(p.times[19] + 1.0, abs=TICK)
    burst = sum(1 for t in p.times[20:] if t <= p.times[20] + TICK)
    assert burst <= 0.2 / 0.02 + 1
    assert np.diff(p.times[20 + burst - 1 :]) == pytest.approx(0.02, abs=TICK)
    assert np.array_equal(joined(p.frames), tone(REPLY * 2))


# -------------------------------------------------------------------- barge-in


async def test_interrupt_drops_queued_and_later_audio_of_that_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        r1, r2 = tone(REPLY * 2, 1), tone(REPLY // 2, 2)
        p = await play(
            [
                *pieces(r1[:REPLY], 2400, "r1", "i1"),
                0.51,  # while frame 25 (sent at 0.50) plays
                ReplyInterrupted("r1"),
                *pieces(r1[REPLY:], 2400, "r1", "i1"),  # stale: arrives after the cut
                *pieces(r2, 2400, "r2", "i2"),
                ReplyDone("r2"),
            ]
        )
    got = joined(p.frames)
    played_r1 = 26  # frames of r1 that went out before the cut: 0.00 .. 0.50
    assert np.array_equal(got[: played_r1 * 480], r1[: played_r1 * 480])
    assert np.array_equal(got[played_r1 * 480 :], r2)  # nothing else of r1
    assert p.state.played_ms("i1") == played_r1 * 20
    assert p.state.played_ms("i2") == 500
    assert "r1" in p.state.cancelled
    # r2 takes the next slot, when frame 25 ends: no stall, no burst.
    assert p.times[played_r1 - 1] == pytest.approx(0.5, abs=TICK)
    assert np.diff(p.times) == pytest.approx(0.02, abs=TICK)
    # r2 ended: reported once its last frame had gone to the sink.
    assert played_events(p) == [(ReplyPlayed("r2", 500), len(p.frames))]


async def test_cancel_reply_through_the_session_and_truncate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        provider = RecordingProvider()
        out = AudioFormat(16_000)
        r2 = tone(4801, 9)
        async with open_session(provider, output_format=out) as session:
            await provider.connected.wait()
            await provider.emit(audio(tone(REPLY * 3 + 7), "r1", "i1"))
            got: list[AudioFrame] = []
            async for frame in session.output:
                got.append(frame)
                if len(got) == 30:
                    break
            await session.cancel_reply("r1")
            await session.truncate("i1")
            await provider.emit(audio(tone(REPLY), "r1", "i1"))  # stale
            await provider.emit(audio(r2, "r2", "i2"))
            await provider.emit(ReplyDone("r2"))
            async for frame in session.output:
                got.append(frame)
                if sum(f.samples for f in got[30:]) >= len(oneshot(r2, out)):
                    break
            await trio.testing.wait_all_tasks_blocked()
            played = session.played_ms("i1")
        assert played == 30 * 20
        assert provider.controls[-2:] == [CancelReply("r1"), TruncateItem("i1", 600)]
        # Nothing of r1 (queued frames, the filter's tail) leaks into r2.
        assert np.array_equal(joined(got[30:]), oneshot(r2, out))


@pytest.mark.parametrize("rate", [11_025, 8_010, 47_999])
async def test_played_ms_matches_the_sink_at_fractional_frame_sizes(
    autojump_clock: trio.testing.MockClock, rate: int
) -> None:
    """At 8,010 Hz frames are 160 or 161 samples; the played position still equals
    the audio the sink got, to the millisecond (a float sum creeps below it)."""
    with trio.fail_after(600):
        out = AudioFormat(rate)
        # 200 ms and 5 s: whole milliseconds, where a float sum falls short.
        lengths = {"a": REPLY // 5, "b": REPLY * 5, "c": 12_345}
        script: Script = []
        for k, (item, n) in enumerate(lengths.items()):
            script += [*pieces(tone(n, k), 1111, f"r{k}", item), ReplyDone(f"r{k}")]
        p = await play(script, output=out, realtime=False)
    per_item: dict[str, int] = {}
    position = 0
    for item, n in lengths.items():
        samples = len(oneshot(tone(n), out))
        per_item[item] = samples
        position += samples
    assert sum(f.samples for f in p.frames) == position
    for item, samples in per_item.items():
        assert p.state.played_ms(item) == samples * 1000 // out.sample_rate, item


# ------------------------------------------------------------ overflow, drops


async def test_queue_overflow_is_dropped_counted_and_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        p = await play([audio(tone(REPLY * 2)), ReplyDone("r1")], max_queue_s=0.5)
    drops = [e for e in p.events if isinstance(e, AudioDropped)]
    assert len(p.frames) == 25  # 0.5 s kept
    assert sum(d.frames for d in drops) == 75
    assert sum(d.samples for d in drops) == 75 * 480
    assert drops[-1].total_frames == 75
    assert all(d.edge == "playback" for d in drops)
    assert p.counter.frames + p.counter.dropped_frames == 100
    assert p.counter.dropped_samples == 75 * 480
    # Oldest first: what played is the newest 0.5 s.
    assert np.array_equal(joined(p.frames), tone(REPLY * 2)[75 * 480 :])
    assert played_events(p) == [(ReplyPlayed("r1", 500), 25)]


async def test_drops_are_reported_even_when_nothing_plays_after_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Drops that no played frame follows are still counted and reported."""
    with trio.fail_after(600):
        # A queue shorter than one frame keeps nothing: every frame is dropped.
        p = await play([audio(tone(REPLY)), ReplyDone("r1")], max_queue_s=0.01)
    drops = [e for e in p.events if isinstance(e, AudioDropped)]
    assert p.frames == []
    assert p.counter.dropped_frames == 50
    assert sum(d.frames for d in drops) == 50
    assert sum(d.samples for d in drops) == REPLY
    # The end mark went with the audio before it: still reported, after the drops.
    assert played_events(p) == [(ReplyPlayed("r1", 0), 0)]
    assert isinstance(p.events[-1], ReplyPlayed)


async def test_playback_ends_when_its_input_ends_and_closes_the_sink() -> None:
    with trio.fail_after(30):
        p = await play([*pieces(tone(REPLY // 2 + 5), 1000)], realtime=False)
    # No ReplyDone: the end of the input drains the tail (the last frame short).
    assert np.array_equal(joined(p.frames), tone(REPLY // 2 + 5))
    assert p.frames[-1].samples == 5


async def test_reply_rate_change_drains_and_switches() -> None:
    with trio.fail_after(30):
        a = tone(REPLY // 2)
        b16 = tone(16_000 // 2, 7)
        p = await play(
            [audio(a), ReplyAudio(b16, 16_000, "r1", "i1"), ReplyDone("r1")],
            output=AudioFormat(48_000),
            realtime=False,
        )
    want = np.concatenate(
        [
            oneshot(a, AudioFormat(48_000)),
            convert_oneshot(b16, AudioFormat(16_000), AudioFormat(48_000)),
        ]
    )
    assert np.array_equal(joined(p.frames), want)
    check_pts(p.frames)


# -------------------------------------------------------------------- WavSink


async def test_wav_sink_writes_a_valid_wav(tmp_path: Path) -> None:
    with trio.fail_after(30):
        path = tmp_path / "out.wav"
        sink = playback.WavSink(path)
        send, receive = trio.open_memory_channel[PlaybackInput](100)
        pcm = tone(REPLY + 99)
        for m in pieces(pcm, 5000):
            send.send_nowait(m)
        send.close()
        await playback.run(
            receive, sink, reply_rate=REPLY, output=AudioFormat(16_000, 2), realtime=False
        )
    got, fmt = read_wav(path)
    assert fmt == AudioFormat(16_000, 2)
    assert np.array_equal(got, oneshot(pcm, AudioFormat(16_000, 2)))
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == got.shape[0]
    assert sink.frames_written == math.ceil(got.shape[0] / 320)


async def test_wav_sink_refuses_a_second_format(tmp_path: Path) -> None:
    with trio.fail_after(30):
        sink = playback.WavSink(tmp_path / "x.wav")
        await sink.write(AudioFrame.from_pcm(tone(480), AudioFormat(24_000)))
        with pytest.raises(ValueError, match="WavSink"):
            await sink.write(AudioFrame.from_pcm(tone(160), AudioFormat(16_000)))
        await sink.aclose()
        await sink.aclose()  # idempotent
    got, fmt = read_wav(tmp_path / "x.wav")
    assert fmt == AudioFormat(24_000)
    assert np.array_equal(got, tone(480))


async def test_cancelled_playback_closes_a_wav_sink(tmp_path: Path) -> None:
    """Cancelled mid-reply, playback still closes its WAV sink: a complete file with
    every frame written so far. (Real clock: autojump would race the worker thread.)"""

    class CancellingSink(playback.WavSink):
        async def write(self, frame: AudioFrame) -> None:
            await super().write(frame)
            if self.frames_written == 20:
                scope.cancel()

    with trio.fail_after(30):
        path = tmp_path / "cut.wav"
        sink = CancellingSink(path)
        send, receive = trio.open_memory_channel[PlaybackInput](100)
        pcm = tone(REPLY * 10)
        send.send_nowait(audio(pcm))
        with trio.CancelScope() as scope:
            await playback.run(
                receive, sink, reply_rate=REPLY, output=AudioFormat(REPLY), realtime=False
            )
    got, _ = read_wav(path)  # a complete, readable file
    assert sink.frames_written == 20
    assert np.array_equal(got, pcm[: 20 * 480])


async def test_reply_played_follows_each_reply_when_its_last_frame_went_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two replies back to back, the first interrupted halfway: each ReplyDone is
    followed by ReplyPlayed once everything queued before it has gone to the sink
    (or been dropped), with the milliseconds actually handed over."""
    with trio.fail_after(600):
        r1, r2 = tone(REPLY, 1), tone(REPLY // 2, 2)
        p = await play(
            [
                *pieces(r1, 2400, "r1", "i1"),
                0.31,  # frames 0..15 of r1 (sent at 0.00 .. 0.30) have gone out
                ReplyInterrupted("r1"),
                ReplyDone("r1", status="cancelled"),
                *pieces(r2, 2400, "r2", "i2"),
                ReplyDone("r2"),
            ]
        )
    assert len(p.frames) == 16 + 25
    assert played_events(p) == [(ReplyPlayed("r1", 320), 16), (ReplyPlayed("r2", 500), 41)]
    assert p.state.played_ms("i1") == 320


async def test_cancelling_everything_keeps_the_end_marks() -> None:
    state = playback.PlaybackState()
    frame = AudioFrame(np.zeros((480, 1), np.int16), REPLY)
    mark = playback.QueuedFrame(
        AudioFrame(np.zeros((0, 1), np.int16), REPLY), "r1", None, end_of_reply=True
    )
    for q in (
        playback.QueuedFrame(frame, "r1", "i1"),
        mark,
        playback.QueuedFrame(frame, "r2", "i2"),
    ):
        state.append(q)
    assert state.cancel(None) == 2
    assert list(state.queued) == [mark]
    assert state.queued_s == 0.0


# ------------------------------------------------------ the queue limit, and fades


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 0.0])
async def test_a_bad_queue_limit_is_refused_at_open_session(bad: float) -> None:
    with pytest.raises(ValueError, match="max_playback_queue_s"):
        async with open_session(RecordingProvider(), max_playback_queue_s=bad):
            pass  # pragma: no cover


async def test_drops_are_reported_when_they_happen_even_if_nobody_reads_the_output(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = RecordingProvider()
    with trio.fail_after(600):
        async with open_session(provider, max_playback_queue_s=1.0) as session:
            await provider.connected.wait()
            sub = session.subscribe(max_buffer=10_000)
            for _ in range(20):  # 20 s of reply audio; the output is never read
                await provider.emit(audio(tone(24_000)))
            await provider.emit(ReplyDone("r1"))
            await trio.testing.wait_all_tasks_blocked()
            stats = session.stats()
            await session.aclose()
            drops = [e async for e in sub if isinstance(e, AudioDropped)]
    dropped = stats.edges["playback"].dropped_samples
    # Everything beyond the queue (and the output channel's few frames) was dropped,
    # and every dropped sample was reported, without a frame ever reaching a reader.
    assert dropped >= 24_000 * 18
    assert sum(d.samples for d in drops) == dropped
    assert drops[-1].total_frames == stats.edges["playback"].dropped_frames


def test_a_faded_frame_ramps_down_to_silence() -> None:
    frame = AudioFrame(np.full((480, 2), 10_000, np.int16), 24_000, 960)
    out = playback.faded(frame)
    assert out.pts == frame.pts
    assert out.samples == frame.samples
    assert out.pcm[0, 0] == 10_000
    assert np.all(np.diff(out.pcm[:, 0].astype(int)) <= 0)
    assert abs(int(out.pcm[-1, 1])) < 10_000 / 400
