"""What the session needs from a provider, and the shared actor plumbing types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import trio

from ..codecs.audio import AudioFormat, FrameMs
from ..messages import Event, LinkInput

__all__ = ["EdgeCounter", "InstructionsSource", "Provider"]

#: Called by a provider link on every (re)connect; returns the instructions to send,
#: with the transcript so far folded in.
InstructionsSource = Callable[[], Awaitable[str]]


@runtime_checkable
class Provider(Protocol):
    """A realtime provider the session can run a link to.

    The session converts captured audio to ``input_format`` in ``input_frame_ms``
    frames, starts :meth:`run_link` in its nursery, and routes what the link sends on
    ``events``. Reply audio arrives as :class:`~voxtrio.messages.ReplyAudio` at
    ``output_format``'s rate.
    """

    @property
    def name(self) -> str: ...

    @property
    def input_format(self) -> AudioFormat: ...

    @property
    def output_format(self) -> AudioFormat: ...

    @property
    def input_frame_ms(self) -> FrameMs: ...

    def check(self) -> None:
        """Raise a clear exception now if a link could not start (e.g. no API key).

        Called by ``open_session`` before anything runs.
        """
        ...

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until ``receive`` ends (then finish sending and return) or cancelled.

        ``live_input``: the audio comes from a live source and cannot wait, so while
        the provider is unreachable the link keeps a bounded buffer and drops the
        oldest; False: the source can wait (a file), so the link pushes back instead.

        Faults of the outside world are sent as ``ErrorEvent`` on ``events``; only
        bugs raise. The link owns both channel ends and closes ``events`` on exit.
        """
        ...


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
