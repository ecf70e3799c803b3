"""A sans-IO codec for the OpenAI Realtime API (GA) websocket protocol.

:class:`OpenAIRealtimeCodec` turns voxtrio link inputs into OpenAI client events
(JSON text) and OpenAI server events into voxtrio events. It is pure and synchronous:
the generic provider link does the I/O.

Wire facts this package relies on (see ``PROTOCOLS.md``):

* input and output audio are ``audio/pcm``: 16-bit little-endian mono at exactly
  24 000 Hz -- the codec refuses frames of any other rate or channel count, so the
  declared rate always equals the real one;
* one ``input_audio_buffer.append`` carries at most 15 MiB; the codec cuts large
  batches into several appends well below that;
* a truncate at 0 ms is rejected by the service: the codec sends none then;
* input transcriptions may complete out of order: every event keeps its item id;
* some server errors mean "stop" (a rejected key, no quota, an unknown model): they
  decode to ``ErrorEvent(recoverable=False)``.

A codec instance serves one connection; make a fresh one per (re)connect. Modules:
:mod:`.config` (the validated :class:`OpenAIRealtimeConfig`, turn detection, tools,
URL and headers), :mod:`.encode`, :mod:`.decode`, :mod:`.state` (what a connection
remembers) and :mod:`.codec` (the codec that ties them together).
"""

from .codec import OpenAIRealtimeCodec
from .config import (
    DEFAULT_BASE_URL,
    MAX_APPEND_BYTES,
    OPENAI_RATE,
    FunctionTool,
    OpenAIRealtimeConfig,
    SemanticVad,
    ServerVad,
    TurnDetection,
    auth_headers,
    realtime_url,
)
from .decode import FATAL_ERROR_CODES, is_fatal_error

__all__ = [
    "DEFAULT_BASE_URL",
    "FATAL_ERROR_CODES",
    "MAX_APPEND_BYTES",
    "OPENAI_RATE",
    "FunctionTool",
    "OpenAIRealtimeCodec",
    "OpenAIRealtimeConfig",
    "SemanticVad",
    "ServerVad",
    "TurnDetection",
    "auth_headers",
    "is_fatal_error",
    "realtime_url",
]
