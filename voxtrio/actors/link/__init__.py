"""The provider link: one websocket actor shared by every realtime provider.

It owns the connection to the provider and nothing provider-specific: a sans-IO
:class:`~voxtrio.codecs.wire.WireCodec` turns link inputs into wire messages and wire
messages into events and link signals. Split by job:

* :mod:`.outbox` -- what waits to go out, in order; the outage budget for live
  audio; what went out unconfirmed, kept for a resumed session (pure but for its
  wake-up).
* :mod:`.transport` -- the websocket: wsproto over a trio stream the link owns.
* :mod:`.retry` -- the reconnect policy and the connect/retry loop.
* :mod:`.connection` -- one connection's life: connect messages, reader, writer,
  and the moves (goAway, a session's time limit).
* :mod:`.activity` -- what a connection has in flight, so a move cuts nothing short.
* :mod:`.guard` -- ``ws://`` only to the loopback unless allowed; the filter that
  takes the link's secrets out of every log record on the path.

A connection counts as up once the provider confirmed it (``Ready``, or the first
server message for a codec that does not wait for one); the keepalive drops a
connection on which nothing arrived for ``keepalive_interval_s +
keepalive_timeout_s`` (see :class:`ReconnectPolicy`).

Life of a link::

    connect ─▶ send connect_messages(instructions(), resumption handle) ─▶ [wait for
    Ready if the codec asks] ─▶ stream the outbox ─┬─ server closes / network error
                                │  ─▶ ErrorEvent (recoverable) ─▶ SessionReconnecting
                                │  ─▶ backoff ─▶ connect again, instructions
                                │  re-fetched (they carry the transcript so far)
                                │  ─▶ SessionReconnected
                                ├─ GoAway from the server ─▶ SessionReconnecting
                                │  (delay 0, no error) ─▶ connect again at once
                                ├─ ConnectionExpiry (the session's time limit)
                                │  ─▶ from expiry_margin_s before it, the first
                                │  quiet moment (expiry_floor_s before it at the
                                │  latest) ─▶ the same move, "session_expiring";
                                │  a close once that window opened is the
                                │  scheduled end ("session_expired"), no fault
                                └─ refused for good (the codec's verdict on the
                                   HTTP status or close code), or out of retries
                                   ─▶ AudioDropped for the audio never delivered
                                   (if any) ─▶ one ErrorEvent (not recoverable),
                                   no retry, the link ends

**Moves** (goAway, a session's time limit) close the old connection before
opening the new one. The writer first stops at an input boundary, so every input
is wholly written on the old connection (and reaches the server ahead of the close
frame) or waits for the new one: a move loses and repeats nothing, and audio keeps
buffering in the outbox while the new connection is set up (a few ms against the
loopback). Opening the new connection first would save that gap but run two
sessions at once: with resumption, the handle the new one resumes from is only
final once the old one stops taking input (a session forked at the handle would
lose what the old one consumed after it); without it (OpenAI), the transcript that
seeds the new session would miss whatever the old one was still doing. The
expiry move waits for a quiet moment (see
:class:`~voxtrio.actors.link.activity.Activity`) for the same reason.

Every input waits in an ordered outbox and leaves it only once all of its wire
messages were written, so one that failed to go out is written on the next
connection. Controls are never dropped. While disconnected, live audio beyond
the outage buffer is dropped oldest first, counted and reported as
``AudioDropped(edge="link_buffer")``. For a provider that resumes sessions
(``capabilities.resumption``), written inputs are kept until the provider
reports them consumed, and a resumed connection gets exactly the unconsumed
ones first; a connection that does not resume gets none of them again (see
:mod:`voxtrio.actors.link.outbox` for the rule and why). Written audio beyond
``ReconnectPolicy.resend_buffer_s`` is no longer kept (a late confirmation never
makes the link push back); if a resumed connection misses it, it is reported as
``AudioDropped(edge="link_buffer")`` at the next connection attempt.

A close the server starts loses nothing on the wire: what the link wrote before
it saw the close frame reaches the server, the rest stays in the outbox. What
the server sent before its close reaches ``events``. An abrupt TCP drop can lose
what the kernel had but the server never read -- unless the provider resumes
and reports what it consumed. Every way out closes the socket; on cancellation
the link sends a close frame and waits a bounded time for the reply.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio

from ...codecs.wire import WireCodec
from ...messages import Event, LinkInput
from ..base import InstructionsSource
from .connection import Link
from .guard import secrets_redacted
from .retry import ReconnectPolicy, serve
from .transport import ConnectTarget

__all__ = ["ConnectTarget", "ReconnectPolicy", "run"]


async def run(
    receive: trio.MemoryReceiveChannel[LinkInput],
    events: trio.MemorySendChannel[Event],
    *,
    name: str,
    codec_factory: Callable[[], WireCodec],
    target: ConnectTarget,
    instructions: InstructionsSource,
    policy: ReconnectPolicy | None = None,
    seed: int | None = None,
    live_input: bool = True,
    base_instructions: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a provider link until cancelled, refused for good, or out of retries.

    Args:
        receive: converted audio (``FrameBatch``) and controls, in order.
        events: where decoded events, errors and connection events go.
        name: the provider's name, for events and messages.
        codec_factory: makes a fresh codec for each connection.
        target: URL, headers and secrets.
        instructions: fetched on every (re)connect.
        policy: reconnect and buffering policy.
        seed: seeds the backoff jitter (tests).
        live_input: the audio is live and cannot wait (drop the oldest beyond
            ``policy.outage_buffer_s`` while disconnected); False: it can wait, so
            the link pushes back instead and never drops by the outage buffer
            (audio beyond ``policy.resend_buffer_s`` that a resumed connection
            missed is still reported dropped).
        base_instructions: the instructions without the transcript: sent instead
            of ``instructions()`` on a connection that resumes the provider's
            session (it kept the conversation). None: ``instructions()`` always.

    What waits, what is dropped and what is resent, and what a close loses: see
    the module docstring.

    **Sent once, reported when sent.** A :class:`~voxtrio.messages.SendText` or
    :class:`~voxtrio.messages.ToolResult` is emitted on ``events`` (the same object)
    right after it was written to the websocket -- not when it was queued, and not
    again when a resumed connection writes it a second time. So a text queued
    during an outage enters the transcript once, when it reaches the model, and is
    not folded into the reconnect instructions as a past turn before it did. (If the
    link is cancelled between the write and the emit, the model has it and the
    events do not: the session is ending then.)

    Reports readiness at once: audio sent before the first connection is up waits
    in the outbox. Returns after a non-recoverable ``ErrorEvent`` (refused for good,
    out of retries). Closes ``events`` on exit.

    **Giving up loses nothing silently.** Before that final error, the input audio
    the link took or was given and will never deliver -- waiting in the outbox,
    kept to be resent, held while the outbox was full, or waiting in ``receive``
    -- is reported as one ``AudioDropped(edge="link_buffer")`` with its exact
    frames and samples (see :meth:`~voxtrio.actors.link.connection.Link.end`).
    Audio still upstream (converting, or sent into ``receive`` while the session
    shuts down) is not counted. A deliberate close (the session closing, which
    cancels the link) reports nothing: the app chose to stop.
    """
    # (Long only for its docstring, which is the link's contract with the session.)
    link = Link(
        name=name,
        codec_factory=codec_factory,
        target=target,
        events=events,
        instructions=instructions,
        policy=policy or ReconnectPolicy(),
        live_input=live_input,
        base_instructions=base_instructions,
    )
    with events, receive, secrets_redacted(target.secrets):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.pump, receive)
            task_status.started()
            verdict = await serve(
                link.connection,
                name=name,
                policy=link.policy,
                rng=random.Random(seed),
                emit=link.emit,
                error=link.error,
                redact=target.redact,
            )
            nursery.cancel_scope.cancel()
        await link.end(verdict, receive)  # the pump has stopped
