"""``open_session``: the entry point that checks the options and runs a session.

Kept apart from :mod:`voxtrio.runtime.session` (the :class:`Session` facade) because
its docstring is the one place every option is described;
``voxtrio.runtime.session.open_session`` re-exports it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ..actors import playback as playback_actor
from ..actors.capture import Capture
from ..audio import AudioFormat, AudioFrame, FrameMs
from ..codecs.openai_realtime.config import FunctionTool
from ..stores.base import TranscriptStore
from ..tools import Tool
from .pipeline import run_pipeline
from .plan import make_plan
from .provider import Provider

if TYPE_CHECKING:
    from .session import Session

__all__ = ["open_session"]


def _require_trio() -> None:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        raise RuntimeError(
            "voxtrio runs under trio, not asyncio: start your app with trio.run(main) "
            "(from asyncio, run it in a thread with its own trio.run, or use trio-asyncio)"
        ) from None


@asynccontextmanager
async def open_session(
    provider: Provider,
    *,
    instructions: str | None = None,
    capture: Capture | None = None,
    store: TranscriptStore | None = None,
    session_id: str | None = None,
    output_format: AudioFormat | None = None,
    output_frame_ms: FrameMs = 20,
    sink: playback_actor.WavSink | trio.MemorySendChannel[AudioFrame] | None = None,
    live_input: bool | None = None,
    realtime_playback: bool = True,
    max_playback_queue_s: float = 120.0,
    subscriber_buffer: int = 256,
    audio_buffer: int = 64,
    close_timeout_s: float = 5.0,
    tools: Sequence[Tool | FunctionTool | Callable[..., Any]] | None = None,
    input_format: AudioFormat | None = None,
    interruptible: bool = True,
) -> AsyncIterator[Session]:
    """Open a voice session with ``provider``.

    Args:
        provider: e.g. ``OpenAIRealtime(model=...)``, or a ``voxtrio.testing``
            provider.
        instructions: the base instructions; the transcript so far is folded into
            them on every (re)connect.
        capture: the audio source (``WavCapture``, ``ArrayCapture``,
            ``ByteStreamCapture``, ``MicCapture``); None for push mode
            (:meth:`Session.send_audio`).
        store: a transcript store (``MemoryTranscriptStore()`` by default, or
            ``SqliteTranscriptStore(path)``); the app owns it (closes it). Its
            faults (a locked or full disk) reach subscribers as they happen, as
            ``ErrorEvent(source="store")``, and are retried; the session goes on.
        session_id: names the conversation in the store; reuse it to resume a call.
            A random one by default.
        output_format: the output track (default: the provider's output format).
        output_frame_ms: output frame length.
        sink: where playback frames go: a ``WavSink`` or a channel of your own;
            by default they go to :attr:`Session.output`.
        live_input: whether the input audio is live (cannot wait): then, while the
            provider is unreachable, the link keeps ``outage_buffer_s`` of it and
            drops the oldest; otherwise the pipeline waits and nothing is dropped.
            Default: the capture's ``live`` (a realtime capture is live, a file
            read as fast as possible is not); True in push mode.
        realtime_playback: pace output frames in real time.
        max_playback_queue_s: reply audio queued beyond this is dropped and
            reported.
        subscriber_buffer: default queue length per subscriber.
        audio_buffer: capacity in messages of the audio channels.
        close_timeout_s: how long leaving the block may wait for the transcript
            store's last writes, even when cancelled (then shielded). Every
            transcript a subscriber saw is written unless the store fails or is
            slower than this; what is lost is reported to subscribers as an
            ``ErrorEvent(source="store", recoverable=False)`` (not when cancelled:
            the subscriptions end at once then).
        tools: tools the model may call, declared to the provider beside its own:
            ``@voxtrio.tool`` functions (the session runs them and continues the
            reply, see :mod:`voxtrio.runtime.tools`), or tools without a function
            (``FunctionTool``), whose calls the app answers with
            :meth:`Session.send_tool_result`.
        input_format: push mode: the format of the audio given to
            :meth:`Session.send_audio` without one.
        interruptible: whether the caller's speech cuts a reply off (barge-in) by
            default; ``create_reply(interruptible=...)`` decides per reply.

    Raises:
        ValueError: bad arguments, or a provider that cannot start (e.g.
            ``MissingApiKeyError``), at the call.
        TypeError: ``provider``, ``store``, ``capture``, ``sink`` or ``tools`` of
            the wrong kind (e.g. a file name where ``WavCapture("x.wav")`` goes).
        FileNotFoundError, ValueError: a capture's input file is missing or unreadable.
        UnsupportedError: tools for a provider that cannot declare them.
        SessionError: an actor of the session failed (a bug); it names the actor,
            and the original exception is its ``__cause__``.
        Whatever the block raised, as itself (not in an exception group).
    """
    # Long only by its docstring: the options are listed here once, checked in make_plan.
    _require_trio()
    plan = make_plan(
        provider,
        instructions=instructions,
        capture=capture,
        store=store,
        session_id=session_id,
        output_format=output_format,
        output_frame_ms=output_frame_ms,
        sink=sink,
        live_input=live_input,
        realtime_playback=realtime_playback,
        max_playback_queue_s=max_playback_queue_s,
        subscriber_buffer=subscriber_buffer,
        audio_buffer=audio_buffer,
        close_timeout_s=close_timeout_s,
        tools=tools,
        input_format=input_format,
        interruptible=interruptible,
    )
    from .session import Session  # here, not at the top: session.py re-exports this module

    async with run_pipeline(plan) as pipeline:
        yield Session(pipeline)
