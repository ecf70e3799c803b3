"""Turn-taking decisions, sans-IO: when the agent is cut off, and what each turn cost.

:class:`TurnState` is fed the session's events in order (with the time each was
seen, on whatever clock the caller uses) and answers with decisions; it does no I/O
and knows no provider. The runtime carries the decisions out: it stops playback,
sends ``CancelReply`` / ``TruncateItem`` and publishes the events.

Rules, in one place:

* A reply is *open* from its first sign (``ReplyStarted`` or its first audio) until
  playback reported it played (``ReplyPlayed``): while it is generated *or* still
  playing, the caller's speech (``SpeechStarted``) cuts it -- unless it was made not
  interruptible. :meth:`TurnState.interrupt` (the app) cuts it either way, and so does
  the provider saying it stopped the reply (``ReplyInterrupted``), which is also the
  only cut of a not-interruptible reply the provider already stopped generating.
* A cut sends ``response.cancel`` only while the reply is still generated (not after
  its ``ReplyDone``), at most once per reply.
* Late audio of a cut reply is refused by response id (:meth:`TurnState.accept_audio`).
* The truncation position is what playback actually handed to the output, clamped to
  what was received of the item; none at all when nothing of it was played
  (:meth:`TurnState.truncate_ms`).
* One :class:`~voxtrio.messages.TurnMetrics` per reply, when it was played out.
"""

from __future__ import annotations

import collections
import math
from fractions import Fraction
from typing import Literal

import attrs

from ..messages import TurnMetrics

__all__ = ["Cut", "TurnState", "percentile"]

CutReason = Literal["speech", "app", "provider"]


@attrs.frozen
class Cut:
    """A decision to stop reply ``response_id`` now.

    Attributes:
        cancel: the reply is still being generated: ask the provider to cancel it.
        reason: who cut it (the caller's speech, the app, the provider).
    """

    response_id: str | None
    item_id: str | None
    cancel: bool
    reason: CutReason


@attrs.define
class _Reply:
    response_id: str | None
    interruptible: bool
    stopped_at: float | None  # the end of the user speech this reply answers
    item_id: str | None = None
    generating: bool = True
    received_s: dict[str, Fraction] = attrs.Factory(dict)
    first_audio_at: float | None = None
    cut: Cut | None = None
    cut_played_ms: int | None = None


