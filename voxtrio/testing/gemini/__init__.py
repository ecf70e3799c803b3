"""Test doubles for Gemini Live: a sans-IO fake service and a codec pair.

* :class:`GeminiService` -- one connection of a fake service, pure (no trio):
  reads client messages, scripts the model (transcripts in pieces, replies,
  ``interrupted``, goAway, resumption updates with consumed indexes, tool calls);
* :class:`GeminiSessions` -- the sessions resumption handles restore;
* :class:`GeminiTurns` -- how the service takes turns by itself (energy VAD or the
  client's activity marks, canned transcripts and replies, barge-in, pacing);
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
from .turns import AutoTurns, GeminiTurns, UserTurn

__all__ = [
    "AutoTurns",
    "ClientRecord",
    "CloseConnection",
    "GeminiConnection",
    "GeminiLoopback",
    "GeminiPair",
    "GeminiScript",
    "GeminiToolCall",
    "GeminiService",
    "GeminiSessions",
    "GeminiTurns",
    "Outgoing",
    "SessionState",
    "UserTurn",
    "open_gemini_loopback",
]
