"""Plain types: how a connection is scripted, what a client sent, and what the fake
service asks its driver to do."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs

from .events import is_int

__all__ = [
    "ClientEventRecord",
    "Close",
    "CloseKind",
    "ConnectionScript",
    "Drop",
    "LoopbackClosedError",
    "Outgoing",
    "Send",
    "ServiceOutput",
    "SharedCounters",
    "Stall",
    "TranscriptTiming",
]

#: Something the server can be told to send: an event (a mapping; ``event_id`` is
#: filled in when missing), raw text (sent as is: malformed JSON, say), or bytes
#: (a binary frame).
Outgoing: TypeAlias = Mapping[str, Any] | str | bytes

#: When a committed turn's input transcription is sent, relative to the reply the
#: turn starts: before its ``response.created`` (the loopback's old and default
#: order), right after the reply's first words (its first text, transcript or tool
#: arguments delta), or right after its ``response.done``. The
#: real service often sends it during or after the reply.
TranscriptTiming: TypeAlias = Literal["before_reply", "during_reply", "after_reply"]

TRANSCRIPT_TIMINGS: Final = ("before_reply", "during_reply", "after_reply")

#: Who or what ended a connection.
CloseKind: TypeAlias = Literal["client", "server", "dropped", "network", "shutdown"]


@attrs.frozen
class ScriptedToolCall:
    """A tool call the service makes (see :mod:`.tool_calls`).

    Attributes:
        name: the tool's name.
        arguments: its JSON arguments, as the model would write them.
        after: make the call right after the n-th client message; None (default):
            instead of the next reply the service would make (on ``response.create``
            or at the end of a VAD turn).
        call_id: the call's id; a fresh one when None.
    """

    name: str
    arguments: str = "{}"
    after: int | None = None
    call_id: str | None = None


@attrs.frozen
class ConnectionScript:
    """How the server treats one connection (connections take scripts in order).

    Attributes:
        reject_status: reject the handshake with this HTTP status (e.g. 401, 403).
        send_after: ``(n, outgoing)`` pairs: send ``outgoing`` right after the n-th
            client message has been handled (n = 0: right after ``session.created``).
        drop_after: drop the TCP connection (no close frame) after this many client
            messages.
        close_after: send a close frame with ``close_code`` after this many client
            messages (nothing the client sent before it saw the close is lost).
        close_code: the close code for ``close_after``.
        close_at_once: accept the handshake and say nothing (no
            ``session.created``); send a close frame with this code as soon as the
            client's first message arrives. A server that accepts and hangs up at
            once, after the client configured the session: the provider never
            confirms the connection.
        stall_after: stop reading after this many client messages (until
            :meth:`LoopbackConnection.resume`).
        vad: run the energy VAD when the session's turn detection is on.
        vad_rms_threshold: int16 RMS that counts as speech.
        transcripts: canned input transcripts, used in turn across the server
            (default ``"loopback utterance N"``).
        transcript_deltas: send transcription deltas (one per word) before
            ``completed``.
        transcript_timing: when a turn's input transcription is sent, relative to
            the reply that follows the turn (:data:`TranscriptTiming`): the turn's own
            (server VAD) or the next the client asks for; if no reply starts before
            the next turn is committed, it is sent just before that turn. Turns of a
            transcription session are transcribed at once.
        reply_text: the transcript (or text) of canned replies.
        reply_ms: length of the reply tone.
        reply_tone_hz: its pitch.
        reply_chunk_ms: audio per ``response.output_audio.delta``.
        pace_replies: send reply audio in real time (one chunk per chunk's length of
            time), so a reply can be cancelled or interrupted while it plays.
        tool_calls: tool calls to make, in order (:class:`ScriptedToolCall`); the
            reply after the client sent their outputs says what they returned.
        session_lifetime_s: how long the session lives, for the ``expires_at`` of
            ``session.created`` (the real service: 60 minutes). Reported only: the
            server does not close the session then. A limit the server enforces
            (the 1001 close) is ``open_openai_loopback(session_lifetime_s=...)``,
            which then sets ``expires_at`` for every connection instead.
    """

    reject_status: int | None = None
    send_after: tuple[tuple[int, Outgoing], ...] = ()
    drop_after: int | None = None
    close_after: int | None = None
    close_code: int = 1011
    close_at_once: int | None = None
    stall_after: int | None = None
    vad: bool = True
    vad_rms_threshold: float = 500.0
    transcripts: tuple[str, ...] = ()
    transcript_deltas: bool = True
    transcript_timing: TranscriptTiming = "before_reply"
    reply_text: str = "Hello from the loopback provider."
    reply_ms: int = 400
    reply_tone_hz: float = 440.0
    reply_chunk_ms: int = 100
    pace_replies: bool = False
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    session_lifetime_s: float = 3600.0

    def __attrs_post_init__(self) -> None:
        if self.transcript_timing not in TRANSCRIPT_TIMINGS:
            raise ValueError(
                f"transcript_timing must be one of {TRANSCRIPT_TIMINGS}, "
                f"got {self.transcript_timing!r}"
            )
        if not self.session_lifetime_s > 0:
            raise ValueError(f"session_lifetime_s must be > 0, got {self.session_lifetime_s!r}")
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            raise ValueError(f"reject_status must be a 4xx/5xx status, got {self.reject_status}")
        for name in ("drop_after", "close_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.close_at_once is not None and not (
            is_int(self.close_at_once) and 1000 <= self.close_at_once <= 4999
        ):
            raise ValueError(f"close_at_once must be a close code, got {self.close_at_once!r}")
        if self.reply_ms < 0 or self.reply_chunk_ms < 1:
            raise ValueError("reply_ms must be >= 0 and reply_chunk_ms >= 1")
        for n, _ in self.send_after:
            if not is_int(n) or n < 0:
                raise ValueError(f"send_after counts must be ints >= 0, got {n!r}")


@attrs.frozen
class ClientEventRecord:
    """One message a client sent, as the server saw it.

    Attributes:
        index: its position on the connection (0-based).
        type: the event type, when it had one.
        event: the parsed JSON object (None for non-JSON, non-object or binary).
        valid: whether it validated (see :func:`validate_client_event`).
        problem: why it is invalid.
        size: its size in characters (text) or bytes (binary).
        binary: it came in a binary frame.
    """

    index: int
    type: str | None
    event: dict[str, Any] | None = attrs.field(repr=False)
    valid: bool
    problem: str | None
    size: int
    binary: bool = False


class LoopbackClosedError(RuntimeError):
    """The connection is closed: nothing can be sent on it."""


# ------------------------------------------------------------------ service outputs


@attrs.frozen
class Send:
    """Send this message to the client: JSON text (event ids filled in), or bytes."""

    data: str | bytes


@attrs.frozen
class Close:
    """Send a websocket close frame; go on reading until the client's close reply."""

    code: int
    reason: str


@attrs.frozen
class Drop:
    """Close the TCP connection now, without a close frame."""

    reason: str = "dropped by the loopback server"


@attrs.frozen
class Stall:
    """Stop reading client messages until the test resumes the connection."""


#: What :class:`~voxtrio.testing.openai.service.FakeRealtimeService` returns, in the
#: order the driver must carry it out.
ServiceOutput: TypeAlias = Send | Close | Drop | Stall


class SharedCounters:
    """What the connections of one server share: ids unique across them, the canned
    transcripts taken in turn, and the events the service could not process."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._utterances = 0
        #: a bug, or an odd event the checks let through; tests should find it empty
        self.internal_errors: list[str] = []

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def next_transcript(self, script: ConnectionScript) -> str:
        self._utterances += 1
        if script.transcripts:
            return script.transcripts[(self._utterances - 1) % len(script.transcripts)]
        return f"loopback utterance {self._utterances}"
