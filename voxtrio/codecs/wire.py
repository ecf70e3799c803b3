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

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import attrs

from ..messages import Event, LinkInput
from .audio import AudioFormat

__all__ = [
    "MAX_ERROR_TEXT",
    "GoAway",
    "LinkSignal",
    "Ready",
    "ResumptionHandle",
    "WireCodec",
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
class ResumptionHandle(LinkSignal):
    """A new session-resumption handle: pass it to the next ``connect_messages``.

    Attributes:
        handle: the opaque handle (``None``: the previous handle is no longer valid).
        resumable: whether the session can be resumed right now.
    """

    handle: str | None = attrs.field(default=None, repr=False)
    resumable: bool = True


@runtime_checkable
class WireCodec(Protocol):
    """What a provider codec offers the generic link. Pure and synchronous.

    ``input_format`` is the exact format of the audio ``encode`` accepts (and declares
    to the provider); ``output_format`` is the format of the reply audio ``decode``
    yields. ``wait_for_ready``: the link sends no input before ``decode`` has yielded
    a :class:`Ready`. ``supports_resumption``: the provider may send
    :class:`ResumptionHandle` signals and accepts them back on connect.
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
    def supports_resumption(self) -> bool: ...

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
