"""Test doubles for Gemini Live: a sans-IO fake service and a codec pair.

* :class:`GeminiService` -- one connection of a fake service, pure (no trio):
  reads client messages, scripts the model (transcripts in pieces, replies,
  ``interrupted``, goAway, resumption updates with consumed indexes, tool calls);
* :class:`GeminiSessions` -- the sessions resumption handles restore;
* :class:`GeminiPair` -- codec and service wired in memory, for socket-free tests.
"""

from .pair import GeminiPair
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
    "GeminiPair",
    "GeminiService",
    "GeminiSessions",
    "Outgoing",
    "SessionState",
]
