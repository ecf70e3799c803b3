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

Layout: ``events`` (the values), ``parse`` (reading), ``build`` (writing),
``server`` (:class:`MediaStreamServerCodec`).
"""

from __future__ import annotations

from .build import _b64 as _b64
from .build import _dump as _dump
from .build import _inbound as _inbound
from .build import (
    build_clear,
    build_connected,
    build_dtmf,
    build_inbound_mark,
    build_inbound_media,
    build_mark,
    build_media,
    build_start,
    build_stop,
)
from .events import (
    ALAW_ENCODING,
    SUPPORTED_ENCODING,
    SUPPORTED_ENCODINGS,
    SUPPORTED_RATE,
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
from .parse import _Bad as _Bad
from .parse import _decode as _decode
from .parse import _load as _load
from .parse import _num as _num
from .parse import _obj as _obj
from .parse import _payload as _payload
from .parse import _sid as _sid
from .parse import _start as _start
from .parse import _str as _str
from .parse import parse_inbound, parse_outbound
from .server import MediaStreamServerCodec

__all__ = [
    "ALAW_ENCODING",
    "SUPPORTED_ENCODING",
    "SUPPORTED_ENCODINGS",
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
