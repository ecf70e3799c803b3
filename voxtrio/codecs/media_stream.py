"""Telephony media streams (the Twilio Media Streams JSON shape), sans-IO.

A telephony provider opens a websocket to us and sends one JSON text message per
event: ``connected``, ``start`` (the stream and call ids, the audio format, custom
parameters), ``media`` (base64 G.711 mu-law, 8 kHz mono, in ``chunk`` order),
``mark`` (a mark we sent has been played), ``dtmf`` and ``stop``. We answer with
``media`` (audio to play), ``mark`` (tell me when playout gets here) and ``clear``
(flush what you have not played yet: a barge-in).

:class:`MediaStreamServerCodec` is the server side: :meth:`~MediaStreamServerCodec.receive`
turns one message into events and never raises -- malformed input becomes a
:class:`StreamProtocolError` (``fatal`` when the stream cannot go on, e.g. an audio
format we do not take). The ``build_*`` functions make the messages of either side;
:func:`parse_outbound` reads the server's messages (for a test client).
No I/O, no clock, no trio.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import attrs

__all__ = [
    "SUPPORTED_ENCODING",
    "SUPPORTED_RATE",
    "Clear",
    "Connected",
    "Dtmf",
    "InboundEvent",
    "Mark",
    "Media",
    "MediaFormat",
    "MediaStreamServerCodec",
    "OutboundEvent",
    "OutboundMedia",
    "Start",
    "Stop",
    "StreamProtocolError",
    "build_clear",
    "build_connected",
    "build_dtmf",
    "build_inbound_mark",
    "build_inbound_media",
    "build_mark",
    "build_media",
    "build_start",
    "build_stop",
    "parse_inbound",
    "parse_outbound",
]

SUPPORTED_ENCODING: Final = "audio/x-mulaw"
SUPPORTED_RATE: Final = 8000


@attrs.frozen
class MediaFormat:
    encoding: str = SUPPORTED_ENCODING
    sample_rate: int = SUPPORTED_RATE
    channels: int = 1

    @property
    def supported(self) -> bool:
        return (self.encoding, self.sample_rate, self.channels) == (
            SUPPORTED_ENCODING,
            SUPPORTED_RATE,
            1,
        )


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


class _Bad(Exception):
    """Internal: a field is missing or of the wrong kind (never escapes this module)."""


def _obj(ev: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = ev.get(key)
    if not isinstance(value, dict):
        raise _Bad(f"{key!r} must be an object")
    return value


def _str(ev: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = ev.get(key, default)
    if not isinstance(value, str):
        raise _Bad(f"{key!r} must be a string")
    return value


def _num(ev: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """Twilio sends counters as decimal strings; take those and plain ints."""
    value = ev.get(key, default)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _Bad(f"{key!r} must be a non-negative integer")


def _sid(ev: Mapping[str, Any], inner: Mapping[str, Any] | None = None) -> str:
    value = ev.get("streamSid", None if inner is None else inner.get("streamSid"))
    if not isinstance(value, str) or not value:
        raise _Bad("'streamSid' must be a non-empty string")
    return value


def _payload(media: Mapping[str, Any]) -> bytes:
    text = _str(media, "payload")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("'payload' is not valid base64") from None


def _start(ev: Mapping[str, Any]) -> Start:
    start = _obj(ev, "start")
    call_sid = _str(start, "callSid")
    if not call_sid:
        raise _Bad("'callSid' must be a non-empty string")
    fmt = _obj(start, "mediaFormat")
    params = start.get("customParameters", {})
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise _Bad("'customParameters' must be an object of strings")
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise _Bad("'tracks' must be a list of strings")
    account = start.get("accountSid")
    return Start(
        stream_sid=_sid(ev, start),
        call_sid=call_sid,
        media_format=MediaFormat(
            _str(fmt, "encoding"), _num(fmt, "sampleRate"), _num(fmt, "channels", 1)
        ),
        custom_parameters=dict(params),
        tracks=tuple(tracks),
        account_sid=account if isinstance(account, str) else None,
    )


def _decode(ev: Mapping[str, Any]) -> InboundEvent | None:
    kind = ev.get("event")
    match kind:
        case "connected":
            return Connected(_str(ev, "protocol", "Call"), _str(ev, "version", "1.0.0"))
        case "start":
            return _start(ev)
        case "media":
            media = _obj(ev, "media")
            return Media(
                _sid(ev),
                _payload(media),
                _num(media, "chunk", 0),
                _num(media, "timestamp", 0),
                _str(media, "track", "inbound"),
            )
        case "mark":
            return Mark(_sid(ev), _str(_obj(ev, "mark"), "name"))
        case "dtmf":
            dtmf = _obj(ev, "dtmf")
            return Dtmf(_sid(ev), _str(dtmf, "digit"), _str(dtmf, "track", "inbound_track"))
        case "stop":
            stop = ev.get("stop")
            call = stop.get("callSid") if isinstance(stop, dict) else None
            return Stop(_sid(ev), call if isinstance(call, str) else None)
        case str():
            return None  # an event type we do not know: ignored, as the shape allows
        case _:
            raise _Bad("'event' must be a string")


def _load(data: str | bytes) -> dict[str, Any]:
    if isinstance(data, bytes):
        raise _Bad("media stream messages are JSON text, got a binary message")
    try:
        ev = json.loads(data)
    except ValueError:
        raise _Bad("the message is not JSON") from None
    if not isinstance(ev, dict):
        raise _Bad("the message is not a JSON object")
    return ev


def parse_inbound(data: str | bytes) -> InboundEvent | None:
    """One message from the telephony side as an event; None for an unknown type.

    Never raises: malformed input is a (non-fatal) :class:`StreamProtocolError`.
    """
    try:
        return _decode(_load(data))
    except _Bad as exc:
        return StreamProtocolError(str(exc))
    except RecursionError:
        return StreamProtocolError("the message nests too deeply")


class MediaStreamServerCodec:
    """The server side of one media stream: checks order and format.

    ``start`` must come (after an optional ``connected``) before ``media``, ``mark``
    or ``dtmf``; a format other than 8 kHz mono mu-law is a fatal error
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
                        f"{f.channels} ch; only {SUPPORTED_ENCODING} {SUPPORTED_RATE} Hz mono",
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
        """Outbound audio (raw mu-law bytes) for this stream."""
        return build_media(self._sid(), payload)

    def mark(self, name: str) -> str:
        return build_mark(self._sid(), name)

    def clear(self) -> str:
        return build_clear(self._sid())

    def _sid(self) -> str:
        if self.start is None:
            raise RuntimeError("no stream yet: nothing can be sent before 'start'")
        return self.start.stream_sid


