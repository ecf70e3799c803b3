"""Session stats count audio in one unit across edges: seconds, whatever each edge's
frames and rates are (capture chunks at the source rate, 20 ms frames at the
provider's rate, output frames)."""

from __future__ import annotations

import numpy as np
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio import ArrayCapture, AudioFormat, open_session
from voxtrio.testing.inprocess import RecordingProvider


@settings(max_examples=25, deadline=None)
@given(
    rate=st.sampled_from([8_000, 16_000, 44_100, 48_000]),
    channels=st.sampled_from([1, 2]),
    samples=st.integers(1, 30_000),
    chunk_ms=st.sampled_from([10, 20, 200]),
)
def test_audio_seconds_agree_between_capture_and_link(
    rate: int, channels: int, samples: int, chunk_ms: int
) -> None:
    fmt = AudioFormat(rate, channels)
    pcm = np.random.default_rng(samples).integers(-3000, 3000, (samples, channels), np.int16)
    provider = RecordingProvider()  # 24 kHz mono, 20 ms frames

    async def main() -> None:
        with trio.fail_after(30):
            capture = ArrayCapture(pcm, fmt, chunk_ms=chunk_ms)
            async with open_session(provider, capture=capture) as session:
                await provider.input_ended.wait()
                stats = session.stats()
        seconds = samples / rate
        # The capture's chunks, counted in seconds, add up to the input exactly.
        assert abs(stats.audio_in_s - seconds) < 1e-6
        # The link got the same audio at 24 kHz in 20 ms frames: at most one padded
        # frame (20 ms) and a resampler sample more; never less than what came in.
        assert seconds - 1e-3 <= stats.audio_sent_s <= seconds + 0.021
        # The frame counts differ (chunks against 20 ms frames) where the seconds agree.
        assert stats.frames_sent == provider.frames_received
        assert abs(stats.audio_sent_s - provider.samples_received / 24_000) < 1e-6

    trio.run(main)
