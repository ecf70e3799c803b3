"""How the link retries: the policy, and the connect/retry loop around one connection.

Whether a refused handshake or a closed connection is worth another attempt is the
codec's call (``codec.classify_rejection``, ``codec.classify_close``); a connection
decides and raises :class:`Retry` or :class:`Fatal`, and :func:`serve` only counts
attempts, backs off, and reports. When it gives up it returns a :class:`GaveUp`
instead of reporting the final error itself: the link first reports the audio that
will never go out (:meth:`~voxtrio.actors.link.connection.Link.end`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable

import attrs
import trio

from ...messages import Event, SessionReconnecting

__all__ = ["Fatal", "GaveUp", "ReconnectPolicy", "Retry", "serve"]

log = logging.getLogger("voxtrio.link")


@attrs.frozen
class ReconnectPolicy:
    """How the link retries.

    Attributes:
        max_attempts: consecutive failed connection attempts before giving up
            (the counter resets once a connection is up).
        initial_backoff_s: the first retry delay.
        max_backoff_s: the cap of the exponential backoff.
        jitter: each delay is multiplied by a random factor in
            ``[1 - jitter, 1 + jitter]``, so many sessions do not retry in step.
        outage_buffer_s: audio kept while disconnected; older audio is dropped.
        resend_buffer_s: for a provider that resumes its session (Gemini), the
            audio written and not yet confirmed that the link keeps to resend after
            a resumption. Beyond it the oldest is no longer kept: a late (or
            missing) confirmation never makes the link push back, and if the
            connection then drops, the audio not kept is reported as
            ``AudioDropped``. None (the default): ``outage_buffer_s``.
        connect_timeout_s: limit for one connection attempt (TCP + TLS + handshake).
        max_batch_frames: frames sent in one wire message at most.
        keepalive_interval_s: when nothing was received for this long, the link
            sends a websocket ping.
        keepalive_timeout_s: when nothing at all (no pong, no message) arrives
            within this long after the ping was due, the connection counts as lost
            and the link reconnects. So a server that goes silent is noticed at most
            ``keepalive_interval_s + keepalive_timeout_s`` after the last byte it
            sent (plus scheduling delay), even when the link's own writes are stuck
            because the server stopped reading.
        expiry_margin_s: for a provider that ends its sessions at a set time
            (:class:`~voxtrio.codecs.wire.ConnectionExpiry`; OpenAI: 60 minutes),
            how long before the end the link starts looking for a quiet moment --
            no reply in flight, the user not speaking, no transcription or tool
            call outstanding -- to move to a new connection (re-seeded with the
            transcript). Default 60 s. A session shorter than twice the margin
            moves halfway through.
        expiry_floor_s: the latest the link waits for that quiet moment: this
            long before the end it moves anyway. Default 5 s; at most
            ``expiry_margin_s``.

    A connection counts as *up* -- resetting the attempt counter and the backoff --
    only once the provider confirmed it (the codec's ``Ready``, or for a codec that
    does not wait for one, the first server message), not once the link sent its
    connect messages: a server that accepts and hangs up at once is a failed
    attempt, so the backoff grows and ``max_attempts`` holds.
    """

    max_attempts: int = 8
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    jitter: float = 0.3
    outage_buffer_s: float = 5.0
    resend_buffer_s: float | None = None
    connect_timeout_s: float = 10.0
    max_batch_frames: int = 10
    keepalive_interval_s: float = 10.0
    keepalive_timeout_s: float = 10.0
    expiry_margin_s: float = 60.0
    expiry_floor_s: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in (
            "initial_backoff_s",
            "max_backoff_s",
            "outage_buffer_s",
            "connect_timeout_s",
            "expiry_margin_s",
            "expiry_floor_s",
        ):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        resend = self.resend_buffer_s
        if resend is not None and not (resend >= 0 and math.isfinite(resend)):
            raise ValueError(f"resend_buffer_s must be finite and >= 0, got {resend!r}")
        for name in ("keepalive_interval_s", "keepalive_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and value > 0 and math.isfinite(value)
            ):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.expiry_floor_s > self.expiry_margin_s:
            raise ValueError(
                f"expiry_floor_s ({self.expiry_floor_s!r}) must not exceed "
                f"expiry_margin_s ({self.expiry_margin_s!r})"
            )
        if self.max_batch_frames < 1:
            raise ValueError(f"max_batch_frames must be >= 1, got {self.max_batch_frames}")

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """The delay before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))
        return float(base * rng.uniform(1 - self.jitter, 1 + self.jitter))


