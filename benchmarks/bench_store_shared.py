"""One SQLite store shared by many sessions: is an item seen on disk within the bound?

Each session runs its own transcript writer (:mod:`voxtrio.actors.transcript_writer`,
default settings) against ONE :class:`~voxtrio.stores.SqliteTranscriptStore`, and
hands it a user turn every ``interval`` seconds (staggered). Seen-to-disk is the time
from the hand-over (``record`` returned) to the end of the ``COMMIT`` that made the
item durable (in the store's worker thread: from then on it survives SIGKILL); the
promise is :data:`~voxtrio.stores.DURABILITY_BOUND_S` (0.2 s). The store's
own part is from the item entering the store's queue to the ``COMMIT`` (the writer
queues it at the hand-over, with its deadline, when the store is threaded; else when
its flush timer fires): queue wait and commit, what cross-session batching decides. Items not
committed when the writers close are counted as lost. The event loop's lag (how
late a 10 ms sleep wakes) is measured alongside: every timer of every session
suffers it, the writer's flush timer included; and so are the garbage collector's
pauses (the longest, and their sum), one cause of that lag.

    python -m benchmarks store_shared          # 1, 50, 200 and 300 sessions, 5 s
    python -m benchmarks --quick store_shared  # 50 sessions, 1 s
"""

from __future__ import annotations

import collections
import gc
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from voxtrio.actors import transcript_writer
from voxtrio.actors.transcript_writer import TranscriptRecorder
from voxtrio.codecs.transcript import Item
from voxtrio.messages import Event, InputTranscriptionCompleted
from voxtrio.stores import DURABILITY_BOUND_S, SqliteTranscriptStore

from .results import Table


class _TimedQueue(collections.deque[Any]):
    """The store's queue of appends, noting when each item first entered it (the
    start of the store's part: queue and commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: dict[tuple[str, str], float] = {}

    def append(self, ticket: Any) -> None:
        now = time.perf_counter()
        for item in ticket.items:
            self.queued.setdefault((ticket.session_id, item.key), now)
        super().append(ticket)


class TimedSqliteStore(SqliteTranscriptStore):
    """A SQLite store noting, in its worker thread, when each item's ``COMMIT``
    returned (``time.perf_counter``, the first time only), and when each item
    entered its queue (however the writer hands it over)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.durable: dict[tuple[str, str], float] = {}
        self.timed_queue = _TimedQueue()
        self._queue = self.timed_queue
        self.transactions = 0

    def _write(self, batches: Sequence[tuple[str, list[Item]]]) -> None:
        super()._write(batches)
        now = time.perf_counter()
        self.transactions += 1
        for session_id, items in batches:
            for item in items:
                self.durable.setdefault((session_id, item.key), now)


async def _session(
    store: SqliteTranscriptStore,
    index: int,
    turns: int,
    interval_s: float,
    handed: dict[tuple[str, str], float],
) -> None:
    session_id = f"s{index}"
    errors_tx, errors_rx = trio.open_memory_channel[Event](64)
    run = partial(transcript_writer.run, store=store, session_id=session_id, errors=errors_tx)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_ignore, errors_rx)
        recorder: TranscriptRecorder = await nursery.start(run)
        await trio.sleep(random.random() * interval_s)  # staggered
        for turn in range(turns):
            await recorder.record(InputTranscriptionCompleted(f"u{turn}", f"turn {turn}"))
            handed[(session_id, f"user:u{turn}")] = time.perf_counter()
            await trio.sleep(interval_s)
        recorder.close()


