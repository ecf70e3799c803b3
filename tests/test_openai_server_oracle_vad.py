"""voxtrio.testing.openai.oracle and .vad: event validation and the energy VAD,
with no socket."""

from __future__ import annotations

import itertools
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.testing import EnergyVad, validate_client_event, validate_server_event

from .openai_server_helpers import silence, tone


@settings(max_examples=40, deadline=None)
@given(junk=st.text(max_size=200) | st.binary(max_size=200))
def test_validation_never_raises_on_junk(junk: str | bytes) -> None:
    try:
        value: object = json.loads(junk)
    except (ValueError, RecursionError):
        value = junk
    problem = validate_client_event(value)
    assert problem is None or isinstance(problem, str)


def test_the_codecs_events_validate_and_tampered_ones_do_not() -> None:
    codec = OpenAIRealtimeCodec()
    (wire,) = codec.connect_messages("hi")
    event = json.loads(wire)
    assert validate_client_event(event) is None
    event["session"]["audio"]["input"]["format"]["rate"] = 48_000
    assert validate_client_event(event) is not None
    assert validate_server_event({"type": "session.created", "event_id": "e"}) is not None


@st.composite
def speechy(draw: st.DrawFn) -> np.ndarray:
    parts = draw(
        st.lists(st.tuples(st.booleans(), st.integers(1, 80)), min_size=1, max_size=8),
        label="loud/quiet runs of 10 ms",
    )
    return np.concatenate([tone(n * 10) if loud else silence(n * 10) for loud, n in parts])


@settings(max_examples=60, deadline=None)
@given(pcm=speechy(), cuts=st.lists(st.integers(0, 20_000), max_size=8))
def test_the_vad_does_not_depend_on_chunking(pcm: np.ndarray, cuts: list[int]) -> None:
    whole = EnergyVad().push(pcm)
    vad = EnergyVad()
    bounds = [0, *sorted(c % (len(pcm) + 1) for c in cuts), len(pcm)]
    pieces = []
    for a, b in itertools.pairwise(bounds):
        pieces += vad.push(pcm[a:b])
    assert pieces == whole


@settings(max_examples=60, deadline=None)
@given(pcm=speechy())
def test_the_vad_alternates_and_stays_in_time(pcm: np.ndarray) -> None:
    events = EnergyVad().push(pcm)
    kinds = [k for k, _ in events]
    assert kinds == ["start", "stop"] * (len(kinds) // 2) + ["start"] * (len(kinds) % 2)
    times = [ms for _, ms in events]
    assert all(0 <= ms <= len(pcm) // 24 for ms in times)
    if np.abs(pcm).max() >= 1000:
        assert kinds[:1] == ["start"]  # loud audio is heard: stops a do-nothing VAD


def test_the_vad_ignores_quiet_audio() -> None:
    rng = np.random.default_rng(0)
    assert EnergyVad().push(rng.integers(-100, 100, 48_000).astype(np.int16)) == []
