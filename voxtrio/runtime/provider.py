"""What the session needs from a provider."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import trio

from ..actors.base import InstructionsSource
from ..audio import AudioFormat, FrameMs
from ..codecs.wire import Capabilities
from ..messages import Event, LinkInput

__all__ = ["Provider", "ResumingProvider"]


@runtime_checkable
class Provider(Protocol):
    """A realtime provider the session can run a link to.

    The session converts captured audio to ``input_format`` in ``input_frame_ms``
    frames, starts :meth:`run_link` in its nursery, and routes what the link sends on
    ``events``. Reply audio arrives as :class:`~voxtrio.messages.ReplyAudio` at
    ``output_format``'s rate.
    """

    @property
    def name(self) -> str:
        """A short human-readable provider name, used in logs and errors."""
        ...

    @property
    def input_format(self) -> AudioFormat:
        """The audio format the provider expects to receive."""
        ...

    @property
    def output_format(self) -> AudioFormat:
        """The audio format of the reply audio the provider sends back."""
        ...

    @property
    def input_frame_ms(self) -> FrameMs:
        """The duration, in milliseconds, of each input frame sent to the provider."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What the provider can do; the session raises
        :class:`~voxtrio.errors.UnsupportedError` for anything else."""
        ...

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

        Send-once: the link reports each :class:`~voxtrio.messages.SendText` and
        :class:`~voxtrio.messages.ToolResult` on ``events`` once it has written it
        to the wire (not when it queues it during an outage); that is when the
        session publishes and stores it, so one queued before a (re)connect is in
        that connection's conversation once, as a new item, not also in its
        ``instructions()``.
        """
        ...


class ResumingProvider(Provider, Protocol):
    """A provider whose service can resume its own session (``capabilities.resumption``).

    The session also gives its :meth:`run_link` ``base_instructions``: the
    instructions without the transcript, sent instead of ``instructions()`` on a
    connection that resumes, so the conversation the service still holds is not
    repeated. Other providers are called as :class:`Provider` describes.
    """

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        base_instructions: str | None = None,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...
