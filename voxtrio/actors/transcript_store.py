"""The transcript store, for use on its own: events in, a stored transcript out.

Inside a session the hub owns the fold and hands changed items to the writer actor
(:mod:`voxtrio.actors.transcript_writer`); no reply channel travels with the events.
This module keeps the standalone form -- an actor that consumes a channel of events,
folds them with :class:`~voxtrio.codecs.transcript.TranscriptBuilder` and writes them
through that writer -- and the names outside code imports from here: the backends
(:class:`MemoryTranscriptStore`, :class:`SqliteTranscriptStore`), :data:`SCHEMA_VERSION`,
:data:`DURABILITY_BOUND_S`, :func:`check_store`, :func:`check_session_id`.

Durability is the writer's (see :mod:`voxtrio.actors.transcript_writer`): an item whose
event was delivered to this actor is committed within :data:`DURABILITY_BOUND_S` on a
healthy disk; when the input ends or the actor is cancelled, everything pending -- and
every event already in the input channel -- is still written, for up to
``close_timeout_s``; what is not is reported as lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TypeAlias

import trio

from ..messages import Event
from ..stores.base import DURABILITY_BOUND_S, TranscriptStore, check_session_id, check_store
from ..stores.memory import MemoryTranscriptStore
from ..stores.sqlite import SCHEMA_VERSION, SqliteTranscriptStore
from . import transcript_writer
from .transcript_writer import _STORE_ERRORS as _STORE_ERRORS
from .transcript_writer import TranscriptRecorder

# ``_STORE_ERRORS``: the faults the writer reports and retries (the store contract
# tests check backends raise these); still importable from where it lived.

__all__ = [
    "DURABILITY_BOUND_S",
    "SCHEMA_VERSION",
    "MemoryTranscriptStore",
    "SqliteTranscriptStore",
    "StoreInput",
    "TranscriptRecorder",
    "TranscriptStore",
    "check_session_id",
    "check_store",
    "run",
]

#: What the standalone actor consumes (the session's events; kept for old imports).
StoreInput: TypeAlias = Event


def _take_buffered(
    receive: trio.MemoryReceiveChannel[Event], recorder: TranscriptRecorder
) -> None:
    """Fold in what is already in the input but was not read (the actor was
    cancelled): whoever sent it may have published it, so a subscriber may have seen it."""
    while True:
        try:
            event = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        recorder.record_nowait(event)


async def run(
    receive: trio.MemoryReceiveChannel[Event],
    *,
    store: TranscriptStore,
    session_id: str,
    errors: trio.MemorySendChannel[Event] | None = None,
    flush_interval_s: float = 0.05,
    batch_items: int = 256,
    max_pending: int = 8192,
    close_timeout_s: float = 5.0,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[TranscriptRecorder] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record the events from ``receive`` in ``store`` until ``receive`` ends.

    Reports readiness with the :class:`TranscriptRecorder` it feeds, whose
    ``items`` are the transcript so far (stored or not). Everything else -- loading
    a resumed transcript, batching, fault reports on ``errors`` (closed on exit),
    the last writes bounded by ``close_timeout_s`` -- is
    :func:`voxtrio.actors.transcript_writer.run`'s.

    Raises:
        ValueError, TypeError: bad arguments.
    """
    transcript_writer.check_writer_args(
        store,
        session_id,
        flush_interval_s=flush_interval_s,
        batch_items=batch_items,
        max_pending=max_pending,
        close_timeout_s=close_timeout_s,
    )
    writer = partial(
        transcript_writer.run,
        store=store,
        session_id=session_id,
        errors=errors,
        flush_interval_s=flush_interval_s,
        batch_items=batch_items,
        max_pending=max_pending,
        close_timeout_s=close_timeout_s,
        clock=clock,
    )
    with receive:
        async with trio.open_nursery() as nursery:
            recorder: TranscriptRecorder = await nursery.start(writer)
            try:
                task_status.started(recorder)
                async for event in receive:
                    await recorder.record(event)
            finally:
                _take_buffered(receive, recorder)
                recorder.close()
