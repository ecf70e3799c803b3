"""Realtime capacity: how many live calls one client core carries.

For each N, a fresh client process runs N push-mode sessions (``open_session`` with no
capture, ``OpenAIRealtime`` pointed at 127.0.0.1), each fed one 20 ms chunk of 48 kHz
stereo int16 every 20 ms by ``session.send_audio`` on the real-time clock, as a phone
call is. The sessions' phases are spread over the 20 ms, as independent calls are: one
:class:`FeedClock` task keeps the clock for all of them, in ``PHASES`` slots 1 ms apart,
and wakes the sessions of a slot through one ``trio.Event`` -- what a media server
delivering many calls' packets does -- rather than N tasks each sleeping on the clock,
which would measure trio's timer heap, not voxtrio. The counting server
(``benchmarks/capacity_server.py``) runs in another process, so the client's cost is
measured alone (on a 2-core machine the server has the other core).

Per N: the client's CPU per session (``time.process_time`` over the streaming window,
as a share of one core), its CPU per chunk sent and the kernel's share of it; per-frame
latency from capture to the wire, p50/p99/max (each chunk is stamped with
``time.monotonic()`` when handed to ``send_audio``; the server stamps the arrival of
each ``input_audio_buffer.append`` with the same system-wide clock; a 24 kHz frame is
matched to the chunk whose push made the converter emit it); how late the pacing loop
woke (p99: the clock the sessions could not keep); drops
(``session.stats().dropped_frames``); peak RSS per session (``ru_maxrss`` growth of the
client over the run / N). "Realtime" means p99 latency < 20 ms, pacing p99 < 20 ms, no
drops and every frame delivered. The server's CPU share is shown too, so a server that
could not keep up is visible.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import trio

from benchmarks.bench_pipeline import SOURCE, TARGET, Int16, make_input
from benchmarks.results import Table
from voxtrio import OpenAIRealtime, open_session
from voxtrio.codecs.convert import Converter
from voxtrio.testing.processes import checkout_env

CHUNK = SOURCE.sample_rate // 50  # 20 ms of input
FRAME = TARGET.sample_rate // 50  # 20 ms of output
PERIOD = 0.020
P99_TARGET_MS = 20.0
RSS_TARGET_MB = 2.0
LOOP_CHUNKS = 50  # the input repeats every second
GIVE_UP_S = 2.0  # a session this far behind the clock is not realtime: it stops early
PHASES = 20  # feed slots per 20 ms period, 1 ms apart


class FeedClock:
    """One task feeding the real-time clock to many sessions.

    Slot ``p`` of tick ``k`` is due at ``start + k * PERIOD + p * PERIOD / phases``.
    :meth:`run` sleeps until each slot in turn and releases it; a session waits for
    its slot with :meth:`wait`, one ``trio.Event`` per slot and tick (so a session that
    is behind never waits for a tick already released).
    """

    def __init__(self, start: float, phases: int = PHASES) -> None:
        self.start = start
        self.phases = phases
        self._released = [0] * phases  # ticks released so far, per slot
        self._events = [trio.Event() for _ in range(phases)]

    def slot(self, i: int, n: int) -> int:
        """The slot of session ``i`` of ``n``: spread evenly over the period."""
        return i * self.phases // n

    def due(self, slot: int, tick: int) -> float:
        return self.start + tick * PERIOD + slot * PERIOD / self.phases

    async def wait(self, slot: int, tick: int) -> float:
        """Return once ``tick`` of ``slot`` is released; its due time."""
        if self._released[slot] > tick:  # behind: no wait, but still a checkpoint
            await trio.lowlevel.checkpoint()
        while self._released[slot] <= tick:
            await self._events[slot].wait()
        return self.due(slot, tick)

    async def run(self, ticks: int) -> None:
        """Release every slot of ``ticks`` ticks, each at its due time."""
        for tick in range(ticks):
            for slot in range(self.phases):
                await trio.sleep_until(self.due(slot, tick))
                self._released[slot] = tick + 1
                event, self._events[slot] = self._events[slot], trio.Event()
                event.set()


def _chunks() -> list[Int16]:
    pcm = make_input(LOOP_CHUNKS * PERIOD)
    return [pcm[i * CHUNK : (i + 1) * CHUNK].copy() for i in range(LOOP_CHUNKS)]


class TaskSteps(trio.abc.Instrument):
    """Counts the scheduler's task steps, per task name: how many wake-ups the live
    chunks cost, whatever each wake-up does."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] += 1


