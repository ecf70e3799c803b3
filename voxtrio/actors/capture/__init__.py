"""Capture actors: where audio enters a session.

Each capture is a small object holding its configuration, with an
``async run(send, *, events, counter, task_status)`` method that sends
:class:`~voxtrio.codecs.AudioFrame` chunks in the source's own format and closes
``send`` when the source ends.

Drop policy. A ``realtime`` source is live audio: it never blocks on a full channel;
a chunk that finds the channel full is dropped, counted, and reported as an
:class:`~voxtrio.messages.AudioDropped` event (at most one report per second of
drops, plus one when the source ends). A non-realtime source (a file read as fast as
the pipeline takes it) waits instead, and loses nothing.

Layout: ``_base`` (the protocol, the sender and its drop policy, the shared ``run``),
``files`` (arrays and WAV files), ``stream`` (byte streams), ``mic`` (microphone).
"""

from __future__ import annotations

from ._base import _REPORT_INTERVAL_S as _REPORT_INTERVAL_S
from ._base import Capture
from ._base import _Sender as _Sender
from .files import ArrayCapture, FileCapture, WavCapture
from .files import _check_wav as _check_wav
from .files import _send_chunks as _send_chunks
from .mic import MicCapture
from .stream import ByteStreamCapture

__all__ = [
    "ArrayCapture",
    "ByteStreamCapture",
    "Capture",
    "FileCapture",
    "MicCapture",
    "WavCapture",
]
