"""The plumbing types the actors share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..messages import AudioDropped

__all__ = ["DropCounter", "EdgeCounter", "InstructionsSource"]

#: Called by a provider link on every (re)connect; returns the instructions to send,
#: with the transcript so far folded in.
InstructionsSource = Callable[[], Awaitable[str]]


class EdgeCounter:
    """Mutable counters for one edge of the pipeline, owned by the actor that sends.

    Not a message: the session reads them for :meth:`Session.stats`. Plain ints, so
    updating them costs nothing on the hot path.
    """

    __slots__ = (
        "audio_ns",
        "dropped_frames",
        "dropped_samples",
        "frames",
        "messages",
        "name",
        "samples",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages = 0
        self.frames = 0
        self.samples = 0
        #: audio sent, in nanoseconds: the one unit every edge shares (frames and
        #: samples differ between edges: capture chunks, 20 ms frames, output frames)
        self.audio_ns = 0
        self.dropped_frames = 0
        self.dropped_samples = 0

    def sent(self, frames: int, samples: int, sample_rate: int) -> None:
        """Count one message of ``frames`` frames holding ``samples`` samples (per
        channel) at ``sample_rate``."""
        self.messages += 1
        self.frames += frames
        self.samples += samples
        self.audio_ns += samples * 1_000_000_000 // sample_rate

    def __repr__(self) -> str:
        return (
            f"EdgeCounter({self.name!r}, messages={self.messages}, frames={self.frames}, "
            f"samples={self.samples}, dropped_frames={self.dropped_frames})"
        )


class DropCounter:
    """The one piece of drop accounting: totals, plus what is not reported yet.

    An actor that drops audio by policy calls :meth:`count` for every frame it drops
    and sends what :meth:`report` returns when it chooses to (at once, or at most
    once a second): each dropped frame is in exactly one report, and a report's
    ``total_frames`` is the running total. With an ``edge_counter``, the totals are
    also added to that :class:`EdgeCounter` (what ``Session.stats`` shows).
    """

    __slots__ = ("_edge_counter", "edge", "frames", "samples", "unreported_frames",
                 "unreported_samples")

    def __init__(self, edge: str, edge_counter: EdgeCounter | None = None) -> None:
        self.edge = edge
        self._edge_counter = edge_counter
        self.frames = 0  # dropped in total
        self.samples = 0
        self.unreported_frames = 0
        self.unreported_samples = 0

    def count(self, samples: int, frames: int = 1) -> None:
        """Account for ``frames`` frames of ``samples`` samples in all, dropped."""
        self.frames += frames
        self.samples += samples
        self.unreported_frames += frames
        self.unreported_samples += samples
        if self._edge_counter is not None:
            self._edge_counter.dropped_frames += frames
            self._edge_counter.dropped_samples += samples

    def report(self) -> AudioDropped | None:
        """The drops since the last report, as an event (None: there were none)."""
        if not self.unreported_frames:
            return None
        event = AudioDropped(
            self.edge, self.unreported_frames, self.unreported_samples, self.frames
        )
        self.unreported_frames = self.unreported_samples = 0
        return event

    def take_back(self, report: AudioDropped) -> None:
        """``report`` (from :meth:`report`) never reached anyone: its drops are
        unreported again, so the next report carries them (the totals are unchanged)."""
        self.unreported_frames += report.frames
        self.unreported_samples += report.samples

    def __repr__(self) -> str:
        return f"DropCounter({self.edge!r}, frames={self.frames}, samples={self.samples})"