# ------------------------------------------------------------------- client process


async def _client(n: int, url: str, seconds: float, out: Path, count_steps: bool = False) -> None:
    chunks = _chunks()
    frames = int(seconds / PERIOD)
    sends = np.full((n, frames), np.nan)
    late = np.full((n, frames), np.nan)
    drops = np.zeros(n, dtype=np.int64)
    behind = np.zeros(n, dtype=bool)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    opened, finished = 0, 0
    all_open, all_done, start = trio.Event(), trio.Event(), trio.Event()
    clock = FeedClock(0.0)

    async def one(i: int) -> None:
        nonlocal opened, finished
        provider = OpenAIRealtime(
            model="gpt-realtime", api_key="bench-key", base_url=url, turn_detection=None
        )
        async with open_session(provider, instructions=f"bench-session-{i}") as session:
            opened += 1
            if opened == n:
                all_open.set()
            await start.wait()
            slot = clock.slot(i, n)
            for k in range(frames):
                due = await clock.wait(slot, k)
                late[i, k] = trio.current_time() - due
                if late[i, k] > GIVE_UP_S:
                    behind[i] = True
                    break
                sends[i, k] = time.monotonic()
                await session.send_audio(chunks[k % LOOP_CHUNKS], SOURCE)
            drops[i] = session.stats().dropped_frames
            finished += 1
            if finished == n:
                all_done.set()
            await trio.sleep(0.5)  # let the last frames reach the wire before closing
            await session.aclose()

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
        with trio.fail_after(60 + n * 0.2):
            await all_open.wait()
        await trio.sleep(0.2)
        clock.start = trio.current_time() + 0.1
        nursery.start_soon(clock.run, frames)
        cpu0, wall0 = time.process_time(), time.monotonic()
        sys0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        steps = TaskSteps()
        if count_steps:
            trio.lowlevel.add_instrument(steps)
        start.set()
        with trio.fail_after(seconds * 3 + 30):
            await all_done.wait()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        kernel = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys0
        if count_steps:
            trio.lowlevel.remove_instrument(steps)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    names = sorted(steps.steps)
    np.savez(out, sends=sends, late=late, drops=drops, behind=behind, cpu_s=np.array(cpu),
             sys_s=np.array(kernel),
             wall_s=np.array(wall), rss0_kb=np.array(rss0), rss1_kb=np.array(rss1),
             step_names=np.array(names, dtype=str),
             step_counts=np.array([steps.steps[k] for k in names], dtype=np.int64))


# ------------------------------------------------------------------- orchestration


def emitted_after_each_chunk(frames: int) -> np.ndarray:
    """Output samples the converter has emitted after each chunk (same chunking)."""
    chunks = _chunks()
    conv = Converter(SOURCE, TARGET, 20)
    total, out = 0, np.zeros(frames, dtype=np.int64)
    for k in range(frames):
        total += sum(f.samples for f in conv.push(chunks[k % LOOP_CHUNKS]))
        out[k] = total
    return out


def latencies(
    client: dict[str, np.ndarray], server: dict[str, np.ndarray]
) -> tuple[np.ndarray, int, int]:
    """Per-frame capture-to-wire latencies (s), frames expected, frames missing.

    Only frames due to a chunk the session did send are expected (a session that fell
    behind the clock stops early).
    """
    sends = client["sends"]
    n, frames = sends.shape
    emitted = emitted_after_each_chunk(frames)
    ends = np.arange(FRAME, int(emitted[-1]) + 1, FRAME)  # frames due to a chunk push
    chunk_of = np.searchsorted(emitted, ends, side="left")
    out: list[np.ndarray] = []
    expected = missing = 0
    for i in range(n):
        due = np.isfinite(sends[i, chunk_of])
        expected += int(due.sum())
        if f"t_{i}" not in server:
            missing += int(due.sum())
            continue
        t, cum = server[f"t_{i}"], server[f"n_{i}"]
        m = np.searchsorted(cum, ends[due], side="left")
        ok = m < len(cum)
        missing += int((~ok).sum())
        out.append(t[m[ok]] - sends[i, chunk_of[due][ok]])
    lat = np.concatenate(out) if out else np.zeros(0)
    return lat, expected, missing


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _spawn(
    n: int, seconds: float, tmp: Path, count_steps: bool = False
) -> tuple[dict[str, np.ndarray], ...] | str:
    """One N: a fresh server process and a fresh client process; their data or an error."""
    env = checkout_env()
    server_out, client_out = tmp / f"server-{n}.npz", tmp / f"client-{n}.npz"
    with subprocess.Popen(
        [sys.executable, "-m", "benchmarks.capacity_server", str(server_out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    ) as server:
        assert server.stdin is not None
        assert server.stdout is not None
        try:
            port = int(server.stdout.readline().split()[1])
            client = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_capacity", "--client", str(n),
                 "--url", f"ws://127.0.0.1:{port}/v1/realtime", "--seconds", str(seconds),
                 "--out", str(client_out), *(["--count-steps"] if count_steps else [])],
                env=env, timeout=seconds * 4 + 120 + n, capture_output=True, text=True,
                check=False,
            )
            server.stdin.write("dump\n")
            server.stdin.flush()
            server.stdout.readline()
        finally:
            with contextlib.suppress(OSError):
                server.stdin.close()
            server.wait(timeout=30)
    if client.returncode:
        last = (client.stderr.strip().splitlines() or ["?"])[-1]
        return f"client process failed ({client.returncode}): {last}"
    with np.load(client_out) as c, np.load(server_out) as s:
        return {k: c[k] for k in c.files}, {k: s[k] for k in s.files}


