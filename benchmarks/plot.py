"""``--plot FILE.png``: throughput by path, and the capacity run against N.

Drawn from the ``--json`` document (:func:`benchmarks.results.document`), so a saved
JSON file can be plotted again: ``python -m benchmarks.plot RUN.json OUT.png``.

- left: frames/s of every row that has ``frames_per_s`` (the throughput benchmarks:
  codecs, pipeline, link, peers), horizontal bars on a log scale, with the resampler
  floor (a row marked ``floor``) drawn as a vertical line;
- right: the capacity run's p99 capture-to-wire latency (with the 20 ms target) and
  the client's CPU per session, against the number of sessions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Each benchmark's rows name their path under one of these keys.
_LABEL_KEYS = ("path", "name", "backend")
# Rows that count something else than 24 kHz output frames (the reframer cuts 48 kHz
# input frames without converting): left out of the bars.
_NOT_COMPARABLE = ("reframer",)
_COLORS = ("#4c72b0", "#55a868", "#8172b2", "#ccb974", "#64b5cd", "#937860")


def _rows(doc: Mapping[str, Any], bench: str) -> list[dict[str, Any]]:
    entry = doc.get("benchmarks", {}).get(bench)
    if not entry:
        return []
    return [row for table in entry["tables"] for row in table["rows"]]


def throughput_bars(
    doc: Mapping[str, Any],
) -> tuple[list[str], list[float], list[str], float | None]:
    """(labels, frames/s, colours, floor) of every throughput row, in benchmark order."""
    labels: list[str] = []
    values: list[float] = []
    colors: list[str] = []
    floor: float | None = None
    for index, bench in enumerate(doc.get("benchmarks", {})):
        for row in _rows(doc, bench):
            fps = row.get("frames_per_s")
            label = next((str(row[k]) for k in _LABEL_KEYS if k in row), "?")
            if not isinstance(fps, int | float) or label.startswith(_NOT_COMPARABLE):
                continue
            labels.append(f"{bench}: {label}")
            values.append(float(fps))
            is_floor = row.get("floor") is True
            colors.append("#c44e52" if is_floor else _COLORS[index % len(_COLORS)])
            if is_floor:
                floor = float(fps)
    return labels, values, colors, floor


def _capacity_panels(lat: Any, cpu: Any, rows: list[dict[str, Any]]) -> None:
    """p99/p50 latency and CPU per session against N; hollow markers: not realtime."""
    rows = [r for r in rows if isinstance(r.get("p99_ms"), int | float)]
    ns = [r["sessions"] for r in rows]
    lat.plot(ns, [r["p99_ms"] for r in rows], "-", color="#4c72b0", label="p99")
    lat.plot(ns, [r["p50_ms"] for r in rows], "--", color="#dd8452", label="p50")
    for r in rows:
        face = "#4c72b0" if r.get("realtime") else "white"
        lat.plot(r["sessions"], r["p99_ms"], "o", color="#4c72b0", markerfacecolor=face)
    lat.axhline(20.0, color="#c44e52", linestyle=":", label="20 ms target")
    lat.set_yscale("log")
    lat.legend(fontsize=8, title="hollow: not realtime", title_fontsize=7)
    # What a session costs per second of audio it actually sent (a session that fell
    # behind sent less, so its share of the wall clock understates its cost).
    need = [r for r in rows if isinstance(r.get("cpu_us_per_chunk"), int | float)]
    if need:
        cpu.plot([r["sessions"] for r in need],
                 [r["cpu_us_per_chunk"] / 1e6 / 0.020 * 100 for r in need], "o-",
                 color="#55a868", label="CPU per second of audio sent")  # fmt: skip
    cpu.plot(ns, [r["cpu_per_session_pct"] for r in rows], "s--", color="#8172b2",
             alpha=0.7, label="measured share of the wall clock")  # fmt: skip
    cpu.axhline(100 / 300, color="#c44e52", linestyle=":", label="300 sessions per core")
    cpu.legend(fontsize=8)
    cpu.set_ylim(bottom=0)


def plot(doc: Mapping[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values, colors, floor = throughput_bars(doc)
    capacity = _rows(doc, "capacity")
    height = max(4.0, 0.32 * len(labels) + 1.5)
    fig = plt.figure(figsize=(15, height), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=(1.6, 1))
    bars = fig.add_subplot(grid[:, 0])
    if labels:
        ys = list(range(len(labels)))[::-1]
        bars.barh(ys, values, color=colors)
        bars.set_yticks(ys, labels, fontsize=8)
        bars.set_xscale("log")
        if floor is not None:
            bars.axvline(floor, color="#c44e52", linestyle="--",
                         label=f"floor (soxr alone, 20 ms chunks) {floor:,.0f}")  # fmt: skip
            bars.legend(loc="lower right", fontsize=8)
        for y, v in zip(ys, values, strict=True):
            bars.text(v, y, f" {v:,.0f}", va="center", fontsize=7)
    else:
        bars.text(0.5, 0.5, "no throughput benchmark in this run", ha="center")
    bars.set_xlabel("20 ms output frames per second (log scale)")
    bars.set_title("throughput by path, 48 kHz stereo -> 24 kHz mono")

    lat = fig.add_subplot(grid[0, 1])
    cpu = fig.add_subplot(grid[1, 1], sharex=lat)
    if capacity:
        _capacity_panels(lat, cpu, capacity)
    else:
        lat.text(0.5, 0.5, "capacity not run", ha="center", transform=lat.transAxes)
    lat.set_ylabel("capture-to-wire latency, ms")
    lat.set_title("capacity: N live sessions in one client process")
    cpu.set_ylabel("client CPU per session, % of a core")
    cpu.set_xlabel("concurrent live sessions (N)")
    machine = doc.get("machine", {})
    fig.suptitle(
        f"voxtrio benchmarks{' (quick run)' if doc.get('quick') else ''}: "
        f"{machine.get('cpus', '?')} CPUs, {machine.get('processor', '')}, "
        f"load {machine.get('load_avg_1m', '?')}, Python {machine.get('python', '?')}",
        fontsize=10,
    )
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), Path(sys.argv[2]))
