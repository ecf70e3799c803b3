"""What is in progress on one connection, read from the events the link passes on.

The link moves a connection that is about to expire (see
:class:`~voxtrio.codecs.wire.ConnectionExpiry`) only at a quiet moment, when
moving would cut nothing short: no reply asked for or playing out, the user not
speaking, no input transcription awaited, no tool call waiting for its result.
:class:`Activity` keeps that count from provider-neutral events only; it is pure
but for its wake-up, and is made afresh for every connection (nothing of a dead
connection is in progress on the next one).
"""

from __future__ import annotations

import trio

from ...messages import (
    CreateReply,
    Event,
    InputTranscriptionCompleted,
    InputTranscriptionFailed,
    LinkInput,
    ReplyDone,
    ReplyStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    ToolCallCancelled,
    ToolResult,
)

__all__ = ["Activity"]


class Activity:
    """Counts what one connection has in flight.

    Args:
        transcribes: the provider transcribes the user's speech, so a turn that
            ended awaits its transcription (else nothing is awaited).
    """

    def __init__(self, *, transcribes: bool) -> None:
        self._transcribes = transcribes
        self.requested = 0  # reply requests written, not yet started
        self.replies = 0  # replies started, not yet done
        self.speaking = False
        self.transcripts: set[str] = set()  # turns awaiting their transcription
        self.calls: set[str] = set()  # tool calls awaiting their result
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return (
            f"Activity(requested={self.requested}, replies={self.replies}, "
            f"speaking={self.speaking}, transcripts={len(self.transcripts)}, "
            f"calls={len(self.calls)})"
        )

    @property
    def idle(self) -> bool:
        """Nothing in flight: a move now would cut nothing short."""
        return not (
            self.requested or self.replies or self.speaking or self.transcripts or self.calls
        )

    def received(self, event: Event) -> None:
        """Note an event the provider sent (before the link passes it on)."""
        match event:
            case ReplyStarted():
                self.requested = max(0, self.requested - 1)
                self.replies += 1
            case ReplyDone():
                self.replies = max(0, self.replies - 1)
            case SpeechStarted():
                self.speaking = True
            case SpeechStopped(item_id=item_id):
                self.speaking = False
                if self._transcribes and item_id is not None:
                    self.transcripts.add(item_id)
            case (
                InputTranscriptionCompleted(item_id=item_id)
                | InputTranscriptionFailed(item_id=item_id)
            ):
                self.transcripts.discard(item_id or "")
            case ToolCall(call_id=call_id):
                self.calls.add(call_id)
            case ToolCallCancelled(call_ids=call_ids):
                self.calls.difference_update(call_ids)
            case _:
                return
        self._wake()

    def written(self, msg: LinkInput) -> None:
        """Note an input the link wrote for the first time."""
        if isinstance(msg, CreateReply):
            self.requested += 1
        elif isinstance(msg, ToolResult):
            self.calls.discard(msg.call_id)
        else:
            return
        self._wake()

    async def wait_idle(self) -> None:
        """Return once nothing is in flight (at once if nothing is)."""
        while not self.idle:
            await self._changed.wait()

    async def wait_quiet(self, settle_s: float) -> None:
        """Return once nothing has been in flight for ``settle_s`` seconds: a turn
        the provider just ended may be followed by its reply a moment later."""
        while True:
            await self.wait_idle()
            changed = self._changed
            with trio.move_on_after(settle_s):
                await changed.wait()
                continue
            return

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
