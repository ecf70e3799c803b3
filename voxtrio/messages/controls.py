"""Controls: what travels down the input path with the audio, and to playback.

Part of :mod:`voxtrio.messages`, which re-exports every name; import them from there.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from ..audio import AudioFrame, FrameMs
from ..function_tool import FunctionTool
from .events import ReplyAudio, ReplyDone, ReplyInterrupted, SendText, ToolResult

# ---------------------------------------------------------------- link input (controls)


@attrs.frozen
class FrameBatch:
    """Several contiguous frames in one message: one channel hop instead of many."""

    frames: tuple[AudioFrame, ...]


@attrs.frozen
class CommitInput:
    """End the current input segment and ask the provider to commit it."""


@attrs.frozen
class ClearInput:
    """Discard the input segment in progress, here and at the provider."""


@attrs.frozen
class EndOfInput:
    """The input stream is over (a segment end; the session itself goes on)."""


@attrs.frozen
class CreateReply:
    """Ask the provider for a reply, optionally with per-reply instructions."""

    instructions: str | None = None


@attrs.frozen
class CancelReply:
    """Cancel the reply in progress."""

    response_id: str | None = None


@attrs.frozen
class TruncateItem:
    """Tell the provider the user heard only ``audio_end_ms`` of an assistant item."""

    item_id: str
    audio_end_ms: int
    content_index: int = 0


@attrs.frozen
class UpdateSession:
    """Change the configuration of the live session (providers whose capabilities
    say ``session_update``): the instructions, the declared tools, or both; a None
    field stays as it is. ``tools`` is the whole list the model may call from now on.
    """

    instructions: str | None = None
    tools: tuple[FunctionTool, ...] | None = None


#: The controls an app (or a capture) sends down the audio path, in order with audio.
Control: TypeAlias = (
    CommitInput
    | ClearInput
    | EndOfInput
    | CreateReply
    | CancelReply
    | TruncateItem
    | SendText
    | ToolResult
    | UpdateSession
)

#: What the convert actor consumes: audio in any supported format, and controls.
ConvertInput: TypeAlias = AudioFrame | Control

#: What the provider link consumes: audio in the provider's format (single frames or
#: batches of contiguous ones), and controls.
LinkInput: TypeAlias = AudioFrame | FrameBatch | Control


# ------------------------------------------------------------------------- playback


@attrs.frozen
class Reframe:
    """Switch the output track to ``rate_hz`` and ``frame_ms`` at a frame boundary."""

    rate_hz: int
    frame_ms: FrameMs = 20


PlaybackInput: TypeAlias = ReplyAudio | ReplyInterrupted | ReplyDone | Reframe
