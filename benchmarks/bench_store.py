"""Transcript store: items written per second through the store actor, and what the
SQLite backend adds to the event loop's latency, against the in-memory backend.

Each run starts a fresh store actor (``voxtrio.actors.transcript_store.run``) fed through
a 256-slot channel, as the session's hub feeds it, with alternating user
(``InputTranscriptionCompleted``) and assistant (``ReplyTextDone``) events of ~60
characters, one item each. A ticker task in the same trio loop wakes every 1 ms and
records how late it woke; its lateness is the latency any other task in the session
(the provider link, playback) would see.

Two loads, each run for both backends, interleaved, best of several runs:

- ``flood``: events as fast as the actor takes them; items/s counts from the first send
  until the actor returned with everything committed (so it includes the final flush).
- ``paced 2,000/s``: two items every millisecond for a few seconds, the sustained rate
  the store must keep up with; items/s is what was achieved (sent and committed).

Lateness of a 1 ms sleep is never below 0 and up to ~1 ms even on an idle loop (epoll's
timeout has millisecond resolution), so the memory backend's row is the baseline and
"added p99" is the SQLite row's p99 minus the memory row's, in the same run.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from benchmarks.results import Table
from voxtrio.actors import transcript_store as ts
from voxtrio.messages import InputTranscriptionCompleted, ReplyTextDone

TARGET_RATE = 2_000  # items/s, sustained
TARGET_ADDED_P99_MS = 1.0
TICK_S = 0.001
TEXT = "so I was wondering whether the train to Bergen leaves at nine or ten"


@dataclass
class Run:
    items: int
    seconds: float
    lateness_ms: list[float]

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def pct(self, q: float) -> float:
        data = sorted(self.lateness_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q * len(data)))]


async def _one_run(store: ts.TranscriptStore, items: int, rate: float | None) -> Run:
    lateness: list[float] = []
    done = trio.Event()

    async def ticker() -> None:
        deadline = trio.current_time()
        while not done.is_set():
            deadline += TICK_S
            await trio.sleep_until(deadline)
            now = trio.current_time()
            lateness.append((now - deadline) * 1000)
            deadline = max(deadline, now - TICK_S)  # no catch-up bursts after a stall

    send, receive = trio.open_memory_channel[ts.StoreInput](256)
    async with trio.open_nursery() as outer:
        outer.start_soon(ticker)
        await trio.sleep(0.05)  # let the ticker settle
        started = time.perf_counter()
        t0 = trio.current_time()
        async with trio.open_nursery() as inner:
            await inner.start(partial(ts.run, receive, store=store, session_id="bench"))
            async with send:
                for n in range(items // 2):
                    await send.send(InputTranscriptionCompleted(f"u{n}", TEXT))
                    await send.send(ReplyTextDone(TEXT, f"r{n}", f"a{n}"))
                    if rate is not None:
                        await trio.sleep_until(t0 + (n + 1) * 2 / rate)
        seconds = time.perf_counter() - started
        done.set()
    return Run(items // 2 * 2, seconds, lateness)


def _measure(kind: str, items: int, rate: float | None, tmp: Path, index: int) -> Run:
    store: ts.TranscriptStore
    if kind == "memory":
        store = ts.MemoryTranscriptStore()
        run = trio.run(_one_run, store, items, rate)
        assert len(store.items("bench")) == run.items
        return run
    with ts.SqliteTranscriptStore(tmp / f"bench-{index}.db") as sqlite:
        run = trio.run(_one_run, sqlite, items, rate)
        assert len(sqlite.items("bench")) == run.items
    return run


def _table(title: str, best: dict[str, Run]) -> Table:
    base = best["memory"]
    print(f"\n{title}")
    table = Table(f"store: {title}")
    print(
        f"{'backend':<8} {'items':>7} {'items/s':>10} {'vs memory':>9} "
        f"{'tick p50 ms':>11} {'p99 ms':>7} {'max ms':>7} {'added p99':>9}"
    )
    for kind, run in best.items():
        added = run.pct(0.99) - base.pct(0.99)
        print(
            f"{kind:<8} {run.items:>7} {run.rate:>10,.0f} {run.rate / base.rate:>9.2f} "
            f"{run.pct(0.5):>11.3f} {run.pct(0.99):>7.3f} {max(run.lateness_ms):>7.3f} "
            f"{added:>+9.3f}"
        )
        table.add(backend=kind, items=run.items, items_per_s=run.rate,
                  ratio_to_memory=run.rate / base.rate, tick_p50_ms=run.pct(0.5),
                  tick_p99_ms=run.pct(0.99), tick_max_ms=max(run.lateness_ms),
                  added_p99_ms=added)
    return table


def main(quick: bool) -> list[Table]:
    repeats = 1 if quick else 3
    flood_items = 4_000 if quick else 40_000
    paced_s = 1.0 if quick else 5.0
    paced_items = int(TARGET_RATE * paced_s)
    kinds = ("memory", "sqlite")
    results: dict[str, dict[str, list[Run]]] = {
        load: {k: [] for k in kinds} for load in ("flood", "paced")
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        index = 0
        for _ in range(repeats):
            for kind in kinds:  # interleaved, so machine noise hits both alike
                for load, items, rate in (
                    ("flood", flood_items, None),
                    ("paced", paced_items, float(TARGET_RATE)),
                ):
                    gc.collect()
                    index += 1
                    results[load][kind].append(_measure(kind, items, rate, tmp, index))
    best_flood = {k: max(runs, key=lambda r: r.rate) for k, runs in results["flood"].items()}
    # For the paced load the rate is fixed: the best run is the least late one.
    best_paced = {k: min(runs, key=lambda r: r.pct(0.99)) for k, runs in results["paced"].items()}
    tables = [
        _table(f"flood: {flood_items:,} items as fast as possible (best of {repeats})", best_flood),
        _table(f"paced: {TARGET_RATE:,} items/s for {paced_s:.0f} s (best of {repeats})",
               best_paced),
    ]
    sq, mem = best_paced["sqlite"], best_paced["memory"]
    added = sq.pct(0.99) - mem.pct(0.99)
    sustained = best_flood["sqlite"].rate >= TARGET_RATE and sq.rate >= 0.95 * TARGET_RATE
    met = "met" if added < TARGET_ADDED_P99_MS else "MISSED"
    print(
        f"\nsqlite sustains {TARGET_RATE:,} items/s: {'yes' if sustained else 'NO'} "
        f"(flood {best_flood['sqlite'].rate:,.0f}/s, paced {sq.rate:,.0f}/s); "
        f"added p99 loop latency at {TARGET_RATE:,}/s: {added:+.3f} ms "
        f"(target < {TARGET_ADDED_P99_MS:g} ms: {met})"
    )
    tables[1].meta.update(sustained=sustained, added_p99_ms=added,
                          target_met=sustained and added < TARGET_ADDED_P99_MS)
    return tables
