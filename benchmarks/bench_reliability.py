"""Load with faults (issue 13): sessions in one process sharing one SQLite store,
against loopback servers (in a child process) that drop and close connections at
random. See :mod:`benchmarks.load_harness` for what is run and measured.

    python -m benchmarks reliability          # 300 sessions for 60 s, then 40 s faults only
    python -m benchmarks --quick reliability  # 30 sessions for 5 s (a smoke run)

``VOXTRIO_LOAD_SEED`` picks the fault schedule (default 13); the seed is in the table.
The durability bound (:data:`~voxtrio.stores.DURABILITY_BOUND_S`) is met when the
worst seen-to-disk time is within it. The full run also runs 300 sessions with
faults and no transcripts, so that memory growth from reconnecting shows apart
from the transcripts' (which sessions keep: the growth per transcript is printed).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path

import trio

from voxtrio.stores import DURABILITY_BOUND_S

from .load_harness import LoadPlan, LoadResult, run_load
from .results import Table

#: (sessions, seconds, a turn every .. s, a fault every .. s per session on average)
FULL = (300, 60.0, 1.0, 10.0)
#: No transcripts, only faults: what reconnecting costs in memory over time.
FAULTS_ONLY = (300, 40.0, math.inf, 5.0)
QUICK = (30, 5.0, 0.5, 2.0)


def run(plan: LoadPlan) -> LoadResult:
    """One run in a trio run of its own, on a fresh database."""
    logging.getLogger("voxtrio").setLevel(logging.ERROR)  # one line per fault otherwise
    with tempfile.TemporaryDirectory() as tmp:
        return trio.run(run_load, plan, Path(tmp) / "load.sqlite3")


def main(quick: bool = False) -> Table:
    seed = int(os.environ.get("VOXTRIO_LOAD_SEED", "13"))
    runs = [QUICK] if quick else [FULL, FAULTS_ONLY]
    table = Table("reliability: sessions on one SQLite store, random drops and closes")
    for sessions, seconds, turn_s, fault_s in runs:
        plan = LoadPlan(sessions=sessions, seconds=seconds, turn_interval_s=turn_s,
                        fault_interval_s=fault_s, seed=seed)  # fmt: skip
        result = run(plan)
        row = result.summary()
        items_per_s = row["sent"] / seconds  # type: ignore[operator]
        bytes_per_item = (
            result.rss_slope_mb_per_s() * 1e6 / items_per_s if items_per_s else math.nan
        )
        # No transcripts (the faults-only run): nothing to be late.
        bound_met = not result.seen_to_disk_s or (
            result.quantile("seen_to_disk_s", 1.0) <= DURABILITY_BOUND_S
        )
        table.add(**row, turn_interval_s=turn_s, fault_interval_s=fault_s,
                  rss_growth_bytes_per_item=bytes_per_item, bound_met=bound_met)  # fmt: skip
        _print(result, row, bound_met, bytes_per_item)
    table.meta.update(bound_s=DURABILITY_BOUND_S, seed=seed)
    return table


def _print(
    result: LoadResult, row: dict[str, float | int | str], bound_met: bool, per_item: float
) -> None:
    plan = result.plan
    faults = ", ".join(f"{k}: {n}" for k, n in sorted(result.faults.items()))
    errors = ", ".join(f"{k}: {n}" for k, n in sorted(result.errors.items()))
    rss = " ".join(f"{m:.0f}" for _, m in result.rss)
    print(
        f"seed {plan.seed}: {plan.sessions} sessions x {plan.seconds:g} s, a turn per "
        f"{plan.turn_interval_s:g} s, a fault per {plan.fault_interval_s:g} s per session"
    )
    print(
        f"  sent {row['sent']}  seen {row['seen']}  stored {row['stored']}  "
        f"lost {row['lost']}  incomplete {row['incomplete']}  unseen {row['unseen']}"
    )
    print(
        f"  faults {row['faults']} ({faults}); connections {row['connections']}; "
        f"errors: {errors or 'none'}; hung {row['hung']}"
    )
    if not result.seen_to_disk_s:
        print(f"  no transcripts; loop lag p99 {row['lag_p99_s']:.3f} max {row['lag_max_s']:.3f} s")
    else:
        print(
            f"  seen-to-disk p50 {row['seen_p50_s']:.3f} p99 {row['seen_p99_s']:.3f} "
            f"max {row['seen_max_s']:.3f} s (bound {DURABILITY_BOUND_S} s: "
            f"{'met' if bound_met else 'MISSED'}); sent-to-disk p50 {row['sent_p50_s']:.3f} "
            f"p99 {row['sent_p99_s']:.3f} max {row['sent_max_s']:.3f} s; "
            f"loop lag p99 {row['lag_p99_s']:.3f} max {row['lag_max_s']:.3f} s"
        )
    print(
        f"  RSS {row['rss_before_mb']:.0f} -> peak {row['rss_peak_mb']:.0f} MB "
        f"({row['rss_mb_per_session']:.3f} MB/session); last half: RSS "
        f"{row['rss_slope_mb_per_s']:.3f} MB/s ({per_item:.0f} B per transcript), "
        f"Python heap {row['blocks_slope_per_s']:.0f} blocks/s; RSS MB each s: {rss}"
    )
    print(
        f"  fds {row['fds_before']} -> {row['fds_open']} (peak) -> {row['fds_after']}; "
        f"tasks {row['tasks_before']} -> {row['tasks_after']}; voxtrio threads left "
        f"{row['threads_after']}; cpu {row['cpu_s']:.1f} s of {row['wall_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