class TurnState:
    """The session's turn-taking state (see the module docstring).

    Args:
        interruptible: the default for replies the app did not mark.
    """

    def __init__(self, *, interruptible: bool = True) -> None:
        self.default_interruptible = interruptible
        self._pending: collections.deque[bool] = collections.deque()
        self._replies: dict[str | None, _Reply] = {}
        self._dropped: set[str] = set()  # response ids whose late audio is refused
        self._speech_stopped_at: float | None = None
        self.metrics: list[TurnMetrics] = []

    # ------------------------------------------------------------------ requests

    def reply_requested(self, interruptible: bool | None) -> None:
        """The app asked for a reply (``create_reply``); the next reply to start takes
        ``interruptible`` (None: the session's default)."""
        self._pending.append(self.default_interruptible if interruptible is None else interruptible)

    # -------------------------------------------------------------------- events

    def reply_started(self, response_id: str | None) -> None:
        self._open(response_id)

    def accept_audio(
        self, response_id: str | None, item_id: str | None, samples: int, rate: int, now: float
    ) -> bool:
        """Reply audio arrived; False: it belongs to a cut reply and must be dropped."""
        if response_id is not None and response_id in self._dropped:
            return False
        reply = self._replies.get(response_id) or self._open(response_id)
        if reply.cut is not None:
            return False
        if reply.first_audio_at is None:
            reply.first_audio_at = now
        if item_id is not None:
            reply.item_id = item_id
            got = reply.received_s.get(item_id, Fraction(0))
            reply.received_s[item_id] = got + Fraction(samples, rate)
        return True

    def reply_done(self, response_id: str | None) -> None:
        reply = self._replies.get(response_id)
        if reply is not None:
            reply.generating = False

    def speech_stopped(self, now: float) -> None:
        self._speech_stopped_at = now

    def speech_started(self) -> Cut | None:
        """The caller started speaking: the open reply is cut if it may be."""
        reply = self._current()
        if reply is None or not reply.interruptible:
            return None
        return self._cut(reply, "speech")

    def interrupt(self) -> Cut | None:
        """The app cuts the agent off (interruptible or not)."""
        reply = self._current()
        return None if reply is None else self._cut(reply, "app")

    def provider_interrupted(self, response_id: str | None) -> Cut | None:
        """The provider stopped reply ``response_id`` (it heard the caller): it
        generates no more; playback is cut unless the reply is not interruptible."""
        reply = self._replies.get(response_id) if response_id is not None else self._current()
        if reply is None or reply.cut is not None:
            return None
        reply.generating = False
        if not reply.interruptible:
            return None
        return self._cut(reply, "provider")

    def played_out(
        self,
        response_id: str | None,
        played_ms: int,
        *,
        first_played_at: float | None,
        underruns: int,
    ) -> TurnMetrics | None:
        """Playback reported reply ``response_id`` played: its metrics (None if the
        reply was never seen)."""
        reply = self._replies.pop(response_id, None)
        if reply is None:
            return None

        def since(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        cut = reply.cut
        metrics = TurnMetrics(
            response_id=response_id,
            speech_to_first_audio_s=since(reply.stopped_at, reply.first_audio_at),
            first_audio_to_played_s=since(reply.first_audio_at, first_played_at),
            speech_to_played_s=since(reply.stopped_at, first_played_at),
            reply_played_ms=played_ms,
            interrupted=cut is not None,
            interrupted_at_ms=reply.cut_played_ms if cut is not None else None,
            underruns=underruns,
        )
        self.metrics.append(metrics)
        return metrics

    # ------------------------------------------------------------------ positions

    def received_ms(self, item_id: str | None) -> int:
        """Whole milliseconds of ``item_id`` received so far (0 if unknown)."""
        if item_id is None:
            return 0
        received = max(
            (r.received_s.get(item_id, Fraction(0)) for r in self._replies.values()),
            default=Fraction(0),
        )
        return math.floor(received * 1000)

    def truncate_ms(self, item_id: str | None, played_ms: int) -> int | None:
        """Where to truncate ``item_id``: ``played_ms`` clamped to what was received
        of it; None when nothing of it was played (or it is unknown)."""
        end = min(played_ms, self.received_ms(item_id))
        return end if item_id is not None and end > 0 else None

    def note_cut_position(self, response_id: str | None, played_ms: int) -> None:
        reply = self._replies.get(response_id)
        if reply is not None:
            reply.cut_played_ms = played_ms

    def knows(self, response_id: str | None) -> bool:
        """Whether reply ``response_id`` is open (seen and not played out yet)."""
        return response_id in self._replies

    def is_cut(self, response_id: str | None) -> bool:
        reply = self._replies.get(response_id)
        return (response_id is not None and response_id in self._dropped) or (
            reply is not None and reply.cut is not None
        )

    # ------------------------------------------------------------------ internals

    def _open(self, response_id: str | None) -> _Reply:
        reply = self._replies.get(response_id)
        if reply is None:
            interruptible = self._pending.popleft() if self._pending else self.default_interruptible
            reply = _Reply(response_id, interruptible, self._speech_stopped_at)
            self._speech_stopped_at = None
            self._replies[response_id] = reply
        return reply

    def _current(self) -> _Reply | None:
        """The newest open reply not cut yet."""
        for reply in reversed(self._replies.values()):
            if reply.cut is None:
                return reply
        return None

    def _cut(self, reply: _Reply, reason: CutReason) -> Cut:
        cut = Cut(reply.response_id, reply.item_id, reply.generating, reason)
        reply.cut = cut
        reply.generating = False  # cancelled: never a second response.cancel
        if reply.response_id is not None:
            self._dropped.add(reply.response_id)
        return cut


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
