"""The session's side of turn-taking: carries out :class:`~voxtrio.codecs.turns.TurnState`'s
decisions.

The hub hands every event to :meth:`TurnDriver.route` before routing it, in order, and
:meth:`TurnDriver.interrupt` when the app asked (``Session.interrupt`` sends an
:class:`InterruptRequest` down the hub's input, so the cut is decided in order with
the events). A cut stops playback at once (synchronously: the queued frames of the
reply are dropped, the next one faded out), sends ``CancelReply`` /
``TruncateItem`` to the link through a channel that never waits, and publishes
``ReplyInterrupted(response_id, item_id, played_ms)``.
"""

from __future__ import annotations

import contextlib
import math

import attrs
import trio

from ..actors.playback import PlaybackState
from ..codecs.turns import Cut, TurnState
from ..codecs.wire import Capabilities
from ..messages import (
    CancelReply,
    Event,
    LinkInput,
    ReplyAudio,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
    ReplyStarted,
    SpeechStarted,
    SpeechStopped,
    TruncateItem,
)

__all__ = ["InterruptRequest", "TurnDriver"]


@attrs.frozen
class InterruptRequest:
    """``Session.interrupt()``, on its way to the hub."""


class TurnDriver:
    """Turn-taking for one session (see the module docstring)."""

    def __init__(
        self,
        state: TurnState,
        playback: PlaybackState,
        capabilities: Capabilities,
        controls: trio.MemorySendChannel[LinkInput],
    ) -> None:
        self.state = state
        self.playback = playback
        self.capabilities = capabilities
        self.controls = controls  # unbounded: a send never waits

    def route(self, event: Event) -> list[Event]:
        """What the hub routes in place of ``event`` (``[]``: drop it)."""
        state = self.state
        match event:
            case ReplyAudio():
                samples = int(event.pcm.shape[0])
                now = trio.current_time()
                ok = state.accept_audio(
                    event.response_id, event.item_id, samples, event.sample_rate, now
                )
                return [event] if ok else []
            case ReplyStarted(response_id=rid):
                state.reply_started(rid)
            case ReplyDone(response_id=rid):
                state.reply_done(rid)
            case SpeechStopped():
                state.speech_stopped(trio.current_time())
            case SpeechStarted():
                cut = state.speech_started()
                return [event] if cut is None else [event, self._apply(cut)]
            case ReplyInterrupted(response_id=rid, played_ms=None):
                return self._provider_interrupted(rid, event)
            case ReplyPlayed(response_id=rid, played_ms=played):
                pb = self.playback
                metrics = state.played_out(
                    rid,
                    played,
                    first_played_at=pb.first_played_at.pop(rid, None),
                    underruns=pb.underruns_by_response.pop(rid, 0),
                )
                return [event] if metrics is None else [event, metrics]
        return [event]

    def interrupt(self) -> list[Event]:
        """The app cuts the agent off: what to publish (nothing if nothing plays)."""
        cut = self.state.interrupt()
        return [] if cut is None else [self._apply(cut)]

    def _provider_interrupted(self, rid: str | None, event: ReplyInterrupted) -> list[Event]:
        if self.state.is_cut(rid):
            return []  # already cut (the caller's speech came first) and reported
        cut = self.state.provider_interrupted(rid)
        if cut is not None:
            return [self._apply(cut)]
        if rid is not None and self.state.knows(rid):
            return []  # not interruptible: it plays to the end of what arrived
        return [event]

    def _apply(self, cut: Cut) -> ReplyInterrupted:
        """Stop playback now, tell the provider, and say so."""
        pb, item = self.playback, cut.item_id
        played = pb.played_s(item) if item is not None else 0
        pb.cancel_reply(cut.response_id, fade=True)
        head = pb.queued[0] if pb.queued else None
        if head is not None and head.fade and head.item_id == item:
            played += head.frame.duration  # the faded frame still plays
        played_ms = math.floor(played * 1000)
        if cut.cancel and self.capabilities.cancel_reply:
            self._send(CancelReply(cut.response_id))
        end = self.state.truncate_ms(item, played_ms)
        if item is not None and end is not None and self.capabilities.truncation:
            self._send(TruncateItem(item, end))
        self.state.note_cut_position(cut.response_id, played_ms)
        if item is None:
            return ReplyInterrupted(cut.response_id)
        received = self.state.received_ms(item)
        return ReplyInterrupted(cut.response_id, item, min(played_ms, received), received)

    def _send(self, msg: LinkInput) -> None:
        # The session is closing when the link is gone: nobody to tell.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.controls.send_nowait(msg)
