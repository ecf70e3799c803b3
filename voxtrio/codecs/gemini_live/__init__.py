"""Gemini Live (``BidiGenerateContent``) as a sans-IO wire codec.

* :class:`GeminiLiveConfig` -- the session configuration, validated at construction,
  which becomes the ``setup`` message;
* :class:`GeminiLiveCodec` -- the :class:`~voxtrio.codecs.wire.WireCodec`: 16 kHz
  input audio, 24 kHz reply audio, codec-assigned ids for user turns and replies,
  resumption handles with consumed indexes, goAway;
* :class:`ToolCallCancelled` -- re-exported from :mod:`voxtrio.messages` (the event
  ``toolCallCancellation`` becomes).

Nothing here imports trio.
"""

from ...messages import ToolCallCancelled
from .codec import INPUT_MIME, MAX_AUDIO_MESSAGE_BYTES, GeminiLiveCodec
from .config import (
    DEFAULT_BASE_URL,
    GEMINI_INPUT_RATE,
    GEMINI_OUTPUT_RATE,
    AutomaticVad,
    GeminiLiveConfig,
    auth_headers,
    live_url,
)
from .decode import parse_duration_s

__all__ = [
    "DEFAULT_BASE_URL",
    "GEMINI_INPUT_RATE",
    "GEMINI_OUTPUT_RATE",
    "INPUT_MIME",
    "MAX_AUDIO_MESSAGE_BYTES",
    "AutomaticVad",
    "GeminiLiveCodec",
    "GeminiLiveConfig",
    "ToolCallCancelled",
    "auth_headers",
    "live_url",
    "parse_duration_s",
]
