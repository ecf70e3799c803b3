"""Transcript storage backends: where the conversation is kept between connections.

* :class:`MemoryTranscriptStore` -- the default; gone with the process.
* :class:`SqliteTranscriptStore` -- a file on this host (WAL mode, owner-only).
* :class:`PostgresTranscriptStore` -- a PostgreSQL server shared by many workers.

Every backend meets :class:`TranscriptStore`; the session's store actor writes to it.
"""

from .base import (
    DURABILITY_BOUND_S,
    StoreLostError,
    TranscriptStore,
    check_session_id,
    check_store,
)
from .memory import MemoryTranscriptStore
from .postgres import PostgresStoreError, PostgresTranscriptStore, StoreUnavailableError
from .sqlite import SCHEMA_VERSION, SqliteTranscriptStore

__all__ = [
    "DURABILITY_BOUND_S",
    "SCHEMA_VERSION",
    "MemoryTranscriptStore",
    "PostgresStoreError",
    "PostgresTranscriptStore",
    "SqliteTranscriptStore",
    "StoreLostError",
    "StoreUnavailableError",
    "TranscriptStore",
    "check_session_id",
    "check_store",
]
