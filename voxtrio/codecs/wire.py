"""The sans-IO contract between the provider link and a provider's wire codec.

One generic websocket link actor serves every realtime provider. Everything that
differs between providers lives in a :class:`WireCodec`: what to send right after the
websocket opens, how link inputs (audio, controls) become wire messages, and how wire
messages become voxtrio events. A codec is pure and synchronous -- no trio, no clock,
no socket -- so every rule it encodes is testable without an event loop.

Besides events, ``decode`` may yield :class:`LinkSignal` objects: facts about the
connection itself that the link consumes and never forwards to the session:

* :class:`Ready` -- the provider accepted the connection (and, for providers that
  need it, the configuration); audio may flow. The link holds audio back until then
  only when the codec's ``wait_for_ready`` is true (Gemini: ``setupComplete``).
* :class:`GoAway` -- the server will close soon; reconnect proactively.
* :class:`ConnectionExpiry` -- the provider ends this connection at a set time
  (a session time limit); the link moves to a new one before then, at a quiet
  moment.
* :class:`ResumptionHandle` -- a handle the link keeps and passes to the next
  connection's ``connect_messages`` so the provider can resume the session.

A codec instance lives for one connection: the link makes a fresh one per connect,
so state such as "speech in progress" never leaks from a dead connection. Whatever
must survive a reconnect (instructions with the transcript, a resumption handle) is
passed in by the link.

Errors: ``decode`` never raises on what the server sends -- malformed input becomes an
:class:`~voxtrio.messages.ErrorEvent` with ``code="protocol_error"``. ``encode``
raises ``ValueError``/``TypeError`` only for misuse by the caller (e.g. a frame in a
format the codec did not declare).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from ..audio import AudioFormat
from ..messages import Event, LinkInput

__all__ = [
    "MAX_ERROR_TEXT",
    "Capabilities",
    "ConnectionExpiry",
    "GoAway",
    "LinkSignal",
    "Ready",
    "ResumptionHandle",
    "Verdict",
    "WireCodec",
    "default_close_verdict",
    "default_rejection_verdict",
    "excerpt",
]

#: The longest piece of foreign text (server message, bad payload) copied into an
#: error message; a hostile or broken server must not blow up logs.
MAX_ERROR_TEXT = 300


def excerpt(text: str | bytes, limit: int = MAX_ERROR_TEXT, *, quote: bool = False) -> str:
    """A short excerpt of foreign ``text`` for error messages.

    Bytes, and text when ``quote`` is true, are shown as their ``repr`` (so control
    characters cannot garble a log line). Anything longer than ``limit`` characters is
    cut and its total length appended, so a megabyte of junk stays a one-liner.
    """
    head = text[: limit + 1]
    shown = repr(head) if quote or isinstance(head, bytes) else str(head)
    if len(text) > limit or len(shown) > limit:
        unit = "bytes" if isinstance(text, bytes) else "chars"
        return f"{shown[:limit]}... ({len(text)} {unit})"
    return shown


@attrs.frozen
class Capabilities:
    """What a provider can do, declared by its codec; the session checks it.

    An operation the provider lacks raises
    :class:`~voxtrio.errors.UnsupportedError` at the call instead of being sent
    nowhere.

    Attributes:
        manual_commit: the app can end and commit an input segment by hand
            (``Session.commit``).
        clear_input: the app can discard the input segment in progress
            (``Session.clear_input``).
        server_vad: the provider detects the user's turns itself.
        cancel_reply: a reply in progress can be cancelled at the provider.
        truncation: the provider can be told how much of a reply item was heard
            (``Session.truncate``).
        resumption: the provider hands out resumption handles
            (:class:`ResumptionHandle`) and accepts one back on connect.
        tool_calls: the model can call tools.
        tool_cancellation: the provider can cancel a tool call it made.
        input_transcription: the provider transcribes the user's speech.
        replies_after_tool_result: the model goes on by itself once it has a tool
            result (else the session's tool runner asks for a reply).
        session_update: instructions and tools can change mid-session
            (``Session.update_instructions``, ``Session.update_tools``).
    """

    manual_commit: bool = False
    clear_input: bool = False
    server_vad: bool = False
    cancel_reply: bool = False
    truncation: bool = False
    resumption: bool = False
    tool_calls: bool = False
    tool_cancellation: bool = False
    input_transcription: bool = False
    replies_after_tool_result: bool = False
    session_update: bool = False


class Verdict(enum.Enum):
    """What the link does after a connection ended or was refused."""

    RETRY = "retry"
    FATAL = "fatal"


#: HTTP statuses of a refused handshake that no retry can mend: a bad request, a
#: rejected key, a wrong path.
_FATAL_HTTP = frozenset({400, 401, 403, 404})


def default_rejection_verdict(status: int) -> Verdict:
    """The usual reading of a refused websocket handshake: a client error that no
    retry mends (400, 401, 403, 404) is final, anything else is retried."""
    return Verdict.FATAL if status in _FATAL_HTTP else Verdict.RETRY


def default_close_verdict(code: int | None) -> Verdict:
    """The usual reading of a close code: 1008 (policy violation) is final, every
    other code -- and a connection that ended with none -- is retried."""
    return Verdict.FATAL if code == 1008 else Verdict.RETRY


@attrs.frozen
class LinkSignal:
    """Base class of the connection-level facts a codec reports to the link."""


@attrs.frozen
class Ready(LinkSignal):
    """The provider accepted the connection; audio may flow.

    Attributes:
        session_id: the provider's id for this session, when it gives one.
    """

    session_id: str | None = None


@attrs.frozen
class GoAway(LinkSignal):
    """The server will close this connection soon; reconnect before it does.

    Attributes:
        time_left_s: seconds until the server closes, when it says.
    """

    time_left_s: float | None = None


@attrs.frozen
class ConnectionExpiry(LinkSignal):
    """The provider ends this connection at a set time (a session time limit).

    The link moves to a new connection before then, at a moment with nothing in
    flight (see :class:`~voxtrio.actors.link.ReconnectPolicy`, ``expiry_margin_s``),
    and treats a close once that moment has come as the scheduled end, not as a
    fault.

    Attributes:
        at_unix_s: when the connection ends, in seconds since the Unix epoch (the
            provider's wall clock; a codec has no clock, so the link turns it into
            time left against its own).
    """

    at_unix_s: float


@attrs.frozen
class ResumptionHandle(LinkSignal):
    """A new session-resumption handle: pass it to the next ``connect_messages``.

    Attributes:
        handle: the opaque handle (``None``: the previous handle is no longer valid).
        resumable: whether the session can be resumed right now.
        last_consumed_index: the index (0-based, counted per connection over the
            messages the link sent after ``connect_messages``) of the last client
            message the provider has consumed; on resumption the link resends
            exactly the ones after it. None: the provider does not say.
    """

    handle: str | None = attrs.field(default=None, repr=False)
    resumable: bool = True
    last_consumed_index: int | None = None


@runtime_checkable
class WireCodec(Protocol):
    """What a provider codec offers the generic link. Pure and synchronous.

    ``input_format`` is the exact format of the audio ``encode`` accepts (and declares
    to the provider); ``output_format`` is the format of the reply audio ``decode``
    yields. ``wait_for_ready``: the link sends no input before ``decode`` has yielded
    a :class:`Ready`. ``capabilities``: what the provider can do (with
    ``resumption``, the provider may send :class:`ResumptionHandle` signals and
    accepts them back on connect). The codec, not the link, knows what the
    provider's close codes and handshake refusals mean: :meth:`classify_close` and
    :meth:`classify_rejection` say whether to retry.
    """

    @property
    def provider(self) -> str: ...

    @property
    def input_format(self) -> AudioFormat: ...

    @property
    def output_format(self) -> AudioFormat: ...

    @property
    def wait_for_ready(self) -> bool: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def classify_close(self, code: int | None, reason: str | None) -> Verdict:
        """Whether a connection the server closed with ``code`` is worth retrying."""
        ...

    def classify_rejection(self, status: int) -> Verdict:
        """Whether a handshake refused with HTTP ``status`` is worth retrying."""
        ...

    def connect_messages(
        self, instructions: str, *, resumption_handle: str | None = None
    ) -> Sequence[str | bytes]:
        """The messages to send, in order, right after the websocket opens."""
        ...

    def encode(self, msg: LinkInput) -> Sequence[str | bytes]:
        """Wire messages for one link input (possibly none, possibly several).

        Raises:
            ValueError: audio in a format other than ``input_format``, or a control
                with an invalid value.
            TypeError: not a link input.
        """
        ...

    def decode(self, data: str | bytes) -> Sequence[Event | LinkSignal]:
        """Events and link signals for one message from the server. Never raises."""
        ...