class _GcPauses:
    """A ``gc.callbacks`` entry noting how long each collection stopped the world."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)


async def _lag(lags: list[float]) -> None:
    """How late the event loop wakes a task from a 10 ms sleep."""
    while True:
        due = trio.current_time() + 0.01
        await trio.sleep_until(due)
        lags.append(trio.current_time() - due)


async def _ignore(rx: trio.MemoryReceiveChannel[Event]) -> None:
    async for _ in rx:
        pass


async def _run(path: Path, sessions: int, seconds: float, interval_s: float) -> dict[str, float]:
    turns = max(1, int(seconds / interval_s))
    handed: dict[tuple[str, str], float] = {}
    lags: list[float] = []
    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    with TimedSqliteStore(path) as sqlite:
        store = sqlite
        started = time.perf_counter()
        async with trio.open_nursery() as outer:
            outer.start_soon(_lag, lags)
            async with trio.open_nursery() as nursery:
                for index in range(sessions):
                    nursery.start_soon(_session, store, index, turns, interval_s, handed)
            outer.cancel_scope.cancel()
        wall = time.perf_counter() - started
        gc.callbacks.remove(pauses)
        stored = sum(len(sqlite.items(f"s{i}")) for i in range(sessions))
    latencies = sorted(sqlite.durable[k] - t for k, t in handed.items() if k in sqlite.durable)
    # The store's own part: the item entered its queue -> COMMIT returned.
    queued = sqlite.timed_queue.queued
    own = sorted(sqlite.durable[k] - t for k, t in queued.items() if k in sqlite.durable)
    lags.sort()
    return {
        "items": len(handed),
        "stored": stored,
        "lost": len(handed) - stored,
        "transactions": sqlite.transactions,
        "p50_s": statistics.median(latencies) if latencies else float("nan"),
        "p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "max_s": latencies[-1] if latencies else float("nan"),
        "store_p99_s": own[int(0.99 * (len(own) - 1))] if own else float("nan"),
        "store_max_s": own[-1] if own else float("nan"),
        "lag_p99_s": lags[int(0.99 * (len(lags) - 1))] if lags else float("nan"),
        "lag_max_s": lags[-1] if lags else float("nan"),
        "gc_max_s": max(pauses.pauses, default=0.0),
        "gc_total_s": sum(pauses.pauses),
        "wall_s": wall,
    }


def main(quick: bool = False, sizes: Sequence[int] = ()) -> Table:
    sizes = sizes or ((50,) if quick else (1, 50, 200, 300))
    seconds = 1.0 if quick else 5.0
    interval_s = 0.1
    table = Table(f"store_shared: sessions on one SQLite store, a turn each {interval_s} s")
    print(
        f"{'sessions':>8} {'items':>7} {'lost':>5} {'commits':>8} "
        f"{'p50 s':>7} {'p99 s':>7} {'max s':>7} {'bound':>6} "
        f"{'store99':>7} {'storemx':>7} "
        f"{'lag p99':>7} {'lag max':>7} {'gc max':>7} {'gc sum':>7}"
    )
    met = True
    with tempfile.TemporaryDirectory() as tmp:
        for sessions in sizes:
            r = trio.run(_run, Path(tmp) / f"shared-{sessions}.db", sessions, seconds, interval_s)
            ok = r["max_s"] <= DURABILITY_BOUND_S and r["lost"] == 0
            met = met and ok
            print(
                f"{sessions:>8} {r['items']:>7.0f} {r['lost']:>5.0f} {r['transactions']:>8.0f} "
                f"{r['p50_s']:>7.3f} {r['p99_s']:>7.3f} {r['max_s']:>7.3f} "
                f"{'met' if ok else 'MISSED':>6} {r['store_p99_s']:>7.3f} {r['store_max_s']:>7.3f} "
                f"{r['lag_p99_s']:>7.3f} {r['lag_max_s']:>7.3f} "
                f"{r['gc_max_s']:>7.3f} {r['gc_total_s']:>7.3f}"
            )
            table.add(sessions=sessions, **r, bound_met=ok)
    table.meta.update(bound_s=DURABILITY_BOUND_S, seconds=seconds, interval_s=interval_s,
                      target_met=met)  # fmt: skip
    return table


if __name__ == "__main__":
    import sys

    main(sizes=[int(n) for n in sys.argv[1:]])
