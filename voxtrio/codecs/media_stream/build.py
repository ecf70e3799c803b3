"""Writing media stream messages: the server's to the caller, and the telephony
side's to the server (for a test client)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from .events import Dtmf, Mark, Media, Start, Stop


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
