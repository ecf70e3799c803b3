"""Reading media stream messages: the telephony side's (:func:`parse_inbound`) and
the server's (:func:`parse_outbound`, for a test client). Neither raises."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .events import (
    Clear,
    Connected,
    Dtmf,
    InboundEvent,
    Mark,
    Media,
    MediaFormat,
    OutboundEvent,
    OutboundMedia,
    Start,
    Stop,
    StreamProtocolError,
)


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
