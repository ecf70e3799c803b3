"""The data a benchmark returns besides its printed table: the shape of ``--json``.

A benchmark's ``main(quick)`` returns a :class:`Table` or a list of them (or None, for
a module that only prints). Each table is a list of flat rows with the same keys, plus
a few facts about the run (``meta``: input length, repeats, targets and verdicts).
The runner writes them as one JSON object::

    {"schema": 1, "quick": false, "machine": {...}, "benchmarks": {
        "<name>": {"elapsed_s": 1.2, "tables": [
            {"title": "...", "rows": [{...}, ...], "meta": {...}}]}}}

JSON has no infinity or NaN: a non-finite float is written as the string ``"inf"``,
``"-inf"`` (an exact result: an SNR with no noise) or as ``null`` (not measured).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Value = float | int | str | bool | None
Row = dict[str, Value]

SCHEMA = 1

#: The timer of the single-process throughput benchmarks (codecs, peers, pipeline): this
#: process's CPU time. Their work is CPU-bound with no waits, so alone on a core it
#: equals the wall clock; on a machine shared with other work it still measures the
#: code's own cost (wall time there measures how much of a core the scheduler gave).
clock = time.process_time


@dataclass
class Table:
    """One table of a benchmark: ``rows`` share their keys; ``meta`` describes the run."""

    title: str
    rows: list[Row] = field(default_factory=list)
    meta: dict[str, Value] = field(default_factory=dict)

    def add(self, **row: Value) -> Row:
        self.rows.append(dict(row))
        return self.rows[-1]

    def to_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "rows": [clean_row(r) for r in self.rows],
            "meta": clean_row(self.meta),
        }


def clean(value: Value) -> Value:
    """``value`` as JSON can hold it (see the module docstring for non-finite floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def clean_row(row: Mapping[str, Value]) -> Row:
    return {k: clean(v) for k, v in row.items()}


def as_tables(result: object) -> list[Table]:
    """What a benchmark's ``main`` returned, as a list of tables."""
    if result is None:
        return []
    if isinstance(result, Table):
        return [result]
    if isinstance(result, Sequence) and all(isinstance(t, Table) for t in result):
        return list(result)
    raise TypeError(f"a benchmark returned {type(result).__name__}, not Table(s) or None")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def machine() -> dict[str, Value]:
    """What the numbers were measured on (the load average shows parallel work)."""
    info: dict[str, Value] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def document(
    quick: bool, results: Mapping[str, tuple[float, Sequence[Table]]]
) -> dict[str, object]:
    """The JSON object ``--json`` writes: ``results`` maps a name to (seconds, tables)."""
    return {
        "schema": SCHEMA,
        "quick": quick,
        "machine": machine(),
        "benchmarks": {
            name: {"elapsed_s": round(elapsed, 3), "tables": [t.to_json() for t in tables]}
            for name, (elapsed, tables) in results.items()
        },
    }
