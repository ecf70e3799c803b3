"""Events: what the session reports to apps and to the transcript store.

Part of :mod:`voxtrio.messages`, which re-exports every name; import them from there.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs
import numpy as np

from ..audio import pcm_equal

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
    """The link lost its connection and will retry after ``delay_s`` seconds.

    ``reason`` says why; for a move the provider scheduled (no fault, delay 0) it
    starts with the reason code (``go_away: ...``, ``session_expiring: ...``,
    ``session_expired: ...``).
    """

    attempt: int
    delay_s: float
    reason: str


@attrs.frozen
class SessionReconnected:
    """The link is connected again, after ``attempt`` attempts; buffered audio follows.

    ``reason`` is why the previous connection ended: ``"connection_lost"`` (a
    fault, reported as an ``ErrorEvent`` too), or a move the provider scheduled:
    ``"go_away"`` (the server asked), ``"session_expiring"`` (the link moved
    before the provider's session time limit), ``"session_expired"`` (the provider
    closed at its time limit).
    """

    provider: str
    attempt: int
    instructions_chars: int = 0
    resumed: bool = False
    reason: str = ""


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
class InputCommitted:
    """The provider took the user's buffered audio as one turn, ``item_id``: after a
    manual commit, or when its voice activity detection ended the turn.

    It names the user's item before any transcription of it, which may come only
    after the reply (so the transcript still places the turn before the reply).
    """

    item_id: str | None = None


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
    and count how much of each item was played. ``encoding`` is ``"pcm16"`` unless the
    provider replies in G.711 (``"mulaw"``/``"alaw"``: ``pcm`` holds uint8 codes).
    """

    pcm: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=pcm_equal), repr=False)
    sample_rate: int
    response_id: str | None = None
    item_id: str | None = None
    encoding: str = "pcm16"

    @property
    def samples(self) -> int:
        """Number of samples per channel in this chunk of reply audio."""
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
    """The reply was cut off: the caller spoke over it (barge-in), or the app called
    ``Session.interrupt()``.

    Attributes:
        response_id: the reply cut.
        item_id: its audio item, when known.
        played_ms: whole milliseconds of that item handed to the output before the
            cut (None where the session did not measure it, e.g. as a provider's
            own report).
        received_ms: whole milliseconds of that item received by then.
    """

    response_id: str | None = None
    item_id: str | None = None
    played_ms: int | None = None
    received_ms: int | None = None


@attrs.frozen
class TurnMetrics:
    """What one reply cost, sent once it was played out (or cut), on trio's clock.

    Attributes:
        response_id: the reply.
        speech_to_first_audio_s: from the end of the user's speech (the provider's
            speech_stopped) to the reply's first audio received; None without one.
        first_audio_to_played_s: from its first audio received to its first frame
            handed to the output.
        speech_to_played_s: the two together: what the caller waited.
        reply_played_ms: milliseconds of the reply handed to the output.
        interrupted: the reply was cut off.
        interrupted_at_ms: the played position of its item at the cut.
        underruns: times the output ran dry in the middle of the reply (its audio
            arrived slower than real time).
    """

    response_id: str | None
    speech_to_first_audio_s: float | None
    first_audio_to_played_s: float | None
    speech_to_played_s: float | None
    reply_played_ms: int
    interrupted: bool = False
    interrupted_at_ms: int | None = None
    underruns: int = 0


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
    """Audio was dropped and will never reach its destination. Counts are since the
    last report.

    Either live audio dropped on a full edge, by policy (the capture's buffer, the
    link's outage buffer, playback), or -- ``edge="link_buffer"`` -- input audio the
    provider link held and never delivered when it gave up for good (refused for
    good, out of retries): that report comes right before the link's final,
    non-recoverable ``ErrorEvent``, and counts what waited in the link's outbox or
    was kept to be resent, exactly. A deliberate close of the session reports no
    drop for what was still queued.

    ``edge`` names where (``capture``, ``link_buffer``, ``playback``);
    ``frames`` and ``samples`` (per channel) count the audio dropped since the
    previous report on that edge; ``total_frames`` counts every drop on that edge
    so far.
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
    | InputCommitted
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
    | TurnMetrics
    | ToolCall
    | ToolCallCancelled
    | ToolResult
    | SendText
    | AudioDropped
    | SubscriberLagged
    | DtmfReceived
    | InputIdleTimeout
)
