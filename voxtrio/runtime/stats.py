"""The session's counters, as a snapshot (:meth:`Session.stats`)."""

from __future__ import annotations

import attrs

from ..codecs.turns import percentile
from ..messages import TurnMetrics

__all__ = ["EdgeStats", "SessionStats", "TurnStats"]


@attrs.frozen
class TurnStats:
    """Running figures of the replies played so far (seconds; None before any).

    Attributes:
        turns: replies played out (or cut).
        interrupted: of those, cut off.
        underruns: times the output ran dry in the middle of a reply.
        speech_to_first_audio_p50_s, ..._p95_s: end of user speech to first reply
            audio received.
        first_audio_to_played_p50_s, ..._p95_s: first audio received to played.
        speech_to_played_p50_s, ..._p95_s: end of user speech to first audio played.
    """

    turns: int = 0
    interrupted: int = 0
    underruns: int = 0
    speech_to_first_audio_p50_s: float | None = None
    speech_to_first_audio_p95_s: float | None = None
    first_audio_to_played_p50_s: float | None = None
    first_audio_to_played_p95_s: float | None = None
    speech_to_played_p50_s: float | None = None
    speech_to_played_p95_s: float | None = None

    @classmethod
    def of(cls, metrics: list[TurnMetrics], underruns: int) -> TurnStats:
        def q(name: str, p: float) -> float | None:
            values = [v for m in metrics if (v := getattr(m, name)) is not None]
            return percentile(values, p)

        return cls(
            len(metrics),
            sum(m.interrupted for m in metrics),
            underruns,
            q("speech_to_first_audio_s", 0.5),
            q("speech_to_first_audio_s", 0.95),
            q("first_audio_to_played_s", 0.5),
            q("first_audio_to_played_s", 0.95),
            q("speech_to_played_s", 0.5),
            q("speech_to_played_s", 0.95),
        )


@attrs.frozen
class EdgeStats:
    """Counters of one pipeline edge (what its sender sent and dropped).

    ``frames`` and ``samples`` are in the edge's own units (a capture's chunks at the
    source rate, 20 ms frames at the provider's rate, output frames); ``audio_s``,
    seconds of audio sent, is the one unit every edge shares.
    """

    messages: int
    frames: int
    samples: int
    dropped_frames: int
    dropped_samples: int
    queued: int
    audio_s: float = 0.0


@attrs.frozen
class SessionStats:
    """A snapshot of the session's counters.

    Attributes:
        edges: per edge (``capture``, ``convert``, ``playback``) what was sent,
            dropped, and is queued now.
        events: events routed by the hub.
        subscribers_lagged: per live subscriber, events it missed so far.
        turns: per-turn latency figures (:class:`TurnStats`).
        link_dropped_frames: input frames the provider link dropped: live audio over
            its outage buffer, and what it never delivered when it gave up for good
            (``AudioDropped(edge="link_buffer")``; counted as the session routes
            those reports, so the app that has seen them sees them counted here).
        link_dropped_samples: the same, in samples (per channel, provider rate).
    """

    edges: dict[str, EdgeStats]
    events: int
    subscribers_lagged: tuple[int, ...]
    turns: TurnStats = TurnStats()
    link_dropped_frames: int = 0
    link_dropped_samples: int = 0

    @property
    def frames_in(self) -> int:
        """Frames produced by the capture so far."""
        return self.edges["capture"].frames

    @property
    def frames_sent(self) -> int:
        """Frames converted and handed to the provider link so far."""
        return self.edges["convert"].frames

    @property
    def frames_out(self) -> int:
        """Reply frames delivered to playback so far."""
        return self.edges["playback"].frames

    @property
    def audio_in_s(self) -> float:
        """Seconds of audio captured (or pushed with ``send_audio``)."""
        return self.edges["capture"].audio_s

    @property
    def audio_sent_s(self) -> float:
        """Seconds of audio converted and handed to the provider link."""
        return self.edges["convert"].audio_s

    @property
    def audio_out_s(self) -> float:
        """Seconds of reply audio handed to the output."""
        return self.edges["playback"].audio_s

    @property
    def dropped_frames(self) -> int:
        """Frames dropped anywhere: on every pipeline edge and by the provider link."""
        return sum(e.dropped_frames for e in self.edges.values()) + self.link_dropped_frames
