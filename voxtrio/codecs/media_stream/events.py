"""The events of a telephony media stream, either way, as values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

import attrs

from ...audio import Encoding

SUPPORTED_ENCODING: Final = "audio/x-mulaw"
#: The A-law stream's ``mediaFormat.encoding`` (the ``audio/x-mulaw`` shape's sibling).
ALAW_ENCODING: Final = "audio/x-alaw"
SUPPORTED_RATE: Final = 8000
#: The media encodings the front door takes, as voxtrio encodings (8 kHz mono each).
SUPPORTED_ENCODINGS: Final[dict[str, Encoding]] = {
    SUPPORTED_ENCODING: "mulaw",
    ALAW_ENCODING: "alaw",
}


@attrs.frozen
class MediaFormat:
    """A stream's ``mediaFormat``: 8 kHz mono mu-law (``audio/x-mulaw``) or A-law
    (``audio/x-alaw``) is supported."""

    encoding: str = SUPPORTED_ENCODING
    sample_rate: int = SUPPORTED_RATE
    channels: int = 1

    @property
    def supported(self) -> bool:
        return (
            self.encoding in SUPPORTED_ENCODINGS
            and self.sample_rate == SUPPORTED_RATE
            and self.channels == 1
        )

    @property
    def g711(self) -> Encoding:
        """``"mulaw"`` or ``"alaw"``: the voxtrio encoding of a supported format."""
        try:
            return SUPPORTED_ENCODINGS[self.encoding]
        except KeyError:
            raise ValueError(f"unsupported media encoding {self.encoding!r}") from None


@attrs.frozen
class Connected:
    protocol: str = "Call"
    version: str = "1.0.0"


@attrs.frozen
class Start:
    """The stream begins: ``call_sid`` names the call (a reconnect keeps it)."""

    stream_sid: str
    call_sid: str
    media_format: MediaFormat = MediaFormat()
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict)
    tracks: tuple[str, ...] = ("inbound",)
    account_sid: str | None = None


@attrs.frozen
class Media:
    """One chunk of caller audio: ``payload`` is raw mu-law bytes (decoded base64)."""

    stream_sid: str
    payload: bytes
    chunk: int
    timestamp_ms: int
    track: str = "inbound"


@attrs.frozen
class Mark:
    """Inbound: playout reached the mark ``name`` we sent. Outbound: a mark to send."""

    stream_sid: str
    name: str


@attrs.frozen
class Dtmf:
    stream_sid: str
    digit: str
    track: str = "inbound_track"


@attrs.frozen
class Stop:
    stream_sid: str
    call_sid: str | None = None


@attrs.frozen
class StreamProtocolError:
    """A message we could not take. ``fatal``: the stream cannot go on (close it,
    with ``reason`` as the close reason)."""

    reason: str
    code: str = "malformed_message"
    fatal: bool = False


@attrs.frozen
class OutboundMedia:
    stream_sid: str
    payload: bytes


@attrs.frozen
class Clear:
    stream_sid: str


InboundEvent: TypeAlias = Connected | Start | Media | Mark | Dtmf | Stop | StreamProtocolError
OutboundEvent: TypeAlias = OutboundMedia | Mark | Clear | StreamProtocolError
