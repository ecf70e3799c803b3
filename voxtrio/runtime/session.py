"""The session: the facade an app uses over the pipeline of actors.

Every method that sends is one channel operation, atomic under cancellation like
trio's own channels: either it happens, or it raises ``Cancelled`` leaving nothing
changed. What it means for the transcript is recorded when it actually reached the
wire: the provider link reports the text and tool results it sent as events, and
the hub folds those in (so a text is stored once, when it was sent).

Supervision (see :mod:`voxtrio.runtime.supervision`): faults of the outside world
arrive as ``ErrorEvent`` messages and the session goes on; the app's own exception
comes out of ``open_session`` as itself; a bug in an actor comes out as one
:class:`~voxtrio.errors.SessionError` naming it. No task outlives the block.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..audio import AudioFormat, AudioFrame, FrameMs, PcmInput, frame_fraction
from ..codecs.openai_realtime.config import FunctionTool
from ..errors import SessionClosedError, UnsupportedError
from ..messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    Reframe,
    SendText,
    ToolResult,
    TruncateItem,
)
from ..stores.base import TranscriptStore
from ..tools import Tool
from . import updates
from .open import open_session
from .pipeline import Pipeline
from .provider import Provider
from .stats import EdgeStats, SessionStats, TurnStats
from .subscription import Subscription
from .turns import InterruptRequest

__all__ = ["EdgeStats", "Session", "SessionClosedError", "SessionStats", "open_session"]


class Session:
    """A running voice session; made by :func:`open_session`, valid inside its block."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._p = pipeline

    # ----------------------------------------------------------------- properties

    @property
    def session_id(self) -> str:
        """The id this session's transcript is stored under (reuse it to resume)."""
        return self._p.plan.session_id

    @property
    def provider(self) -> Provider:
        """The provider this session talks to."""
        return self._p.plan.provider

    @property
    def store(self) -> TranscriptStore:
        """The transcript store; ``store.items(session.session_id)`` reads what it holds."""
        return self._p.plan.store

    @property
    def input_format(self) -> AudioFormat:
        """The format the provider receives (after conversion)."""
        return self._p.plan.provider.input_format

    @property
    def output(self) -> trio.MemoryReceiveChannel[AudioFrame]:
        """Playback frames at the output track's format, paced; ends with the session.

        Read it, or give ``open_session`` a ``sink``: playback waits on this
        channel, and beyond ``max_playback_queue_s`` queued audio is dropped and
        reported.
        """
        return self._p.output

    @property
    def closed(self) -> bool:
        """Whether the session has been closed (no more input is accepted)."""
        return self._p.closed

    # ------------------------------------------------------------------- events

    def subscribe(self, max_buffer: int | None = None) -> Subscription:
        """A new bounded receive channel of every event from now on.

        Subscriptions made before the first checkpoint inside the ``async with``
        block see every event of the session, ``SessionConnected`` included.

        A subscriber that falls more than ``max_buffer`` events behind misses events
        and then receives ``SubscriberLagged(missed=n)`` where the gap is; nobody
        else waits for it.

        Reply audio (:class:`~voxtrio.messages.ReplyAudio`) is not among the
        events: it is playback-only (read :attr:`output`, or give ``open_session``
        a ``sink``); ``ReplyAudioDone`` and ``ReplyDone`` do reach subscribers.

        Raises:
            SessionClosedError: the session has ended: every event has been
                delivered, nothing more would come (after the ``async with`` block,
                or once a closed session's last events are routed).
        """
        if max_buffer is not None and max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        if self._p.hub.ended:
            raise SessionClosedError(
                "cannot subscribe: the session has ended and every event was delivered; "
                "subscribe inside the open_session block, before the first checkpoint"
            )
        return self._p.hub.subscribe(max_buffer)

    # -------------------------------------------------------------------- input

    def _check_open(self, what: str) -> None:
        if self._p.closed:
            raise SessionClosedError(f"cannot {what}: the session is closed")

    def _check_input_open(self, what: str) -> None:
        """Audio input and its segments end at :meth:`end_input` (or when the
        capture ends); replies, text and tool results go on until the session closes."""
        self._check_open(what)
        if self._p.input_ended:
            raise SessionClosedError(f"cannot {what}: the audio input has ended")

    def _require(self, capability: str, what: str) -> None:
        provider = self._p.plan.provider
        if not getattr(provider.capabilities, capability):
            raise UnsupportedError(
                f"cannot {what}: the {provider.name} provider does not support it"
            )

    async def send_audio(self, pcm: PcmInput, fmt: AudioFormat | None = None) -> None:
        """Push audio in push mode (``capture=None``); waits if the pipeline is full.

        Any supported format, ``fmt`` or else ``open_session``'s ``input_format``;
        it is converted to the provider's format. Samples are
        copied, so the caller may reuse its buffer. One channel operation: it either
        happens or raises ``Cancelled`` leaving nothing changed (the chunk's pts are
        taken only once it is sent).

        Raises:
            ValueError: ``pcm`` does not match ``fmt``.
            TypeError: no ``fmt`` and no ``input_format`` given to ``open_session``.
            RuntimeError: the session has a capture of its own.
            SessionClosedError: after :meth:`aclose` or :meth:`end_input`.
        """
        p = self._p
        if p.plan.capture is not None:
            raise RuntimeError("send_audio() is for push mode; this session has a capture")
        if fmt is None:
            fmt = p.plan.input_format
            if fmt is None:
                raise TypeError(
                    "send_audio() needs the audio's format: pass send_audio(pcm, fmt) or "
                    "open_session(..., input_format=AudioFormat(rate, channels))"
                )
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        self._check_input_open("send audio")
        pts = p.pts.get(fmt, 0)
        frame = AudioFrame.from_pcm(pcm, fmt, pts)
        if not frame.samples:
            return
        await p.send_input(frame, "send audio")
        p.pts[fmt] = pts + frame.samples
        p.counters["capture"].sent(1, frame.samples, frame.sample_rate)

    async def commit(self) -> None:
        """End the input segment (flushing the converter) and commit it.

        One channel operation: it either happens or raises ``Cancelled`` leaving
        nothing changed.

        Raises:
            UnsupportedError: the provider has no manual commit.
        """
        self._require("manual_commit", "commit")
        self._check_input_open("commit")
        await self._p.send_input(CommitInput(), "commit")

    async def clear_input(self) -> None:
        """Discard the input segment in progress.

        One channel operation: it either happens or raises ``Cancelled`` leaving
        nothing changed.

        Raises:
            UnsupportedError: the provider cannot clear its input.
        """
        self._require("clear_input", "clear input")
        self._check_input_open("clear input")
        await self._p.send_input(ClearInput(), "clear input")

    async def create_reply(
        self, instructions: str | None = None, *, interruptible: bool | None = None
    ) -> None:
        """Ask the provider to reply now.

        ``interruptible=False``: the reply plays to the end even if the caller speaks
        over it (their audio is still sent); :meth:`interrupt` still cuts it. None:
        the session's default (``open_session(interruptible=...)``). The flag goes
        to the next reply that starts.

        One channel operation: it either happens or raises ``Cancelled`` leaving
        nothing changed.
        """
        self._check_open("create a reply")
        if interruptible is not None and not isinstance(interruptible, bool):
            raise TypeError(f"interruptible must be a bool, got {type(interruptible).__name__}")
        await self._p.send_input(CreateReply(instructions), "create a reply")
        self._p.turns.reply_requested(interruptible)  # no checkpoint since the send

    async def interrupt(self) -> None:
        """Cut the agent off now, as barge-in does: playback stops (the next frame
        fades out, nothing more of the reply plays), the reply is cancelled if it is
        still generated, its item is truncated at what was played, and
        ``ReplyInterrupted`` is published. Cuts a not-interruptible reply too;
        nothing happens when no reply is open.

        One channel operation (a request to the hub, which decides in order with
        the events): it either happens or raises ``Cancelled`` leaving nothing
        changed.
        """
        self._check_open("interrupt")
        try:
            await self._p.session_events.send(InterruptRequest())
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosedError("cannot interrupt: the session is closed") from None

    async def cancel_reply(self, response_id: str | None = None) -> None:
        """Cancel the reply in progress and drop its audio.

        One channel operation: a ``CancelReply`` goes down the input path, in order
        with the other controls; once it is on its way (and not before: no
        checkpoint between) playback drops the reply's queued audio, ignores more
        of it, and drops what its resampler holds of it at its next step. It either
        happens or raises ``Cancelled`` leaving nothing changed.

        Raises:
            UnsupportedError: the provider cannot cancel a reply.
        """
        self._require("cancel_reply", "cancel a reply")
        self._check_open("cancel a reply")
        await self._p.send_input(CancelReply(response_id), "cancel a reply")
        self._p.playback_state.cancel_reply(response_id)

    async def truncate(self, item_id: str) -> None:
        """Tell the provider how much of ``item_id`` was actually played.

        One channel operation (none if nothing of it was played: providers reject a
        truncation at 0 ms): it either happens or raises ``Cancelled`` leaving
        nothing changed.

        Raises:
            UnsupportedError: the provider cannot truncate a reply item.
        """
        self._require("truncation", "truncate")
        self._check_open("truncate")
        played = self._p.playback_state.played_ms(item_id)
        if played > 0:
            await self._p.send_input(TruncateItem(item_id, played), "truncate")

    async def send_text(self, text: str) -> None:
        """Add a user text message to the conversation.

        One channel operation: it either happens or raises ``Cancelled`` leaving
        nothing changed. The provider link reports the :class:`SendText` (with the
        item id the session gave it) once it has sent it; subscribers see it then,
        and the transcript records it as a user turn, once.
        """
        self._check_open("send text")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        message = SendText(text, item_id=f"text_{uuid.uuid4().hex[:16]}")
        await self._p.send_input(message, "send text")

    async def send_tool_result(self, call_id: str, output: str, name: str | None = None) -> None:
        """Answer the model's ``ToolCall(call_id)``.

        ``name`` defaults to the tool name of the ``ToolCall`` the session saw. One
        channel operation: it either happens or raises ``Cancelled`` leaving nothing
        changed. Like :meth:`send_text`, the result is published and stored once the
        link has sent it.
        """
        self._check_open("send a tool result")
        if name is None:
            name = self._p.hub.tool_name(call_id)
        await self._p.send_input(ToolResult(call_id, output, name), "send a tool result")

    async def update_instructions(self, instructions: str) -> None:
        """Change the base instructions now, and for every later (re)connect.

        See :func:`voxtrio.runtime.updates.update_instructions`. One channel
        operation: it happens, or raises ``Cancelled`` leaving nothing changed.
        """
        self._require("session_update", "update the instructions")
        self._check_open("update the instructions")
        await updates.update_instructions(self._p, instructions)

    async def update_tools(self, tools: Sequence[Tool | FunctionTool | Callable[..., Any]]) -> None:
        """Replace the session's tools now, and for every later (re)connect.

        See :func:`voxtrio.runtime.updates.update_tools`. One channel operation: it
        happens, or raises ``Cancelled`` leaving nothing changed.
        """
        self._require("session_update", "update the tools")
        self._check_open("update the tools")
        await updates.update_tools(self._p, tools)

    async def end_input(self) -> None:
        """No more audio: the converter flushes its tail and the provider is told.

        One channel operation: it either happens or raises ``Cancelled`` leaving
        nothing changed (the input is still open then). The session keeps running
        until the block exits: replies still arrive, and :meth:`create_reply`,
        :meth:`send_text`, :meth:`send_tool_result` and :meth:`truncate` still
        work; audio, :meth:`commit` and :meth:`clear_input` raise
        ``SessionClosedError``. A capture ends the input by itself when its source
        ends.
        """
        p = self._p
        if p.closed or p.input_ended:
            return
        await p.send_input(EndOfInput(), "end input")
        p.input_ended = True

    # ------------------------------------------------------------------- output

    async def reframe_output(self, rate_hz: int, frame_ms: FrameMs = 20) -> None:
        """Switch the output track to ``rate_hz`` / ``frame_ms`` at a frame boundary.

        Queued audio is drained at the old framing first; nothing is lost or
        repeated and pts keep increasing. One channel operation: it either happens
        or raises ``Cancelled`` leaving nothing changed.

        Raises:
            ValueError: unsupported rate or frame length.
        """
        AudioFormat(rate_hz)  # validate at the call site
        frame_fraction(rate_hz, frame_ms)
        self._check_open("reframe output")
        try:
            await self._p.playback_ctl.send(Reframe(rate_hz, frame_ms))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosedError("cannot reframe output: playback has ended") from None

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of reply item ``item_id`` sent to the output so far."""
        return self._p.playback_state.played_ms(item_id)

    # -------------------------------------------------------------------- stats

    def stats(self) -> SessionStats:
        """A snapshot of the counters: frames and drops per edge, queue depths, lag."""
        p = self._p
        edges = {
            name: EdgeStats(
                c.messages,
                c.frames,
                c.samples,
                c.dropped_frames,
                c.dropped_samples,
                p.queued(name),
                c.audio_ns / 1e9,
            )
            for name, c in p.counters.items()
        }
        return SessionStats(
            edges=edges,
            events=p.hub.delivered,
            subscribers_lagged=tuple(s.lagged_total for s in p.hub.subscribers),
            turns=TurnStats.of(p.turns.metrics, p.playback_state.underruns),
            link_dropped_frames=p.link_dropped_frames,
            link_dropped_samples=p.link_dropped_samples,
        )

    # -------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Stop the session: input, link and playback are cancelled at once.

        Events already queued for subscribers stay readable until the ``async
        with`` block exits; leaving the block waits for the store to flush.
        Idempotent; a checkpoint. Like trio's ``aclose()`` methods it closes even
        when cancelled: the session is closed before the checkpoint that may raise
        ``Cancelled``.
        """
        self._p.close_now()
        await trio.lowlevel.checkpoint()
