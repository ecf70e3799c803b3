"""The plumbing types the actors share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["EdgeCounter", "InstructionsSource"]

#: Called by a provider link on every (re)connect; returns the instructions to send,
#: with the transcript so far folded in.
InstructionsSource = Callable[[], Awaitable[str]]


class EdgeCounter:
    """Mutable counters for one edge of the pipeline, owned by the actor that sends.

    Not a message: the session reads them for :meth:`Session.stats`. Plain ints, so
    updating them costs nothing on the hot path.
    """

    __slots__ = ("dropped_frames", "dropped_samples", "frames", "messages", "name", "samples")

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages = 0
        self.frames = 0
        self.samples = 0
        self.dropped_frames = 0
        self.dropped_samples = 0

    def __repr__(self) -> str:
        return (
            f"EdgeCounter({self.name!r}, messages={self.messages}, frames={self.frames}, "
            f"samples={self.samples}, dropped_frames={self.dropped_frames})"
        )
