"""What ``open_session`` checks at the call: the plan the pipeline starts from."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable

import attrs
import trio

from ..actors import playback as playback_actor
from ..actors.capture import Capture
from ..audio import AudioFormat, FrameMs, frame_fraction
from ..stores.base import TranscriptStore, check_session_id, check_store
from ..stores.memory import MemoryTranscriptStore
from ..tools import Tool
from .provider import Provider
from .tools import SessionTools, check_tools, link_provider

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
    #: the session's tools, and the provider the link runs with (it declares them)
    tools: SessionTools = attrs.field(factory=lambda: SessionTools((), ()))
    link_provider: Provider | None = None
    #: push mode: the format ``send_audio`` takes when given none
    input_format: AudioFormat | None = None
    interruptible: bool = True


def _check_capture(capture: object) -> None:
    if capture is None:
        return
    if isinstance(capture, str | bytes) or not callable(getattr(capture, "run", None)):
        raise TypeError(
            "capture must be a capture object such as voxtrio.WavCapture('input.wav') "
            f"or voxtrio.ArrayCapture(pcm, fmt), got {type(capture).__name__} {capture!r}"
        )
    check = getattr(capture, "check", None)
    if callable(check):
        check()  # e.g. a missing or unsupported file raises here, at open_session


def _check_sink(sink: object) -> None:
    if sink is None or isinstance(sink, playback_actor.WavSink | trio.MemorySendChannel):
        return
    raise TypeError(
        "sink must be voxtrio.WavSink('output.wav') or a trio.MemorySendChannel of "
        f"AudioFrame, got {type(sink).__name__} {sink!r}"
    )


def _native(provider: Provider, fmt: AudioFormat) -> Provider:
    """The provider taking G.711 ``fmt`` as it is, if it can (``with_native_audio``,
    e.g. OpenAI's ``audio/pcmu``); else ``provider``, and the input is converted."""
    native = getattr(provider, "with_native_audio", None)
    twin = native(fmt) if callable(native) else None
    return twin if isinstance(twin, Provider) else provider


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
    tools: Iterable[object] | None = None,
    input_format: AudioFormat | None = None,
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
    _check_capture(capture)
    _check_sink(sink)
    if input_format is not None:
        if not isinstance(input_format, AudioFormat):
            raise TypeError(f"input_format must be an AudioFormat, got {input_format!r}")
        if capture is not None:
            raise ValueError("input_format is for push mode (send_audio); pass no capture")
    session_tools: tuple[Tool, ...] = check_tools(tools)
    if input_format is not None and not input_format.is_pcm:
        provider = _native(provider, input_format)
    provider.check()
    linked, settings = link_provider(provider, session_tools)
    out_fmt = output_format if output_format is not None else provider.output_format
    if output_format is None and input_format is not None and not input_format.is_pcm:
        out_fmt = input_format  # a phone call hears its own law back, whatever the provider
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
        tools=settings,
        link_provider=linked,
        input_format=input_format,
        interruptible=interruptible,
    )
