"""The vocabulary of voxtrio: every message that travels between actors and to apps.

Each class is a frozen attrs class, one per fact, with units in field names. Nothing
here imports trio, so codecs, actors, runtime and apps all speak the same types.

Closed unions name what each kind of channel carries, so ``match`` is exhaustive:

* :data:`Event` -- what the session reports to apps and to the transcript store;
* :data:`Control` -- the controls that travel in order with the input audio;
* :data:`ConvertInput` / :data:`LinkInput` -- what the convert actor and the provider
  link consume (audio and controls);
* :data:`PlaybackInput` -- what the playback actor consumes.

Stream positions: ``pts`` fields count samples of the provider's *input* stream (the
converted audio the provider heard) since the session started, so a transcript or a
speech boundary can be tied to audio. They are ``None`` where the provider gives no
position.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
import numpy as np

from .audio import AudioFrame, FrameMs, pcm_equal
from .function_tool import FunctionTool

__all__ = [
    "AudioDropped",
    "CancelReply",
    "ClearInput",
    "CommitInput",
    "Control",
    "ConvertInput",
    "CreateReply",
    "DtmfReceived",
    "EndOfInput",
    "ErrorEvent",
    "Event",
    "FrameBatch",
    "InputIdleTimeout",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "LinkInput",
    "PlaybackInput",
    "Reframe",
    "ReplyAudio",
    "ReplyAudioDone",
    "ReplyDone",
    "ReplyInterrupted",
    "ReplyPlayed",
    "ReplyStarted",
    "ReplyTextDelta",
    "ReplyTextDone",
    "SendText",
    "SessionConnected",
    "SessionReconnected",
    "SessionReconnecting",
    "SpeechStarted",
    "SpeechStopped",
    "SubscriberLagged",
    "ToolCall",
    "ToolCallCancelled",
    "ToolResult",
    "TruncateItem",
    "UpdateSession",
]


# --------------------------------------------------------------------------- events


@attrs.frozen
class ErrorEvent:
    """Something in the outside world went wrong; the session goes on if it can.

    Attributes:
        message: human-readable; never contains secrets.
        code: machine-readable code: the provider's error code, or one of voxtrio's
            (``protocol_error``, ``connection_lost``, ``handshake_rejected``,
            ``audio_dropped``, ``capture_failed``, ``store_failed``, ...).
        source: which actor or party reported it (``provider``, ``link``,
            ``capture``, ``convert``, ``playback``, ``store``, ``session``).
        recoverable: False when the session cannot continue (it is ending).
        item_id: the conversation item concerned, when known.
        event_id: the client event the provider says caused it, when known.
    """

    message: str
    code: str | None = None
    source: str = "provider"
    recoverable: bool = True
    item_id: str | None = None
    event_id: str | None = None


@attrs.frozen
class SessionConnected:
    """The provider link connected and sent its configuration.

    ``instructions_chars`` is the length of the instructions sent (which carry the
    transcript so far), so apps can see context was folded in without logging it.
    """

    provider: str
    instructions_chars: int = 0


@attrs.frozen
class SessionReconnecting:
    """The link lost its connection and will retry after ``delay_s`` seconds."""

    attempt: int
    delay_s: float
    reason: str


@attrs.frozen
class SessionReconnected:
    """The link is connected again, after ``attempt`` attempts; buffered audio follows."""

    provider: str
    attempt: int
    instructions_chars: int = 0
    resumed: bool = False


@attrs.frozen
class SpeechStarted:
    """The provider's voice activity detection heard speech begin."""

    item_id: str | None = None
    audio_start_ms: int | None = None
    pts: int | None = None


@attrs.frozen
class SpeechStopped:
    """The provider's voice activity detection heard speech end."""

    item_id: str | None = None
    audio_end_ms: int | None = None
    pts: int | None = None


@attrs.frozen
class InputTranscriptionDelta:
    """A piece of the transcription of the user's speech (may lack an item id)."""

    delta: str
    item_id: str | None = None


@attrs.frozen
class InputTranscriptionCompleted:
    """The full transcription of one user turn. May arrive out of order: match by id.

    ``item_id`` is None where the provider names no items; the transcript then places
    the turn by ``pts`` (when known) and by arrival.
    """

    item_id: str | None
    transcript: str
    content_index: int = 0
    pts: int | None = None


@attrs.frozen
class InputTranscriptionFailed:
    """The provider could not transcribe an item (``item_id`` None if it names none)."""

    item_id: str | None
    message: str
    code: str | None = None


@attrs.frozen
class ReplyStarted:
    """The provider started a reply; ``response_id`` is None if it names none."""

    response_id: str | None


