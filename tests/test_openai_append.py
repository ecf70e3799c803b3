"""The OpenAI encoder's audio appends: a batch is encoded as its frames one by one."""

from __future__ import annotations

import base64
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs.audio import AudioFrame
from voxtrio.codecs.openai_realtime.config import OpenAIRealtimeConfig
from voxtrio.codecs.openai_realtime.encode import Encoder
from voxtrio.codecs.openai_realtime.state import ConnectionState
from voxtrio.messages import FrameBatch


@st.composite
def runs(draw: st.DrawFn) -> list[AudioFrame]:
    """24 kHz mono frames, mostly contiguous, with jumps in pts and empty frames."""
    frames: list[AudioFrame] = []
    pts = draw(st.integers(0, 10_000))
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.sampled_from([0, 1, 240, 480, 481]))
        pcm = np.arange(pts, pts + n, dtype=np.int64).astype(np.int16).reshape(-1, 1)
        frames.append(AudioFrame(pcm, 24_000, pts))
        pts += n + draw(st.sampled_from([0, 0, 0, 7, 480]))
    return frames


def _audio(wires: list[str]) -> bytes:
    out = b""
    for wire in wires:
        event = json.loads(wire)
        assert event["type"] == "input_audio_buffer.append"
        out += base64.b64decode(event["audio"])
    return out


@settings(max_examples=150, deadline=None)
@given(runs(), st.integers(0, 4))
def test_a_batch_appends_and_books_as_its_frames_one_by_one(
    frames: list[AudioFrame], cut: int
) -> None:
    """Same bytes on the wire, and the same bookkeeping (appended samples, the pts
    breaks the service's audio_ms is mapped back with), whether the frames go as one
    batch (after ``cut`` of them alone) or one message each."""
    config = OpenAIRealtimeConfig()
    whole, single = Encoder(config, ConnectionState()), Encoder(config, ConnectionState())
    cut = min(cut, len(frames))
    got = [w for f in frames[:cut] for w in whole.encode(f)]
    got += whole.encode(FrameBatch(tuple(frames[cut:]))) if frames[cut:] else []
    want = [w for f in frames for w in single.encode(f)]
    assert _audio(got) == _audio(want)
    a, b = whole.state, single.state
    assert (a.appended, a.uncommitted, a.next_pts) == (b.appended, b.uncommitted, b.next_pts)
    assert (a.break_offsets, a.break_pts) == (b.break_offsets, b.break_pts)
    for ms in (0, 10, 25, 1000):
        assert a.input_pts(ms) == b.input_pts(ms)