STEPS_N = 50  # sessions in the task-step count (a short run of its own)
# Task names -> what they are, for the table (a name not listed is shown as it is).
_STEP_LABELS = {
    "__main__._client.<locals>.one": "feed + send_audio",
    "__main__.FeedClock.run": "feed clock",
    "voxtrio.convert": "convert actor",
    "voxtrio.actors.link.connection.Link._run_connected.<locals>.write": "link writer",
    "voxtrio.actors.link.connection.Link.pump": "link pump",
}


def task_steps(tmp: Path, seconds: float = 3.0) -> dict[str, float] | str:
    """Scheduler task steps per live chunk sent, by task, for ``STEPS_N`` sessions (a
    run of its own: the instrument's cost stays out of the CPU figures)."""
    got = _spawn(STEPS_N, seconds, tmp, count_steps=True)
    if isinstance(got, str):
        return got
    client = got[0]
    chunks = max(int(np.isfinite(client["sends"]).sum()), 1)
    per: dict[str, float] = {}
    for name, count in zip(client["step_names"], client["step_counts"], strict=True):
        if count:
            label = _STEP_LABELS.get(str(name), str(name))
            per[label] = per.get(label, 0.0) + int(count) / chunks
    return dict(sorted(((k, v) for k, v in per.items() if v >= 0.005), key=lambda kv: -kv[1]))


def run_one(n: int, seconds: float, tmp: Path) -> dict[str, float | int | bool | str]:
    load = os.getloadavg()[0]
    got = _spawn(n, seconds, tmp)
    if isinstance(got, str):
        return {"sessions": n, "seconds": seconds, "realtime": False, "note": got,
                "load_avg_1m": load}
    client, srv = got
    lat, expected, missing = latencies(client, srv)
    late = client["late"][np.isfinite(client["late"])]
    wall, cpu = float(client["wall_s"]), float(client["cpu_s"])
    chunks_sent = int(np.isfinite(client["sends"]).sum())
    us_per_chunk = cpu / max(chunks_sent, 1) * 1e6
    ms = lat * 1e3
    behind = int(client["behind"].sum())
    row: dict[str, float | int | bool | str] = {
        "sessions": n,
        "seconds": seconds,
        "cpu_per_session_pct": 100 * cpu / wall / n,
        "cpu_us_per_chunk": us_per_chunk,
        "sessions_per_core_at_this_cost": 1e6 / (us_per_chunk / PERIOD),
        "client_cpu_pct": 100 * cpu / wall,
        "client_kernel_share_pct": 100 * float(client["sys_s"]) / max(cpu, 1e-9),
        "server_cpu_pct": 100 * float(srv["cpu_s"]) / float(srv["wall_s"]),
        "p50_ms": _pct(ms, 50),
        "p99_ms": _pct(ms, 99),
        "max_ms": float(ms.max()) if len(ms) else float("nan"),
        "min_ms": float(ms.min()) if len(ms) else float("nan"),
        "pacing_p99_ms": _pct(late, 99) * 1e3,
        "frames": expected,
        "missing_frames": missing,
        "drops": int(client["drops"].sum()),
        "sessions_fell_behind": behind,
        "rss_per_session_mb": (float(client["rss1_kb"]) - float(client["rss0_kb"])) / 1024 / n,
        "load_avg_1m": load,
        "note": "",
    }
    row["realtime"] = bool(
        float(row["p99_ms"]) < P99_TARGET_MS and float(row["pacing_p99_ms"]) < P99_TARGET_MS
        and row["drops"] == 0 and missing == 0 and behind == 0
    )
    return row