@attrs.frozen
class ReplyTextDelta:
    """A piece of reply text, or of the transcript of reply audio."""

    delta: str
    response_id: str | None = None
    item_id: str | None = None


@attrs.frozen
class ReplyTextDone:
    """The full text (or audio transcript) of one reply item."""

    text: str
    response_id: str | None = None
    item_id: str | None = None


@attrs.frozen
class ReplyAudio:
    """A chunk of reply audio: int16 mono ``(samples, 1)`` at ``sample_rate``.

    ``response_id`` and ``item_id`` let playback drop stale audio of a cancelled reply
    and count how much of each item was played.
    """

    pcm: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=pcm_equal), repr=False)
    sample_rate: int
    response_id: str | None = None
    item_id: str | None = None

    @property
    def samples(self) -> int:
        return int(self.pcm.shape[0])


@attrs.frozen
class ReplyAudioDone:
    """No more audio for this reply item."""

    response_id: str | None = None
    item_id: str | None = None


@attrs.frozen
class ReplyDone:
    """The reply ended; ``status`` is ``completed``, ``cancelled``, ``failed``, ..."""

    response_id: str | None = None
    status: str = "completed"


@attrs.frozen
class ReplyInterrupted:
    """The provider stopped its reply because the user spoke (barge-in)."""

    response_id: str | None = None


@attrs.frozen
class ReplyPlayed:
    """Everything playback had of a reply has gone to the output.

    Sent by playback after :class:`ReplyDone`, once every frame of the reply queued
    before it was handed to the output (``session.output`` or the sink) or dropped
    (cancelled, or over the queue limit). The moment to hang up after a goodbye.

    Attributes:
        response_id: the reply's id, as in its ``ReplyDone``.
        played_ms: whole milliseconds of the reply's audio handed to the output.
    """

    response_id: str | None
    played_ms: int


@attrs.frozen
class ToolCall:
    """The model asks for a tool call."""

    call_id: str
    name: str
    arguments: str


@attrs.frozen
class ToolCallCancelled:
    """The model withdrew tool calls it made; their results are no longer wanted.

    A result sent for a cancelled call anyway is harmless but unused.

    Attributes:
        call_ids: the ``ToolCall.call_id`` values cancelled.
    """

    call_ids: tuple[str, ...]


@attrs.frozen
class ToolResult:
    """The result the app gave for a tool call.

    ``name`` is the tool's name: some providers need it with the result. The session
    fills it in from the :class:`ToolCall` it answers when the app gives none.
    """

    call_id: str
    output: str
    name: str | None = None


@attrs.frozen
class AudioDropped:
    """Live audio was dropped on a full edge, by policy. Counts are since the last report.

    ``edge`` names where (``capture``, ``link_buffer``, ``playback``);
    ``total_frames`` counts every drop on that edge so far.
    """

    edge: str
    frames: int
    samples: int
    total_frames: int


@attrs.frozen
class SubscriberLagged:
    """This subscriber fell behind and missed ``missed`` events just before this one."""

    missed: int


@attrs.frozen
class SendText:
    """Add a user text message to the conversation.

    Also an event: the session publishes the app's own text messages, so the
    transcript store records them (a reconnect's instructions carry them).
    ``item_id`` names the message in the transcript; the session assigns one.
    """

    text: str
    item_id: str | None = None


# ------------------------------------------------------- telephony and idle events


@attrs.frozen
class DtmfReceived:
    """The caller pressed a telephone key (a DTMF tone on a SIP call).

    ``digit`` is the key as the provider names it (``0``-``9``, ``*``, ``#``,
    ``A``-``D``); ``received_at_s`` the provider's Unix time of it, when given.
    """

    digit: str
    received_at_s: int | None = None


@attrs.frozen
class InputIdleTimeout:
    """The provider's idle timeout fired: no speech for the configured time.

    The provider commits the silent stretch as a turn and usually replies (a
    prompt to go on, say). ``item_id`` names that turn when the provider gives it.
    """

    item_id: str | None = None


Event: TypeAlias = (
    ErrorEvent
    | SessionConnected
    | SessionReconnecting
    | SessionReconnected
    | SpeechStarted
    | SpeechStopped
    | InputTranscriptionDelta
    | InputTranscriptionCompleted
    | InputTranscriptionFailed
    | ReplyStarted
    | ReplyTextDelta
    | ReplyTextDone
    | ReplyAudio
    | ReplyAudioDone
    | ReplyDone
    | ReplyInterrupted
    | ReplyPlayed
    | ToolCall
    | ToolCallCancelled
    | ToolResult
    | SendText
    | AudioDropped
    | SubscriberLagged
    | DtmfReceived
    | InputIdleTimeout
)


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
