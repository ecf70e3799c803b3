"""The session: one nursery that runs capture, convert, provider link, event hub,
transcript store and playback, wired with bounded trio memory channels.

::

    capture ─▶ convert ─▶ provider link ─▶ hub ─┬─▶ subscribers (session.subscribe())
                  ▲                              ├─▶ transcript store
    send_audio ───┘ (push mode)                  └─▶ playback ─▶ session.output / sink

Supervision: faults of the outside world arrive as ``ErrorEvent`` messages and the
session goes on; bugs (exceptions) propagate out of ``open_session`` through the
nursery. No task outlives the ``async with`` block.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from ..actors import convert as convert_actor
from ..actors import playback as playback_actor
from ..actors import transcript_store as store_actor
from ..actors.base import EdgeCounter
from ..actors.capture import Capture
from ..actors.transcript_store import MemoryTranscriptStore, StoreInput, TranscriptStore
from ..audio import AudioFormat, AudioFrame, FrameMs, PcmInput, frame_fraction
from ..errors import SessionClosedError, UnsupportedError
from ..messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    Event,
    LinkInput,
    PlaybackInput,
    Reframe,
    ReplyInterrupted,
    SendText,
    ToolResult,
    TruncateItem,
)
from .hub import EventHub, Subscription
from .provider import Provider

__all__ = ["EdgeStats", "Session", "SessionClosedError", "SessionStats", "open_session"]


@attrs.frozen
class EdgeStats:
    """Counters of one pipeline edge (what its sender sent and dropped)."""

    messages: int
    frames: int
    samples: int
    dropped_frames: int
    dropped_samples: int
    queued: int


@attrs.frozen
class SessionStats:
    """A snapshot of the session's counters.

    Attributes:
        edges: per edge (``capture``, ``convert``, ``playback``) what was sent,
            dropped, and is queued now.
        events: events routed by the hub.
        subscribers_lagged: per live subscriber, events it missed so far.
    """

    edges: dict[str, EdgeStats]
    events: int
    subscribers_lagged: tuple[int, ...]

    @property
    def frames_in(self) -> int:
        return self.edges["capture"].frames

    @property
    def frames_sent(self) -> int:
        return self.edges["convert"].frames

    @property
    def frames_out(self) -> int:
        return self.edges["playback"].frames

    @property
    def dropped_frames(self) -> int:
        return sum(e.dropped_frames for e in self.edges.values())


class Session:
    """A running voice session; made by :func:`open_session`, valid inside its block."""

    def __init__(
        self,
        *,
        provider: Provider,
        session_id: str,
        store: TranscriptStore,
        hub: EventHub,
        app_events: trio.MemorySendChannel[StoreInput],
        push: trio.MemorySendChannel[AudioFrame | LinkInput],
        playback_ctl: trio.MemorySendChannel[PlaybackInput],
        output: trio.MemoryReceiveChannel[AudioFrame],
        counters: dict[str, EdgeCounter],
        queues: dict[str, Callable[[], int]],
        playback_state: playback_actor.PlaybackState,
        push_mode: bool,
    ) -> None:
        self._provider = provider
        self._session_id = session_id
        self._store = store
        self._hub = hub
        self._app_events = app_events
        self._push = push
        self._playback_ctl = playback_ctl
        self._output = output
        self._counters = counters
        self._queues = queues
        self._playback_state = playback_state
        self._push_mode = push_mode
        # One per actor task: closing cancels the actors, not the app's code in the
        # ``async with`` block (which runs in the same nursery).
        self._actor_scopes: list[trio.CancelScope] = []
        self._closed = False
        self._input_ended = False
        self._pts: dict[AudioFormat, int] = {}

    # ----------------------------------------------------------------- properties

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def store(self) -> TranscriptStore:
        """The transcript store; ``store.items(session.session_id)`` reads what it holds."""
        return self._store

    @property
    def input_format(self) -> AudioFormat:
        """The format the provider receives (after conversion)."""
        return self._provider.input_format

    @property
    def output(self) -> trio.MemoryReceiveChannel[AudioFrame]:
        """Playback frames at the output track's format, paced; ends with the session.

        Read it, or give ``open_session`` a ``sink``: playback waits on this
        channel, and beyond ``max_playback_queue_s`` queued audio is dropped and
        reported.
        """
        return self._output

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------- events

    def subscribe(self, max_buffer: int | None = None) -> Subscription:
        """A new bounded receive channel of every event from now on.

        Subscriptions made before the first checkpoint inside the ``async with``
        block see every event of the session, ``SessionConnected`` included.

        A subscriber that falls more than ``max_buffer`` events behind misses events
        and then receives ``SubscriberLagged(missed=n)`` where the gap is; nobody
        else waits for it.
        """
        if max_buffer is not None and max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        return self._hub.subscribe(max_buffer)

    # -------------------------------------------------------------------- input

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise SessionClosedError(f"cannot {what}: the session is closed")

    def _check_input_open(self, what: str) -> None:
        """Audio input and its segments end at :meth:`end_input` (or when the
        capture ends); replies, text and tool results go on until the session closes."""
        self._check_open(what)
        if self._input_ended:
            raise SessionClosedError(f"cannot {what}: the audio input has ended")

    async def send_audio(self, pcm: PcmInput, fmt: AudioFormat) -> None:
        """Push audio in push mode (``capture=None``); waits if the pipeline is full.

        Any supported format; it is converted to the provider's format. Samples are
        copied, so the caller may reuse its buffer.

        Raises:
            ValueError: ``pcm`` does not match ``fmt``.
            RuntimeError: the session has a capture of its own.
            SessionClosedError: after :meth:`aclose` or :meth:`end_input`.
        """
        if not self._push_mode:
            raise RuntimeError("send_audio() is for push mode; this session has a capture")
        if not isinstance(fmt, AudioFormat):
            raise ValueError(f"fmt must be an AudioFormat, got {fmt!r}")
        self._check_input_open("send audio")
        pts = self._pts.get(fmt, 0)
        frame = AudioFrame.from_pcm(pcm, fmt, pts)
        if not frame.samples:
            return
        self._pts[fmt] = pts + frame.samples
        await self._send_input(frame, "send audio")
        c = self._counters["capture"]
        c.messages += 1
        c.frames += 1
        c.samples += frame.samples

    async def _send_input(self, msg: AudioFrame | LinkInput, what: str) -> None:
        try:
            await self._push.send(msg)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosedError(f"cannot {what}: the session is closed") from None

    async def _send_and_record(self, msg: SendText | ToolResult, what: str) -> None:
        """Send ``msg`` to the provider, then publish it: the app's own turn goes to
        the transcript store and to subscribers like the provider's events."""
        await self._send_input(msg, what)
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._app_events.send(msg)

    def _require(self, capability: str, what: str) -> None:
        if not getattr(self._provider.capabilities, capability):
            raise UnsupportedError(
                f"cannot {what}: the {self._provider.name} provider does not support it"
            )

    async def commit(self) -> None:
        """End the input segment (flushing the converter) and commit it.

        Raises:
            UnsupportedError: the provider has no manual commit.
        """
        self._require("manual_commit", "commit")
        self._check_input_open("commit")
        await self._send_input(CommitInput(), "commit")

    async def clear_input(self) -> None:
        """Discard the input segment in progress.

        Raises:
            UnsupportedError: the provider cannot clear its input.
        """
        self._require("clear_input", "clear input")
        self._check_input_open("clear input")
        await self._send_input(ClearInput(), "clear input")

    async def create_reply(self, instructions: str | None = None) -> None:
        """Ask the provider to reply now."""
        self._check_open("create a reply")
        await self._send_input(CreateReply(instructions), "create a reply")

    async def cancel_reply(self, response_id: str | None = None) -> None:
        """Cancel the reply in progress and drop its queued audio.

        Raises:
            UnsupportedError: the provider cannot cancel a reply.
        """
        self._require("cancel_reply", "cancel a reply")
        if self._closed:
            raise SessionClosedError("cannot cancel a reply: the session is closed")
        self._playback_state.cancel(response_id)  # queued frames go at once
        # Playback also drops what its resampler and framer hold of the reply, in order
        # with the audio (else that tail would open the next reply).
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._playback_ctl.send(ReplyInterrupted(response_id))  # else: ended
        await self._send_input(CancelReply(response_id), "cancel a reply")

    async def truncate(self, item_id: str) -> None:
        """Tell the provider how much of ``item_id`` was actually played.

        Raises:
            UnsupportedError: the provider cannot truncate a reply item.
        """
        self._require("truncation", "truncate")
        self._check_open("truncate")
        played = self._playback_state.played_ms(item_id)
        if played > 0:  # a truncate at 0 ms is rejected by providers
            await self._send_input(TruncateItem(item_id, played), "truncate")

    async def send_text(self, text: str) -> None:
        """Add a user text message to the conversation.

        It is also published to subscribers (as the :class:`SendText` sent, with the
        item id the session gave it) and recorded in the transcript as a user turn.
        """
        self._check_open("send text")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        message = SendText(text, item_id=f"text_{uuid.uuid4().hex[:16]}")
        await self._send_and_record(message, "send text")

    async def send_tool_result(self, call_id: str, output: str) -> None:
        """Answer the model's ``ToolCall(call_id)``; the result is also stored in the
        transcript and published to subscribers."""
        self._check_open("send a tool result")
        await self._send_and_record(ToolResult(call_id, output), "send a tool result")

    async def end_input(self) -> None:
        """No more audio: the converter flushes its tail and the provider is told.

        The session keeps running until the block exits: replies still arrive, and
        :meth:`create_reply`, :meth:`send_text`, :meth:`send_tool_result` and
        :meth:`truncate` still work; audio, :meth:`commit` and :meth:`clear_input`
        raise ``SessionClosedError``. A capture ends the input by itself when its
        source ends.
        """
        if self._closed or self._input_ended:
            return
        self._input_ended = True
        await self._send_input(EndOfInput(), "end input")

    # ------------------------------------------------------------------- output

    async def reframe_output(self, rate_hz: int, frame_ms: FrameMs = 20) -> None:
        """Switch the output track to ``rate_hz`` / ``frame_ms`` at a frame boundary.

        Queued audio is drained at the old framing first; nothing is lost or
        repeated and pts keep increasing.

        Raises:
            ValueError: unsupported rate or frame length.
        """
        AudioFormat(rate_hz)  # validate at the call site
        frame_fraction(rate_hz, frame_ms)
        if self._closed:
            raise SessionClosedError("cannot reframe output: the session is closed")
        try:
            await self._playback_ctl.send(Reframe(rate_hz, frame_ms))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise SessionClosedError("cannot reframe output: playback has ended") from None

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of reply item ``item_id`` sent to the output so far."""
        return self._playback_state.played_ms(item_id)

    # -------------------------------------------------------------------- stats

    def stats(self) -> SessionStats:
        """A snapshot of the counters: frames and drops per edge, queue depths, lag."""
        edges = {
            name: EdgeStats(
                c.messages,
                c.frames,
                c.samples,
                c.dropped_frames,
                c.dropped_samples,
                self._queues[name](),
            )
            for name, c in self._counters.items()
        }
        return SessionStats(
            edges=edges,
            events=self._hub.delivered,
            subscribers_lagged=tuple(s.lagged_total for s in self._hub.subscribers),
        )

    # -------------------------------------------------------------------- close

    async def aclose(self) -> None:
        """Stop the session: input, link and playback are cancelled at once.

        Events already queued for subscribers stay readable until the ``async
        with`` block exits; leaving the block waits for the store to flush.
        Idempotent; a checkpoint.
        """
        self._close_now()
        await trio.lowlevel.checkpoint()

    def _close_now(self) -> None:
        self._closed = True
        self._push.close()
        self._app_events.close()
        for scope in self._actor_scopes:
            scope.cancel()


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

    Raises:
        ValueError: bad arguments, or a provider that cannot start (e.g.
            ``MissingApiKeyError``), at the call.
        TypeError: ``provider`` or ``store`` of the wrong kind.
    """
    if not isinstance(provider, Provider):
        raise TypeError(f"provider must implement voxtrio's Provider protocol, got {provider!r}")
    if store is None:
        store = MemoryTranscriptStore()
    else:
        store_actor.check_store(store)
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
    live = live_input if live_input is not None else (capture.live if capture else True)
    sid = session_id if session_id is not None else uuid.uuid4().hex
    store_actor.check_session_id(sid)

    counters = {name: EdgeCounter(name) for name in ("capture", "convert", "playback")}
    hub = EventHub(subscriber_buffer)
    playback_state = playback_actor.PlaybackState()

    # Events and snapshot requests share one channel into the hub, so a snapshot
    # the link asks for on reconnect is answered after every event it sent before.
    events_tx, events_rx = trio.open_memory_channel[StoreInput](256)
    store_tx, store_rx = trio.open_memory_channel[StoreInput](256)
    store_err_tx, store_err_rx = trio.open_memory_channel[Event](16)
    in_tx, in_rx = trio.open_memory_channel[AudioFrame | LinkInput](audio_buffer)
    link_tx, link_rx = trio.open_memory_channel[LinkInput](audio_buffer)
    play_tx, play_rx = trio.open_memory_channel[PlaybackInput](256)
    out_tx, out_rx = trio.open_memory_channel[AudioFrame](audio_buffer)
    queues: dict[str, Callable[[], int]] = {
        "capture": lambda: in_tx.statistics().current_buffer_used,
        "convert": lambda: link_tx.statistics().current_buffer_used,
        "playback": lambda: len(playback_state.queued),
    }
    playback_sink: playback_actor.Sink = sink if sink is not None else out_tx

    snapshot_tx = events_tx.clone()  # the link's; closed when the link ends
    app_events = events_tx.clone()  # the session's own, for tool results
    playback_ctl = play_tx.clone()  # before the hub runs: it closes play_tx when it ends
    instructions_source = store_actor.instructions_source(snapshot_tx, instructions)

    async with trio.open_nursery() as outer:
        # The store and the hub outlive the audio path so that the last events reach
        # everyone and are written; leaving the block waits for the store's flush.
        await outer.start(
            partial(
                store_actor.run,
                store_rx,
                store=store,
                session_id=sid,
                errors=store_err_tx,
                close_timeout_s=close_timeout_s,
            )
        )
        await outer.start(
            partial(hub.run, events_rx, store=store_tx, store_errors=store_err_rx, playback=play_tx)
        )
        # Whatever happens while starting, the hub's input must end with the block.
        with out_rx, events_tx, snapshot_tx, app_events, playback_ctl:
            async with trio.open_nursery() as inner:
                session = Session(
                    provider=provider,
                    session_id=sid,
                    store=store,
                    hub=hub,
                    app_events=app_events,
                    push=in_tx,
                    playback_ctl=playback_ctl,
                    output=out_rx,
                    counters=counters,
                    queues=queues,
                    playback_state=playback_state,
                    push_mode=capture is None,
                )
                actor = partial(_stoppable, session)
                await inner.start(
                    actor,
                    _run_playback,
                    play_rx,
                    playback_sink,
                    provider.output_format.sample_rate,
                    out_fmt,
                    output_frame_ms,
                    realtime_playback,
                    max_playback_queue_s,
                    playback_state,
                    events_tx.clone(),
                    counters["playback"],
                )
                await inner.start(
                    actor,
                    _run_link,
                    provider,
                    link_rx,
                    events_tx.clone(),
                    instructions_source,
                    snapshot_tx,
                    session,
                    live,
                )
                await inner.start(
                    actor,
                    partial(
                        convert_actor.run,
                        in_rx,
                        link_tx,
                        target=provider.input_format,
                        frame_ms=provider.input_frame_ms,
                        counter=counters["convert"],
                    ),
                )
                if capture is not None:
                    await inner.start(
                        actor,
                        _run_capture,
                        capture,
                        in_tx.clone(),
                        session,
                        events_tx.clone(),
                        counters["capture"],
                    )
                events_tx.close()
                hub.open()
                try:
                    yield session
                finally:
                    session._close_now()
                    session._playback_ctl.close()


