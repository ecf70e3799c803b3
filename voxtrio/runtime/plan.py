"""What ``open_session`` checks at the call: the plan the pipeline starts from."""

from __future__ import annotations

import math
import uuid

import attrs

from ..actors import playback as playback_actor
from ..actors.capture import Capture
from ..audio import AudioFormat, FrameMs, frame_fraction
from ..stores.base import TranscriptStore, check_session_id, check_store
from ..stores.memory import MemoryTranscriptStore
from .provider import Provider

__all__ = ["Plan", "make_plan"]


@attrs.frozen
class Plan:
    """What ``open_session`` checked: everything the pipeline needs to start."""

    provider: Provider
    instructions: str | None
    capture: Capture | None
    store: TranscriptStore
    session_id: str
    output_format: AudioFormat
    output_frame_ms: FrameMs
    sink: playback_actor.Sink | None
    live_input: bool
    realtime_playback: bool
    max_playback_queue_s: float
    subscriber_buffer: int
    audio_buffer: int
    close_timeout_s: float
    interruptible: bool = True


def make_plan(
    provider: Provider,
    *,
    instructions: str | None,
    capture: Capture | None,
    store: TranscriptStore | None,
    session_id: str | None,
    output_format: AudioFormat | None,
    output_frame_ms: FrameMs,
    sink: playback_actor.Sink | None,
    live_input: bool | None,
    realtime_playback: bool,
    max_playback_queue_s: float,
    subscriber_buffer: int,
    audio_buffer: int,
    close_timeout_s: float,
    interruptible: bool = True,
) -> Plan:
    """Check ``open_session``'s arguments at the call; the pipeline's plan."""
    if not isinstance(provider, Provider):
        raise TypeError(f"provider must implement voxtrio's Provider protocol, got {provider!r}")
    if store is None:
        store = MemoryTranscriptStore()
    else:
        check_store(store)
    if instructions is not None and not isinstance(instructions, str):
        raise TypeError(f"instructions must be a str or None, got {type(instructions).__name__}")
    provider.check()
    out_fmt = output_format if output_format is not None else provider.output_format
    if not isinstance(out_fmt, AudioFormat):
        raise ValueError(f"output_format must be an AudioFormat, got {out_fmt!r}")
    frame_fraction(out_fmt.sample_rate, output_frame_ms)
    frame_fraction(provider.input_format.sample_rate, provider.input_frame_ms)
    for name, value in (("subscriber_buffer", subscriber_buffer), ("audio_buffer", audio_buffer)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not (close_timeout_s >= 0 and math.isfinite(close_timeout_s)):
        raise ValueError(f"close_timeout_s must be finite and >= 0, got {close_timeout_s}")
    if not (max_playback_queue_s > 0 and math.isfinite(max_playback_queue_s)):
        # nan would remove the cap; 0 or less would drop every reply's audio.
        raise ValueError(
            f"max_playback_queue_s must be finite and > 0, got {max_playback_queue_s}"
        )
    if not isinstance(interruptible, bool):
        raise TypeError(f"interruptible must be a bool, got {type(interruptible).__name__}")
    sid = session_id if session_id is not None else uuid.uuid4().hex
    check_session_id(sid)
    return Plan(
        provider=provider,
        instructions=instructions,
        capture=capture,
        store=store,
        session_id=sid,
        output_format=out_fmt,
        output_frame_ms=output_frame_ms,
        sink=sink,
        live_input=live_input if live_input is not None else (capture.live if capture else True),
        realtime_playback=realtime_playback,
        max_playback_queue_s=max_playback_queue_s,
        subscriber_buffer=subscriber_buffer,
        audio_buffer=audio_buffer,
        close_timeout_s=close_timeout_s,
        interruptible=interruptible,
    )
