"""What playback has done and holds, shared with the session: the queue of ready
frames, played positions per item, cancelled replies, first-played times and
underruns (see :mod:`voxtrio.actors.playback`)."""

from __future__ import annotations

import collections
import math
from fractions import Fraction

import attrs
import numpy as np
import trio

from ..audio import AudioFrame

__all__ = ["PlaybackState", "QueuedFrame", "faded"]


@attrs.frozen
class QueuedFrame:
    """An output frame with the reply it belongs to.

    ``end_of_reply``: not audio but the mark where reply ``response_id`` ended (its
    ``frame`` is empty); the pacer reports :class:`ReplyPlayed` when it gets there.
    Cancelling never removes a mark.
    """

    frame: AudioFrame
    response_id: str | None
    item_id: str | None
    end_of_reply: bool = False
    fade: bool = False  # the last frame of a cut reply, faded out: never cancelled


def faded(frame: AudioFrame) -> AudioFrame:
    """``frame`` ramped down to silence over its length (a cut without a click)."""
    n = frame.samples
    ramp = np.linspace(1.0, 0.0, n, endpoint=False, dtype=np.float64).reshape(-1, 1)
    pcm = np.round(frame.pcm.astype(np.float64) * ramp).astype(np.int16)
    return AudioFrame(pcm, frame.sample_rate, frame.pts)


class PlaybackState:
    """What playback has done, readable by the session while it runs.

    Attributes:
        played_ms_by_item: per item id, milliseconds of that item sent to the sink.
        cancelled: response ids whose audio is dropped.
        queued: frames ready to play, oldest first.
        queued_s: their total duration in seconds.
    """

    def __init__(self) -> None:
        self.played_ms_by_item: dict[str, float] = {}
        # Exact seconds per item: a float sum of 220/221-sample frames creeps below
        # whole milliseconds (8,010 Hz: 10 frames sum to 199.99999999999997 ms).
        self._played_s: dict[str, Fraction] = {}
        self.cancelled: set[str] = set()
        self.queued: collections.deque[QueuedFrame] = collections.deque()
        self.queued_s = 0.0
        self.wakeup = trio.Event()
        # Replies cancelled from outside whose held tail the receiver has yet to drop.
        self.tail_discards: list[str | None] = []
        self.current_response: str | None = None  # of the last reply audio received
        # Per response, read (and popped) by the session when the reply was played:
        self.first_played_at: dict[str | None, float] = {}  # trio time of its 1st frame
        self.underruns_by_response: dict[str | None, int] = {}
        self.underruns = 0  # the output ran dry in the middle of a reply, in all

    def played_ms(self, item_id: str) -> int:
        """Whole milliseconds of ``item_id`` actually sent to the sink (0 if none)."""
        return math.floor(self._played_s.get(item_id, 0) * 1000)

    def played_s(self, item_id: str) -> Fraction:
        """Exact seconds of ``item_id`` actually sent to the sink."""
        return self._played_s.get(item_id, Fraction(0))

    def add_played(self, item_id: str, duration: Fraction) -> None:
        """Count ``duration`` seconds of ``item_id`` as sent to the sink."""
        total = self._played_s.get(item_id, Fraction(0)) + duration
        self._played_s[item_id] = total
        self.played_ms_by_item[item_id] = float(total * 1000)

    def append(self, q: QueuedFrame) -> None:
        self.queued.append(q)
        self.queued_s += float(q.frame.duration)

    def popleft(self) -> QueuedFrame:
        q = self.queued.popleft()
        self.queued_s -= float(q.frame.duration)
        if not self.queued:
            self.queued_s = 0.0  # no float residue
        return q

    def cancel(self, response_id: str | None, *, fade: bool = False) -> int:
        """Drop queued audio of ``response_id`` (all queued audio if None).

        Returns the number of frames dropped. Later audio of that id is ignored.
        ``fade``: when the next frame to play is of that reply, it is kept, faded
        out to silence (so the cut does not click), and plays as its last frame.
        """
        before = len(self.queued)
        if response_id is not None:
            self.cancelled.add(response_id)

        def cut(q: QueuedFrame) -> bool:
            return not (q.end_of_reply or q.fade) and (
                response_id is None or q.response_id == response_id
            )

        head = self.queued[0] if self.queued else None
        kept = [q for q in self.queued if not cut(q)]
        if fade and head is not None and cut(head) and head.frame.samples:
            kept.insert(0, attrs.evolve(head, frame=faded(head.frame), fade=True))
        self.queued.clear()
        self.queued_s = 0.0
        for q in kept:
            self.append(q)
        return before - len(self.queued)

    def cancel_reply(self, response_id: str | None, *, fade: bool = False) -> int:
        """:meth:`cancel`, and have playback drop what its resampler and framer hold of
        that reply before it handles its next message (in order with the audio, else
        that tail would open the next reply). Synchronous: the session's
        ``cancel_reply`` calls it once its ``CancelReply`` is on its way."""
        self.tail_discards.append(response_id)
        if response_id is None:
            # Audio of these replies may still be on its way in the channel: drop it too.
            ids = {q.response_id for q in self.queued if not q.end_of_reply}
            ids.add(self.current_response)
            self.cancelled.update(i for i in ids if i is not None)
        return self.cancel(response_id, fade=fade)