async def _stoppable(
    session: Session,
    fn: Callable[..., Awaitable[None]],
    *args: Any,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an actor in a cancel scope of its own, which closing the session cancels.

    The app's code in the ``async with`` block runs in the session's nursery too; so
    :meth:`Session.aclose` (or the link giving up) stops the actors without cancelling
    the app, which can still read what subscriptions hold, then sees them end.
    """
    with trio.CancelScope() as scope:
        session._actor_scopes.append(scope)
        if session._closed:
            scope.cancel()
        await fn(*args, task_status=task_status)


async def _run_capture(
    capture: Capture,
    send: trio.MemorySendChannel[AudioFrame | LinkInput],
    session: Session,
    events: trio.MemorySendChannel[Event],
    counter: EdgeCounter,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the capture, then end the input segment, in order after its last chunk."""
    with send:
        await capture.run(send.clone(), events=events, counter=counter, task_status=task_status)
        if not session._input_ended:
            session._input_ended = True
            await send.send(EndOfInput())


async def _run_link(
    provider: Provider,
    receive: trio.MemoryReceiveChannel[LinkInput],
    events: trio.MemorySendChannel[Event],
    instructions: Callable[[], Awaitable[str]],
    snapshots: trio.MemorySendChannel[StoreInput],
    session: Session,
    live_input: bool,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the provider link. A link that ends by itself (rejected key, out of
    retries, after reporting a non-recoverable ErrorEvent) ends the session: its
    actors stop, and the app's subscriptions and output end once read."""
    with snapshots:
        await provider.run_link(
            receive,
            events,
            instructions=instructions,
            live_input=live_input,
            task_status=task_status,
        )
    session._close_now()


async def _run_playback(
    receive: trio.MemoryReceiveChannel[PlaybackInput],
    sink: playback_actor.Sink,
    reply_rate: int,
    output: AudioFormat,
    frame_ms: FrameMs,
    realtime: bool,
    max_queue_s: float,
    state: playback_actor.PlaybackState,
    events: trio.MemorySendChannel[Event],
    counter: EdgeCounter,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with events:
        await playback_actor.run(
            receive,
            sink,
            reply_rate=reply_rate,
            output=output,
            frame_ms=frame_ms,
            realtime=realtime,
            max_queue_s=max_queue_s,
            state=state,
            events=events,
            counter=counter,
            task_status=task_status,
        )
