"""Test doubles for voxtrio sessions and for apps built on them.

* :func:`open_openai_loopback` -- a loopback OpenAI Realtime server on 127.0.0.1 that
  speaks the real websocket protocol, validates and records what clients send, and
  can be scripted (transcripts, replies, errors, drops, rejections, stalls);
* :func:`open_gemini_loopback` -- the same for Gemini Live (:mod:`voxtrio.testing.gemini`);
* :class:`RecordingProvider` -- an in-process provider with no network at all.
"""

from .gemini import GeminiLoopback, GeminiScript, open_gemini_loopback
from .inprocess import RecordingProvider
from .openai import ScriptedToolCall
from .openai_server import (
    ClientEventRecord,
    ConnectionScript,
    EnergyVad,
    LoopbackClosedError,
    LoopbackConnection,
    OpenAILoopback,
    Outgoing,
    open_openai_loopback,
    openai_oracle_available,
    transcription_completed_event,
    validate_client_event,
    validate_server_event,
)

__all__ = [
    "ClientEventRecord",
    "ConnectionScript",
    "ScriptedToolCall",
    "EnergyVad",
    "GeminiLoopback",
    "GeminiScript",
    "LoopbackClosedError",
    "LoopbackConnection",
    "OpenAILoopback",
    "Outgoing",
    "RecordingProvider",
    "open_gemini_loopback",
    "open_openai_loopback",
    "openai_oracle_available",
    "transcription_completed_event",
    "validate_client_event",
    "validate_server_event",
]