class Retry(Exception):
    """This connection failed or ended; try again.

    Attributes:
        was_up: it had been established (the attempt counter starts over).
        planned: the connection ended on schedule (goAway, a session time limit):
            no error, no backoff.
    """

    def __init__(self, message: str, *, was_up: bool = False, planned: bool = False) -> None:
        super().__init__(message)
        self.was_up = was_up
        self.planned = planned


class Fatal(Exception):
    """Do not retry; ``code`` is the :class:`~voxtrio.messages.ErrorEvent` code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen
class GaveUp:
    """How a link that gave up for good ended (refused for good, or out of
    retries): the message and code of its final, non-recoverable ``ErrorEvent``
    (the message not redacted yet)."""

    message: str
    code: str


#: One connection's life: ``(attempt, reconnecting)``; ends by raising Retry or Fatal.
Connect = Callable[[int, bool], Awaitable[None]]
#: Reports an error: ``(message, code, recoverable)``.
ReportError = Callable[[str, str, bool], Awaitable[None]]


async def serve(
    connect: Connect,
    *,
    name: str,
    policy: ReconnectPolicy,
    rng: random.Random,
    emit: Callable[[Event], Awaitable[None]],
    error: ReportError,
    redact: Callable[[str], str],
) -> GaveUp:
    """Connect, run, reconnect; returns when the link gives up or is refused for good.

    Returns how it ended; the caller reports the final error (after what was lost:
    see :meth:`~voxtrio.actors.link.connection.Link.end`). A cancellation (the
    session closing) ends it with no verdict.

    ``max_attempts`` bounds the consecutive failed attempts: from the start, the
    first attempt counts; after a lost connection, the reconnect attempts do. A
    planned move (goAway, a session time limit) reconnects at once, with a
    ``SessionReconnecting`` of delay 0 and no error.
    """
    failures = 0  # consecutive failed attempts
    retry = 0  # retries since the start, or since the connection was lost
    reconnecting = False  # a connection was up before
    reason = ""
    planned = False  # the last connection ended on schedule (goAway, time limit)
    delay: float | None = None
    while True:
        if retry:
            if delay is None:
                delay = policy.backoff_s(retry, rng)
            level = logging.INFO if planned else logging.WARNING
            log.log(level, "%s: retry %d in %.2f s (%s)", name, retry, delay, redact(reason))
            await emit(SessionReconnecting(retry, delay, redact(reason)))
            await trio.sleep(delay)
        delay = None
        try:
            await connect(retry, reconnecting)
        except Fatal as exc:
            log.error("%s: %s; not retrying", name, redact(str(exc)))
            return GaveUp(str(exc), exc.code)
        except Retry as exc:
            reason = str(exc)
            planned = exc.planned and exc.was_up
            if exc.was_up:
                reconnecting = True
                failures = 0
                retry = 1
                if exc.planned:
                    delay = 0.0
                else:
                    await error(reason, "connection_lost", True)
                continue
            failures += 1
            if failures >= policy.max_attempts:
                log.error("%s: giving up after %d failed attempts", name, failures)
                return GaveUp(
                    f"giving up on {name} after {failures} failed attempts: {reason}",
                    "connection_failed",
                )
            retry += 1
