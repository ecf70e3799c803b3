"""The benchmark runner's outputs: the ``--json`` shape, the ``--plot`` PNG, and the
bookkeeping of the capacity benchmark. Nothing here times anything."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from benchmarks import bench_capacity, bench_peers
from benchmarks.results import SCHEMA, Table, as_tables, clean, document
from voxtrio.testing.processes import checkout_env

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _env() -> dict[str, str]:
    return checkout_env(MPLBACKEND="Agg")


def test_quick_run_writes_the_json_rows_and_a_png(tmp_path: Path) -> None:
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out), "--plot", str(png),
         "g711"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "== g711 (quick)" in result.stdout  # the table is still printed
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["schema"] == SCHEMA
    assert doc["quick"] is True
    assert doc["machine"]["cpus"] >= 1
    assert list(doc["benchmarks"]) == ["g711"]
    entry = doc["benchmarks"]["g711"]
    assert entry["elapsed_s"] > 0
    (table,) = entry["tables"]
    assert set(table) == {"title", "rows", "meta"}
    rows = table["rows"]
    # 2 laws x 2 ops x 3 paths, each row with the same keys and real numbers.
    assert len(rows) == 12
    for row in rows:
        assert set(row) == {"law", "op", "path", "samples_per_s", "ratio_to_loop"}
        assert row["samples_per_s"] > 0
    loops = [r for r in rows if r["path"] == "python loop"]
    assert all(r["ratio_to_loop"] == pytest.approx(1.0) for r in loops)
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_json_has_no_bare_infinities() -> None:
    table = Table("t", meta={"exact": math.inf})
    table.add(path="a", snr_db=math.inf, lost=0, missing=math.nan, down=-math.inf)
    doc = document(False, {"x": (1.0, [table])})
    text = json.dumps(doc, allow_nan=False)  # raises on a non-finite float
    (row,) = json.loads(text)["benchmarks"]["x"]["tables"][0]["rows"]
    assert row == {"path": "a", "snr_db": "inf", "lost": 0, "missing": None, "down": "-inf"}
    assert clean(2.5) == 2.5


def test_as_tables_accepts_what_benchmarks_return() -> None:
    t = Table("t")
    assert as_tables(None) == []
    assert as_tables(t) == [t]
    assert as_tables([t, t]) == [t, t]
    with pytest.raises(TypeError):
        as_tables({"rows": []})


def test_plot_draws_throughput_and_capacity(tmp_path: Path) -> None:
    from benchmarks.plot import plot, throughput_bars

    peers = Table("peers")
    peers.add(path="floor", frames_per_s=150_000.0, floor=True)
    peers.add(path="voxtrio Converter", frames_per_s=60_000.0, floor=False)
    peers.add(path="Pipecat", frames_per_s=None, floor=False)  # not installed: no bar
    capacity = Table("capacity")
    for n, p99 in ((10, 3.0), (50, 30.0)):
        capacity.add(sessions=n, p50_ms=1.0, p99_ms=p99, cpu_per_session_pct=1.5)
    doc = document(True, {"peers": (1.0, [peers]), "capacity": (2.0, [capacity])})
    labels, values, _, floor = throughput_bars(doc)
    assert labels == ["peers: floor", "peers: voxtrio Converter"]
    assert values == [150_000.0, 60_000.0]
    assert floor == 150_000.0
    out = tmp_path / "p.png"
    plot(doc, out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_capacity_matches_each_frame_to_the_chunk_that_emitted_it() -> None:
    # Two sessions, 30 chunks each; the server receives every frame exactly 5 ms after
    # the push of the chunk that made the converter emit it (a batched append carries
    # several frames at once): the matching must give 5 ms for every frame.
    chunks = 30
    emitted = bench_capacity.emitted_after_each_chunk(chunks)
    sends = np.array([np.arange(chunks) * 0.02 + 100.0, np.arange(chunks) * 0.02 + 100.01])
    server: dict[str, np.ndarray] = {}
    for i in range(2):
        grew = np.flatnonzero(np.diff(np.concatenate(([0], emitted))) > 0)
        server[f"t_{i}"] = sends[i, grew] + 0.005
        server[f"n_{i}"] = emitted[grew]
    lat, expected, missing = bench_capacity.latencies({"sends": sends}, server)
    assert missing == 0
    assert expected == 2 * (int(emitted[-1]) // bench_capacity.FRAME)
    assert len(lat) == expected
    assert np.allclose(lat, 0.005)
    # A session the server never saw counts all of its frames as missing.
    del server["t_1"], server["n_1"]
    _, _, missing = bench_capacity.latencies({"sends": sends}, server)
    assert missing == expected // 2


def test_peer_byte_framer_cuts_20ms_frames_and_keeps_the_rest() -> None:
    framer = bench_peers.ByteFramer()
    out: list[np.ndarray] = []
    data = np.arange(1000, dtype=np.int16)
    framer.push(data[:700].tobytes(), out)
    framer.push(data[700:].tobytes(), out)
    assert [len(f) for f in out] == [480, 480]
    framer.flush(out)
    assert [len(f) for f in out] == [480, 480, 40]
    assert np.array_equal(np.concatenate(out), data)


def test_voxtrio_bench_passes_json_and_plot_to_the_runner(tmp_path: Path) -> None:
    out, png = tmp_path / "cli.json", tmp_path / "cli.png"
    result = subprocess.run(
        [sys.executable, "-m", "voxtrio", "bench", "--quick", "--json", "cli.json", "--plot",
         "cli.png", "g711"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(out.read_text(encoding="utf-8"))  # relative to the caller's directory
    assert doc["exit_code"] == 0
    assert doc["command"][:3] == ["python", "-m", "benchmarks"]
    assert "== g711 (quick)" in doc["output"]
    assert doc["benchmarks"]["g711"]["tables"][0]["rows"]
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_voxtrio_bench_refuses_an_output_in_a_missing_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxtrio", "bench", "--quick", "--plot", "nowhere/p.png", "g711"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("voxtrio: error: --plot: no directory")


async def test_feed_clock_releases_each_session_at_its_phase(autojump_clock: object) -> None:
    n, ticks = 7, 4
    seen: dict[tuple[int, int], tuple[float, float]] = {}
    with trio.fail_after(60):
        clock = bench_capacity.FeedClock(trio.current_time() + 1.0, phases=5)

        async def session(i: int) -> None:
            slot = clock.slot(i, n)
            for k in range(ticks):
                due = await clock.wait(slot, k)
                seen[i, k] = (due, trio.current_time())

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(session, i)
            nursery.start_soon(clock.run, ticks)
    slots = [clock.slot(i, n) for i in range(n)]
    assert slots == sorted(slots)
    assert (slots[0], slots[-1]) == (0, 4)  # spread over every slot
    for (i, k), (due, woke) in seen.items():
        assert due == pytest.approx(clock.start + k * 0.020 + slots[i] * 0.004)
        assert woke == pytest.approx(due)  # released at its due time, not before or after
    assert len(seen) == n * ticks


async def test_feed_clock_lets_a_late_session_catch_up_without_waiting(
    autojump_clock: object,
) -> None:
    with trio.fail_after(60):
        clock = bench_capacity.FeedClock(trio.current_time(), phases=2)
        await clock.run(3)  # nobody waited: every tick of both slots is released
        t = trio.current_time()
        dues = [await clock.wait(1, k) for k in range(3)]
    assert trio.current_time() == t  # no tick waited for
    assert dues == [pytest.approx(clock.start + k * 0.020 + 0.010) for k in range(3)]


async def test_task_steps_counts_each_wake_up_of_a_named_task() -> None:
    steps = bench_capacity.TaskSteps()
    with trio.fail_after(10):
        trio.lowlevel.add_instrument(steps)
        try:
            async with trio.open_nursery() as nursery:

                async def three_passes() -> None:
                    for _ in range(3):
                        await trio.lowlevel.checkpoint()

                nursery.start_soon(three_passes, name="three")
        finally:
            trio.lowlevel.remove_instrument(steps)
    assert steps.steps["three"] == 4  # the first step, then one after each checkpoint
