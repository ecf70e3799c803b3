"""The session's counters, as a snapshot (:meth:`Session.stats`)."""

from __future__ import annotations

import attrs

__all__ = ["EdgeStats", "SessionStats"]


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
