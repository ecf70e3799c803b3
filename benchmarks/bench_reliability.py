"""Load with faults (issue 13): sessions in one process sharing one SQLite store,
against loopback servers (in a child process) that drop and close connections at
random. See :mod:`benchmarks.load_harness` for what is run and measured.

    python -m benchmarks reliability          # 300 sessions for 60 s (RELIABILITY.md)
    python -m benchmarks --quick reliability  # 30 sessions for 5 s (a smoke run)

``VOXTRIO_LOAD_SEED`` picks the fault schedule (default 13); the seed is in the table.
The durability bound (:data:`~voxtrio.stores.DURABILITY_BOUND_S`) is met when the
worst seen-to-disk time is within it; "flat" memory means the RSS slope over the
last half of the run is under 1 % of the sessions' RSS per second.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import trio

from voxtrio.stores import DURABILITY_BOUND_S

from .load_harness import LoadPlan, LoadResult, run_load
from .results import Table

#: (sessions, seconds, a turn every .. s, a fault every .. s per session on average)
FULL = (300, 60.0, 1.0, 10.0)
QUICK = (30, 5.0, 0.5, 2.0)


def run(plan: LoadPlan) -> LoadResult:
    """One run in a trio run of its own, on a fresh database."""
    logging.getLogger("voxtrio").setLevel(logging.ERROR)  # one line per fault otherwise
    with tempfile.TemporaryDirectory() as tmp:
        return trio.run(run_load, plan, Path(tmp) / "load.sqlite3")


def main(quick: bool = False) -> Table:
    sessions, seconds, turn_s, fault_s = QUICK if quick else FULL
    seed = int(os.environ.get("VOXTRIO_LOAD_SEED", "13"))
    plan = LoadPlan(sessions=sessions, seconds=seconds, turn_interval_s=turn_s,
                    fault_interval_s=fault_s, seed=seed)  # fmt: skip
    result = run(plan)
    row = result.summary()
    sessions_mb = row["rss_peak_mb"] - row["rss_before_mb"]  # type: ignore[operator]
    flat = abs(result.rss_slope_mb_per_s()) <= 0.01 * float(sessions_mb)
    bound_met = result.quantile("seen_to_disk_s", 1.0) <= DURABILITY_BOUND_S
    table = Table(f"reliability: {sessions} sessions, one SQLite store, random drops and closes")
    table.add(**row, bound_met=bound_met, rss_flat=flat)
    table.meta.update(bound_s=DURABILITY_BOUND_S, turn_interval_s=turn_s, fault_interval_s=fault_s,
                      errors=", ".join(f"{k}: {n}" for k, n in sorted(result.errors.items())),
                      faults=", ".join(f"{k}: {n}" for k, n in sorted(result.faults.items())),
                      rss_mb=" ".join(f"{m:.0f}" for _, m in result.rss))  # fmt: skip
    print(f"seed {seed}: {sessions} sessions x {seconds:g} s, a turn per {turn_s:g} s, "
          f"a fault per {fault_s:g} s per session")  # fmt: skip
    print(
        f"sent {row['sent']}  seen {row['seen']}  stored {row['stored']}  "
        f"lost {row['lost']}  incomplete {row['incomplete']}  unseen {row['unseen']}"
    )
    print(
        f"faults {row['faults']} ({table.meta['faults']}); connections {row['connections']}; "
        f"errors: {table.meta['errors']}; hung {row['hung']}"
    )
    print(
        f"seen-to-disk p50 {row['seen_p50_s']:.3f} p99 {row['seen_p99_s']:.3f} "
        f"max {row['seen_max_s']:.3f} s (bound {DURABILITY_BOUND_S} s: "
        f"{'met' if bound_met else 'MISSED'}); sent-to-disk p50 {row['sent_p50_s']:.3f} "
        f"p99 {row['sent_p99_s']:.3f} max {row['sent_max_s']:.3f} s"
    )
    print(
        f"RSS {row['rss_before_mb']:.0f} -> peak {row['rss_peak_mb']:.0f} MB "
        f"({row['rss_mb_per_session']:.3f} MB/session), last-half slope "
        f"{row['rss_slope_mb_per_s']:.3f} MB/s ({'flat' if flat else 'GROWING'}); "
        f"samples: {table.meta['rss_mb']}"
    )
    print(
        f"fds {row['fds_before']} -> {row['fds_open']} (peak) -> {row['fds_after']}; "
        f"tasks {row['tasks_before']} -> {row['tasks_after']}; voxtrio threads left "
        f"{row['threads_after']}; loop lag p99 {row['lag_p99_s']:.3f} max "
        f"{row['lag_max_s']:.3f} s; cpu {row['cpu_s']:.1f} s of {row['wall_s']:.1f} s"
    )
    return table


if __name__ == "__main__":
    main()
