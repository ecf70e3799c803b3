"""The session's pipeline: it owns the channels, the counters and the actors' cancel
scopes, starts the actors, and turns whatever they raise into one exception.

::

    capture ─▶ convert ─▶ provider link ─▶ hub ─┬─▶ subscribers (session.subscribe())
                  ▲                              ├─▶ transcript writer (the hub folds)
    send_audio ───┘ (push mode)                  └─▶ playback ─▶ session.output / sink

Private: :class:`~voxtrio.runtime.session.Session` is the facade apps use.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import trio

from ..actors import convert as convert_actor
from ..actors import playback as playback_actor
from ..actors import transcript_writer
from ..actors.base import EdgeCounter, InstructionsSource
from ..actors.capture import Capture
from ..actors.transcript_writer import TranscriptRecorder
from ..audio import AudioFormat, AudioFrame
from ..codecs.transcript import Item, instructions_with_context
from ..codecs.turns import TurnState
from ..errors import SessionClosedError
from ..messages import AudioDropped, EndOfInput, Event, LinkInput, PlaybackInput, UpdateSession
from .hub import EventHub
from .plan import Plan
from .provider import ResumingProvider
from .supervision import as_session_error, one_exception
from .tools import ToolRunner
from .turns import InterruptRequest, TurnDriver

__all__ = ["Pipeline", "Plan", "run_pipeline"]


class Pipeline:
    """The channels, counters and actor scopes of one session."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.hub = EventHub(plan.subscriber_buffer)
        self.playback_state = playback_actor.PlaybackState()
        self.counters = {name: EdgeCounter(name) for name in ("capture", "convert", "playback")}
        self.closed = False
        self.input_ended = False
        self.pts: dict[AudioFormat, int] = {}
        # One per actor task: closing cancels the actors, not the app's code in the
        # ``async with`` block (which runs in the same nursery).
        self._scopes: list[trio.CancelScope] = []
        self.events_tx, self._events_rx = trio.open_memory_channel[Event | InterruptRequest](256)
        # The session's own end (interrupt requests), closed by close_now.
        self.session_events = self.events_tx.clone()
        self._store_err_tx, self._store_err_rx = trio.open_memory_channel[Event](16)
        self.push, self._in_rx = trio.open_memory_channel[AudioFrame | LinkInput](
            plan.audio_buffer
        )
        self._link_tx, self.link_rx = trio.open_memory_channel[LinkInput](plan.audio_buffer)
        self._play_tx, self._play_rx = trio.open_memory_channel[PlaybackInput](256)
        self._out_tx, self.output = trio.open_memory_channel[AudioFrame](plan.audio_buffer)
        # The session's own end (reframes), cloned before the hub runs: the hub closes
        # its end when it ends.
        self.playback_ctl = self._play_tx.clone()
        self.tool_runner = ToolRunner(
            plan.tools,
            partial(self.send_input, what="send a tool result"),
            continue_reply=not plan.provider.capabilities.replies_after_tool_result,
        )
        self.hub.observe(self.tool_runner.notice)
        #: audio the provider link dropped (its outage buffer, or what it never
        #: delivered when it gave up), from the AudioDropped events it reported
        self.link_dropped_frames = 0
        self.link_dropped_samples = 0
        self.hub.observe(self._count_link_drops)
        #: the base instructions now (``Session.update_instructions`` changes them),
        #: and the transcript the current connection's instructions were given
        self.base_instructions = plan.instructions
        self.connect_items: tuple[Item, ...] = ()
        # Turn-taking: the hub's decisions reach the link through a channel that
        # never waits (a cut is rare and small; the hub must not wait on the link).
        self._turn_tx, self._turn_rx = trio.open_memory_channel[LinkInput](math.inf)
        self._turn_link = self._link_tx.clone()  # now: convert may close its own early
        self.turns = TurnState(interruptible=plan.interruptible)
        self.hub.turns = TurnDriver(
            self.turns, self.playback_state, plan.provider.capabilities, self._turn_tx
        )

    def _count_link_drops(self, event: Event) -> None:
        """The link counts its drops itself and reports them; the pipeline's own edges
        (capture, playback) are counted where they drop, so only the others add here."""
        if type(event) is AudioDropped and event.edge not in self.counters:
            self.link_dropped_frames += event.frames
            self.link_dropped_samples += event.samples

    def queued(self, edge: str) -> int:
        """Messages (or, for playback, frames) waiting on ``edge`` now."""
        if edge == "capture":
            return self.push.statistics().current_buffer_used
        if edge == "convert":
            return self._link_tx.statistics().current_buffer_used
        return len(self.playback_state.queued)

    def close_now(self) -> None:
        """Stop input, link and playback at once (synchronous, idempotent)."""
        self.closed = True
        self.push.close()
        self.session_events.close()
        for scope in self._scopes:
            scope.cancel()

    def close_turn_link(self) -> None:
        """The turn controls' end of the link channel, if its actor never ran."""
        self._turn_link.close()

    async def send_input(self, msg: AudioFrame | LinkInput, what: str) -> None:
        """One send down the input path: it happens, or raises (``Cancelled``,
        ``SessionClosedError``) having changed nothing."""
        try:
            await self.push.send(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosedError(f"cannot {what}: the session is closed") from None

    # ------------------------------------------------------------------ starting

    async def start(self, outer: trio.Nursery, inner: trio.Nursery) -> None:
        """Start every actor: the writer and the hub in ``outer`` (they outlive the
        audio path, so the last events reach everyone and are written), the rest in
        ``inner``."""
        plan = self.plan
        recorder: TranscriptRecorder = await outer.start(
            partial(
                self._supervised,
                "store",
                partial(
                    transcript_writer.run,
                    store=plan.store,
                    session_id=plan.session_id,
                    errors=self._store_err_tx,
                    close_timeout_s=plan.close_timeout_s,
                ),
            )
        )
        hub_run = partial(
            self.hub.run,
            self._events_rx,
            recorder=recorder,
            store_errors=self._store_err_rx,
            playback=self._play_tx,
        )
        await outer.start(partial(self._supervised, "hub", hub_run), name="voxtrio.hub")
        await inner.start(self._stoppable, "playback", self._run_playback, name="voxtrio.playback")
        runner = partial(self.tool_runner.run, self.events_tx.clone())
        await inner.start(self._stoppable, "tools", runner, name="voxtrio.tools")
        await inner.start(self._stoppable, "link", self._run_link, name="voxtrio.link")
        convert = partial(
            convert_actor.run,
            self._in_rx,
            self._link_tx,
            target=plan.provider.input_format,
            frame_ms=plan.provider.input_frame_ms,
            counter=self.counters["convert"],
        )
        await inner.start(self._stoppable, "convert", convert, name="voxtrio.convert")
        if plan.tools.in_band and plan.tools.tools:
            # A provider whose codecs cannot be given tools hears of them in band.
            self.push.send_nowait(UpdateSession(tools=plan.tools.declared))
        await inner.start(self._stoppable, "turns", self._run_turn_controls, name="voxtrio.turns")
        if plan.capture is not None:
            await inner.start(
                self._stoppable, "capture", self._run_capture, plan.capture, name="voxtrio.capture"
            )

    async def _supervised(
        self,
        name: str,
        fn: Callable[..., Awaitable[None]],
        *args: Any,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run actor ``name``; a bug in it comes out as one ``SessionError(name)``."""
        try:
            await fn(*args, task_status=task_status)
        except BaseException as exc:
            converted = as_session_error(name, exc)
            if converted is exc:
                raise
            raise converted from converted.__cause__

    async def _stoppable(
        self,
        name: str,
        fn: Callable[..., Awaitable[None]],
        *args: Any,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run an actor in a cancel scope of its own, which closing the session cancels.

        The app's code in the ``async with`` block runs in the session's nursery too;
        so ``Session.aclose`` (or the link giving up) stops the actors without
        cancelling the app, which can still read what subscriptions hold.
        """
        with trio.CancelScope() as scope:
            self._scopes.append(scope)
            if self.closed:
                scope.cancel()
            await self._supervised(name, fn, *args, task_status=task_status)

    async def _run_turn_controls(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward the hub's turn controls (cancel, truncate) to the link."""
        with self._turn_rx, self._turn_link as link:
            task_status.started()
            async for msg in self._turn_rx:
                try:
                    await link.send(msg)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # the link is gone: the session is closing

    async def _run_capture(
        self, capture: Capture, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the capture, then end the input segment, in order after its last chunk."""
        send = self.push.clone()
        with send, self.events_tx.clone() as events:
            counter = self.counters["capture"]
            await capture.run(send.clone(), events=events, counter=counter, task_status=task_status)
            if not self.input_ended:
                await send.send(EndOfInput())
                self.input_ended = True

    async def _run_link(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the provider link. A link that ends by itself (rejected key, out of
        retries, after reporting a non-recoverable ErrorEvent) ends the session: its
        actors stop, and the app's subscriptions and output end once read."""
        plan = self.plan
        # A clone: a link that ends by itself closes it, but convert's sends must not
        # break on that (convert is cancelled right after, by close_now).
        receive, events = self.link_rx.clone(), self.events_tx.clone()
        instructions = self._instructions_source()
        provider = plan.link_provider or plan.provider  # it declares the session's tools
        if provider.capabilities.resumption:
            # Only a provider that resumes takes the base instructions (the
            # Provider protocol of the others has no such argument).
            resuming = cast(ResumingProvider, provider)
            await resuming.run_link(
                receive,
                events,
                instructions=instructions,
                base_instructions=instructions_with_context(plan.instructions, ()),
                live_input=plan.live_input,
                task_status=task_status,
            )
        else:
            await provider.run_link(
                receive,
                events,
                instructions=instructions,
                live_input=plan.live_input,
                task_status=task_status,
            )
        self.close_now()

    def _instructions_source(self) -> InstructionsSource:
        """The hub's instructions of :attr:`base_instructions` (as they are at each
        connect), noting the transcript they carried (:attr:`connect_items`)."""
        self.hub.instructions_source(self.base_instructions)  # validate now

        async def source() -> str:
            text = await self.hub.instructions_source(self.base_instructions)()
            self.connect_items = self.hub.items  # no checkpoint since the fold was read
            return text

        return source

    async def _run_playback(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        plan = self.plan
        with self.events_tx.clone() as events:
            await playback_actor.run(
                self._play_rx,
                plan.sink if plan.sink is not None else self._out_tx,
                reply_rate=plan.provider.output_format.sample_rate,
                output=plan.output_format,
                frame_ms=plan.output_frame_ms,
                realtime=plan.realtime_playback,
                max_queue_s=plan.max_playback_queue_s,
                state=self.playback_state,
                events=events,
                counter=self.counters["playback"],
                task_status=task_status,
            )


@asynccontextmanager
async def run_pipeline(plan: Plan) -> AsyncIterator[Pipeline]:
    """Run a pipeline for the ``async with`` block; one exception comes out.

    See :mod:`voxtrio.runtime.supervision` for which one.
    """
    pipeline = Pipeline(plan)
    body_exc: BaseException | None = None
    try:
        async with trio.open_nursery() as outer:
            # Whatever happens while starting, the hub's input must end with the block.
            with pipeline.output, pipeline.events_tx, pipeline.playback_ctl, pipeline.link_rx:
                async with trio.open_nursery() as inner:
                    await pipeline.start(outer, inner)
                    pipeline.events_tx.close()
                    pipeline.hub.open()
                    try:
                        yield pipeline
                    except BaseException as exc:
                        body_exc = exc
                        raise
                    finally:
                        pipeline.close_now()
                        pipeline.playback_ctl.close()
                        pipeline.close_turn_link()
    except BaseException as exc:
        to_raise = one_exception(exc, body_exc)
    else:
        return
    # Raised outside the handler, so the group is not chained onto it as context.
    raise to_raise
