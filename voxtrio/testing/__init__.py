"""Test doubles for voxtrio sessions and for apps built on them.

* :func:`open_openai_loopback` -- a loopback OpenAI Realtime server on 127.0.0.1 that
  speaks the real websocket protocol, validates and records what clients send, and
  can be scripted (transcripts, replies, errors, drops, rejections, stalls);
* :func:`open_gemini_loopback` -- the same for Gemini Live (:mod:`voxtrio.testing.gemini`);
* :class:`RecordingProvider` -- an in-process provider with no network at all;
* :func:`open_serve_worker` -- a ``voxtrio serve`` worker as a child process
  (:mod:`voxtrio.testing.serve_worker`); a child that dies is a :class:`ChildFailed`
  (:mod:`voxtrio.testing.processes`).
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
from .processes import ChildFailed
from .serve_worker import open_serve_worker

__all__ = [
    "ChildFailed",
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
    "open_serve_worker",
    "openai_oracle_available",
    "transcription_completed_event",
    "validate_client_event",
    "validate_server_event",
]