def main(quick: bool = False) -> Table:
    counts = (10, 50) if quick else (10, 50, 100, 200, 300)
    seconds = 3.0 if quick else 10.0
    table = Table(
        "capacity: N live push-mode sessions, 20 ms chunks on the real-time clock, "
        "server in another process",
        meta={"seconds_per_n": seconds, "p99_target_ms": P99_TARGET_MS,
              "rss_target_mb": RSS_TARGET_MB},
    )
    print(f"each session: 48 kHz stereo in 20 ms chunks on the real-time clock for "
          f"{seconds:g} s -> OpenAIRealtime over ws://127.0.0.1 (server in its own process)")
    header = (f"{'N':>4s} {'cpu/sess':>8s} {'us/chunk':>8s} {'client':>7s} {'kernel':>6s} "
              f"{'server':>7s} "
              f"{'p50 ms':>7s} {'p99 ms':>7s} {'max ms':>7s} {'pace99':>8s} {'drops':>5s} "
              f"{'miss':>5s} {'behind':>6s} {'MB/sess':>7s} {'load':>5s} {'realtime':>8s}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmpdir:
        for n in counts:
            r = run_one(n, seconds, Path(tmpdir))
            table.rows.append(dict(r))
            if r["note"]:
                print(f"{n:4d} {r['note']}", flush=True)
                continue
            print(f"{n:4d} {r['cpu_per_session_pct']:7.2f}% {r['cpu_us_per_chunk']:8.0f} "
                  f"{r['client_cpu_pct']:6.0f}% {r['client_kernel_share_pct']:5.0f}% "
                  f"{r['server_cpu_pct']:6.0f}% {r['p50_ms']:7.2f} "
                  f"{r['p99_ms']:7.2f} {r['max_ms']:7.1f} {r['pacing_p99_ms']:8.1f} "
                  f"{r['drops']:5d} {r['missing_frames']:5d} {r['sessions_fell_behind']:6d} "
                  f"{r['rss_per_session_mb']:7.3f} {r['load_avg_1m']:5.1f} "
                  f"{'yes' if r['realtime'] else 'NO':>8s}", flush=True)
        steps = task_steps(Path(tmpdir))
    ok = [int(r["sessions"] or 0) for r in table.rows if r["realtime"]]
    largest = max(ok, default=0)
    table.meta["largest_realtime_n"] = largest
    measured = [r for r in table.rows if not r["note"]]
    best_cost = min((float(r["cpu_us_per_chunk"] or 0) for r in measured), default=math.nan)
    table.meta["min_cpu_us_per_chunk"] = best_cost
    if isinstance(steps, str):
        print(f"task steps: {steps}")
    else:
        total = sum(steps.values())
        table.meta["task_steps_n"] = STEPS_N
        table.meta["task_steps_per_chunk"] = total
        for label, value in steps.items():
            table.meta[f"task_steps_per_chunk[{label}]"] = value
        print(f"scheduler task steps per live chunk at N = {STEPS_N}: {total:.2f} ("
              + ", ".join(f"{label} {value:.2f}" for label, value in steps.items()) + ")")
    print(f"largest N that stayed realtime (p99 < {P99_TARGET_MS:g} ms, pacing p99 < "
          f"{P99_TARGET_MS:g} ms, no drops): {largest} of {', '.join(map(str, counts))}")
    if measured:
        last = measured[-1]
        print(f"lowest client CPU per chunk {best_cost:.0f} us = at most "
              f"{1e6 * PERIOD / best_cost:.0f} sessions per core at this cost; at N = "
              f"{last['sessions']}: {last['rss_per_session_mb']:.2f} MB RSS per session "
              f"(target < {RSS_TARGET_MB:g} MB)")
    return table


def _client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_capacity")
    parser.add_argument("--client", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count-steps", action="store_true",
                        help="count the scheduler's task steps (a trio instrument)")
    args = parser.parse_args(argv)
    trio.run(_client, args.client, args.url, args.seconds, args.out, args.count_steps)


if __name__ == "__main__":
    if "--client" in sys.argv[1:]:
        _client_main(sys.argv[1:])
    else:
        main("--quick" in sys.argv[1:])
