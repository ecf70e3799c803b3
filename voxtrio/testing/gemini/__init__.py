"""Test doubles for Gemini Live: a sans-IO fake service and a codec pair.

* :class:`GeminiService` -- one connection of a fake service, pure (no trio):
  reads client messages, scripts the model (transcripts in pieces, replies,
  ``interrupted``, goAway, resumption updates with consumed indexes, tool calls);
* :class:`GeminiSessions` -- the sessions resumption handles restore;
* :class:`GeminiPair` -- codec and service wired in memory, for socket-free tests;
* :func:`open_gemini_loopback` -- the service over a real websocket on 127.0.0.1.
"""

from .pair import GeminiPair
from .server import (
    GeminiConnection,
    GeminiLoopback,
    GeminiScript,
    GeminiToolCall,
    open_gemini_loopback,
)
from .service import (
    ClientRecord,
    CloseConnection,
    GeminiService,
    GeminiSessions,
    Outgoing,
    SessionState,
)

__all__ = [
    "ClientRecord",
    "CloseConnection",
    "GeminiConnection",
    "GeminiLoopback",
    "GeminiPair",
    "GeminiScript",
    "GeminiToolCall",
    "GeminiService",
    "GeminiSessions",
    "Outgoing",
    "SessionState",
    "open_gemini_loopback",
]
