"""The loopback OpenAI Realtime server and its helpers, by their historical path.

Everything lives in :mod:`voxtrio.testing.openai` now (oracle, VAD, scripts, the
sans-IO fake service, the wsproto server, the codec pair); this module re-exports the
names it always had, so ``from voxtrio.testing.openai_server import ...`` keeps working.
"""

from __future__ import annotations

from .openai import (
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
    "EnergyVad",
    "LoopbackClosedError",
    "LoopbackConnection",
    "OpenAILoopback",
    "Outgoing",
    "open_openai_loopback",
    "openai_oracle_available",
    "transcription_completed_event",
    "validate_client_event",
    "validate_server_event",
]