def _dump(ev: Mapping[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"))


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


# ---------------------------------------------------------------- server -> caller


def build_media(stream_sid: str, payload: bytes) -> str:
    return _dump({"event": "media", "streamSid": stream_sid, "media": {"payload": _b64(payload)}})


def build_mark(stream_sid: str, name: str) -> str:
    return _dump({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def build_clear(stream_sid: str) -> str:
    return _dump({"event": "clear", "streamSid": stream_sid})


def parse_outbound(data: str | bytes) -> OutboundEvent | None:
    """One message from the server (for the telephony side); never raises."""
    try:
        ev = _load(data)
        match ev.get("event"):
            case "media":
                return OutboundMedia(_sid(ev), _payload(_obj(ev, "media")))
            case "mark":
                return Mark(_sid(ev), _str(_obj(ev, "mark"), "name"))
            case "clear":
                return Clear(_sid(ev))
            case str():
                return None
            case _:
                raise _Bad("'event' must be a string")
    except _Bad as exc:
        return StreamProtocolError(str(exc))
    except RecursionError:
        return StreamProtocolError("the message nests too deeply")


# ---------------------------------------------------------------- caller -> server



def _inbound(kind: str, stream_sid: str, body: Mapping[str, Any], seq: int) -> str:
    ev = {"event": kind, "sequenceNumber": str(seq), "streamSid": stream_sid, kind: body}
    return _dump(ev)


def build_connected() -> str:
    return _dump({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def build_start(start: Start, sequence_number: int = 1) -> str:
    f = start.media_format
    body: dict[str, Any] = {
        "streamSid": start.stream_sid,
        "callSid": start.call_sid,
        "tracks": list(start.tracks),
        "customParameters": dict(start.custom_parameters),
        "mediaFormat": {
            "encoding": f.encoding,
            "sampleRate": f.sample_rate,
            "channels": f.channels,
        },
    }
    if start.account_sid is not None:
        body["accountSid"] = start.account_sid
    return _inbound("start", start.stream_sid, body, sequence_number)


def build_inbound_media(media: Media, sequence_number: int = 0) -> str:
    body = {"track": media.track, "chunk": str(media.chunk), "timestamp": str(media.timestamp_ms)}
    return _inbound(
        "media", media.stream_sid, {**body, "payload": _b64(media.payload)}, sequence_number
    )


def build_inbound_mark(mark: Mark, sequence_number: int = 0) -> str:
    return _inbound("mark", mark.stream_sid, {"name": mark.name}, sequence_number)


def build_dtmf(dtmf: Dtmf, sequence_number: int = 0) -> str:
    body = {"track": dtmf.track, "digit": dtmf.digit}
    return _inbound("dtmf", dtmf.stream_sid, body, sequence_number)


def build_stop(stop: Stop, sequence_number: int = 0) -> str:
    body = {"callSid": stop.call_sid} if stop.call_sid is not None else {}
    return _inbound("stop", stop.stream_sid, body, sequence_number)
