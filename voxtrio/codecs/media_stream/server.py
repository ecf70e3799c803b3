"""The server side of one media stream: order and format checks over the parser."""

from __future__ import annotations

from .build import build_clear, build_mark, build_media
from .events import (
    SUPPORTED_ENCODINGS,
    SUPPORTED_RATE,
    Connected,
    InboundEvent,
    Media,
    Start,
    Stop,
    StreamProtocolError,
)
from .parse import parse_inbound


class MediaStreamServerCodec:
    """The server side of one media stream: checks order and format.

    ``start`` must come (after an optional ``connected``) before ``media``, ``mark``
    or ``dtmf``; a format other than 8 kHz mono mu-law or A-law is a fatal error
    (``unsupported_media_format``). After ``stop`` nothing more is taken.
    """

    def __init__(self) -> None:
        self.start: Start | None = None
        self.stopped = False
        self.next_chunk = 1

    @property
    def stream_sid(self) -> str | None:
        return self.start.stream_sid if self.start is not None else None

    def receive(self, data: str | bytes) -> list[InboundEvent]:
        """Take one websocket message; returns what it meant (never raises)."""
        event = parse_inbound(data)
        if event is None or isinstance(event, StreamProtocolError | Connected):
            return [] if event is None else [event]
        if self.stopped:
            return [StreamProtocolError("a message after 'stop'", "after_stop")]
        if isinstance(event, Start):
            if self.start is not None:
                return [StreamProtocolError("a second 'start'", "duplicate_start")]
            if not event.media_format.supported:
                f = event.media_format
                return [
                    StreamProtocolError(
                        f"unsupported media format {f.encoding} {f.sample_rate} Hz "
                        f"{f.channels} ch; only {' or '.join(SUPPORTED_ENCODINGS)} "
                        f"{SUPPORTED_RATE} Hz mono",
                        "unsupported_media_format",
                        fatal=True,
                    )
                ]
            self.start = event
            return [event]
        if self.start is None:
            return [
                StreamProtocolError(
                    f"{type(event).__name__.lower()!r} before 'start'", "before_start", fatal=True
                )
            ]
        if event.stream_sid != self.start.stream_sid:
            return [StreamProtocolError("a message for another streamSid", "wrong_stream")]
        if isinstance(event, Stop):
            self.stopped = True
        elif isinstance(event, Media) and event.chunk:
            self.next_chunk = event.chunk + 1
        return [event]

    def media(self, payload: bytes) -> str:
        """Outbound audio (raw G.711 bytes, in the stream's encoding)."""
        return build_media(self._sid(), payload)

    def mark(self, name: str) -> str:
        return build_mark(self._sid(), name)

    def clear(self) -> str:
        return build_clear(self._sid())

    def _sid(self) -> str:
        if self.start is None:
            raise RuntimeError("no stream yet: nothing can be sent before 'start'")
        return self.start.stream_sid
