"""Phone calls on `voxtrio serve` workers: calls per worker core at realtime, latency,
and the resume time of a call that moves to another worker.

One `voxtrio serve` worker process (the front door, 8 kHz mu-law passed through to the
provider as ``audio/pcmu``) takes N concurrent calls from simulated phones in this
process, which stream their audio in real time (20 ms ``media`` every 20 ms) against
the OpenAI loopback provider (in a process of its own,
``benchmarks.telephony_provider``: replies paced in real time). Each
call talks in turns: 0.6 s of speech, 1.4 s of silence (the loopback's VAD ends the
turn after 0.5 s of it), a 400 ms reply.

* **calls per core**: the worker's CPU seconds (``/proc/<pid>/stat``, user + system)
  over the run's wall seconds is the cores it used for N calls; ``N / cores`` is the
  calls one core carries at realtime. A ratio within one run, not a timed target.
* **in latency**: from a ``media`` message leaving the phone to the loopback having
  every byte of it on the provider wire (the bytes are identical, so byte offsets
  match exactly). **out latency**: from the loopback sending a reply audio delta to
  the phone receiving that delta's first byte (real-time playback paces the rest).
* **path cost**: the input conversion of one 20 ms frame, sans-IO: passed through
  vs decoded and resampled (a ratio within one run).
* **resume** (with a PostgreSQL in ``VOXTRIO_TEST_PG_DSN``: run under
  ``scripts/pg_cluster.py run --``): two workers share the database; a call does one
  turn on A, drops, and comes back to B; the time from the drop to B's first
  ``session.update`` (which carries A's turns) is the resume time.

    python -m benchmarks telephony          # 10, 25, 50 calls, 8 s each; 10 resumes
    python -m benchmarks --quick telephony  # 10 calls, 4 s; 3 resumes
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import trio

from voxtrio.codecs.g711 import mulaw_encode
from voxtrio.testing import ConnectionScript, open_openai_loopback, open_serve_worker
from voxtrio.testing.processes import StderrFile, checkout_env, failure, first_line
from voxtrio.testing.telephony import TelephonyCall, open_telephony_call

from .results import Table

CHUNK = 160  # 20 ms of 8 kHz G.711
REPLY_MS = 400
TICK = os.sysconf("SC_CLK_TCK")


def utterance(seed: int) -> bytes:
    """0.6 s of loud noisy voice then 1.4 s of silence, mu-law; unique per seed (the
    first chunk tells the calls apart on the provider side). The silence outlasts the
    VAD's 0.5 s and the 0.4 s reply, so no turn barges in on the last reply."""
    rng = np.random.default_rng(seed)
    n = 4800
    t = np.arange(n) / 8000
    voice = 9000 * np.sin(2 * np.pi * (200 + seed % 300) * t) + rng.normal(0, 2500, n)
    pcm = np.concatenate([np.clip(voice, -32768, 32767), np.zeros(11200)])
    return mulaw_encode(pcm.astype(np.int16))


@contextlib.asynccontextmanager
async def provider() -> AsyncIterator[tuple[str, trio.Process, list[dict[str, Any]]]]:
    """The loopback provider in a process of its own (``benchmarks.telephony_provider``):
    its URL, the process, and (filled in when the block ends) its timing report."""
    env = checkout_env()
    cmd = [sys.executable, "-m", "benchmarks.telephony_provider"]
    name = "the provider process"
    with StderrFile() as stderr:
        proc = await trio.lowlevel.open_process(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr.file
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        report: list[dict[str, Any]] = []
        try:
            buf = await first_line(proc, name, stderr)
            yield buf.split()[1].decode(), proc, report
            await proc.stdin.send_all(b"report\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1 << 16)
                if not chunk:  # it died before its report
                    with trio.move_on_after(5):
                        await proc.wait()
                    raise failure(proc, name, stderr)
                buf += chunk
            report.append(json.loads(buf))
            with trio.fail_after(10):
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()


def runqueue_wait_s(pid: int) -> float:
    """Seconds the worker's main thread was runnable but waiting for a CPU (other
    processes had them): the machine's contention, which shows up as latency."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


async def realtime_call(
    url: str,
    index: int,
    seconds: float,
    sends: list[tuple[float, int]],
    call_box: list[TelephonyCall],
) -> None:
    """A phone in real time: turns of the utterance for ``seconds``; notes when each
    chunk left and the byte offset it ended at."""
    audio = utterance(index)
    async with open_telephony_call(url, call_sid=f"CA{uuid.uuid4().hex}") as call:
        call_box.append(call)
        begin = trio.current_time()
        sent = 0
        while trio.current_time() - begin < seconds:
            for offset in range(0, len(audio), CHUNK):
                await trio.sleep_until(begin + sent / 8000)
                await call.send_audio(audio[offset : offset + CHUNK], realtime=False)
                sent += CHUNK
                sends.append((time.monotonic(), sent))
        await call.hang_up()


def in_latencies(sends: list[tuple[float, int]], arrivals: list[tuple[float, int]]) -> list[float]:
    out, i = [], 0
    for t_sent, end in sends:
        while i < len(arrivals) and arrivals[i][1] < end:
            i += 1
        if i == len(arrivals):
            break  # still in the worker when the call ended (its last partial frame)
        out.append(arrivals[i][0] - t_sent)
    return out


def out_latencies(
    deltas: list[tuple[float, int]], call: TelephonyCall, offset: float
) -> list[float]:
    """Per reply delta: first byte sent by the provider -> received by the phone
    (``offset`` turns the phone's trio times into ``time.monotonic()``)."""
    starts, total = [], 0
    for t, size in deltas:
        starts.append((t, total))
        total += size
    out, got, k = [], 0, 0
    for t_media, payload in zip(call.media_times, call.media, strict=True):
        while k < len(starts) and starts[k][1] < got + len(payload):
            out.append(t_media + offset - starts[k][0])
            k += 1
        got += len(payload)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def capacity_run(calls: int, seconds: float, db: str) -> dict[str, float]:
    offset = time.monotonic() - trio.current_time()
    async with (
        provider() as (provider_url, _, report),
        open_serve_worker(provider_url, db, calls + 5) as (url, proc),
    ):
        pid = proc.pid
        await warm_up(url)
        sends: list[list[tuple[float, int]]] = [[] for _ in range(calls)]
        boxes: list[list[TelephonyCall]] = [[] for _ in range(calls)]
        lags: list[float] = []
        cpu0, wall0, wait0 = cpu_seconds(pid), time.perf_counter(), runqueue_wait_s(pid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop_lag, lags)
            async with trio.open_nursery() as phones:
                for i in range(calls):
                    phones.start_soon(realtime_call, url, i, seconds, sends[i], boxes[i])
            nursery.cancel_scope.cancel()
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
        waited = runqueue_wait_s(pid) - wait0
    (doc,) = report
    timing, provider_lags = doc["calls"], doc["lags"]
    lat_in: list[float] = []
    lat_out: list[float] = []
    replies = clears = 0  # a clear (barge-in) would cut a reply: out latency assumes none
    for i in range(calls):
        seen = timing.get(utterance(i)[:CHUNK].hex())
        if seen is None or not boxes[i]:
            continue
        lat_in += in_latencies(sends[i], [tuple(a) for a in seen["arrivals"]])
        lat_out += out_latencies([tuple(d) for d in seen["deltas"]], boxes[i][0], offset)
        replies += len(seen["deltas"])
        clears += len(boxes[i][0].clears)
    cores = cpu / wall
    return {
        "calls": calls,
        "seconds": round(wall, 2),
        "worker_cores": round(cores, 3),
        "calls_per_core": round(calls / cores, 1) if cores > 0 else float("inf"),
        "in_p50_ms": round(pct(lat_in, 0.5) * 1000, 2),
        "in_p99_ms": round(pct(lat_in, 0.99) * 1000, 2),
        "out_p50_ms": round(pct(lat_out, 0.5) * 1000, 2),
        "out_p99_ms": round(pct(lat_out, 0.99) * 1000, 2),
        "worker_runqueue_wait_pct": round(100 * waited / wall, 1),
        "phone_lag_p99_ms": round(pct(lags, 0.99) * 1000, 2),
        "provider_lag_p99_ms": round(pct(provider_lags, 0.99) * 1000, 2),
        "reply_deltas": replies,
        "clears": clears,
    }


async def loop_lag(into: list[float]) -> None:
    """How late the phones' own event loop wakes (a 10 ms sleep, over and over): the
    phones' receive times are late by as much, which out latency includes."""
    while True:
        t = trio.current_time()
        await trio.sleep(0.01)
        into.append(trio.current_time() - t - 0.01)


async def warm_up(url: str) -> None:
    """One short call first: the worker's first session pays one-off costs (imports,
    the store's first connection) that are not per-call work."""
    async with open_telephony_call(url, call_sid=f"CAwarm{uuid.uuid4().hex}") as call:
        await call.send_audio(utterance(10_000), realtime=False)
        await call.wait_for(lambda c: c.media_bytes >= 8 * REPLY_MS)
        await call.hang_up()


def _configured(conn: Any) -> bool:
    return bool(conn.instructions)


async def resume_run(dsn: str, resumes: int) -> list[float]:
    """Sequential: one turn on A, drop, come back to B; drop -> B's session.update."""
    script = ConnectionScript(reply_ms=REPLY_MS)
    times: list[float] = []
    async with open_openai_loopback(default_script=script, api_key="test") as loopback:
        url = loopback.url
        async with (
            open_serve_worker(url, dsn, 10) as (url_a, _),
            open_serve_worker(url, dsn, 10) as (url_b, _),
        ):
            for i in range(resumes):
                sid = f"CA{uuid.uuid4().hex}"
                async with open_telephony_call(url_a, call_sid=sid) as call:
                    await call.send_audio(utterance(i), realtime=False)
                    await call.wait_for(lambda c: c.media_bytes >= 8 * REPLY_MS)
                    await call.drop()
                dropped = trio.current_time()
                n = len(loopback.connections)
                async with open_telephony_call(url_b, call_sid=sid) as call:
                    conn = await loopback.wait_for_connection(n + 1)
                    await loopback.wait_until(partial(_configured, conn))
                    times.append(trio.current_time() - dropped)
                    await call.hang_up()
    return times


def _per_frame_us(make: Any, chunks: list[Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        conv = make()
        t = time.perf_counter()
        for chunk in chunks:
            conv.push(chunk)
        conv.flush()
        best = min(best, time.perf_counter() - t)
    return best / len(chunks) * 1e6


def path_costs(quick: bool) -> Table:
    """The input conversion of one 20 ms phone frame, sans-IO: passed through
    (``audio/pcmu``) vs decoded and resampled to OpenAI's 24 kHz PCM (the path before
    native formats) vs decoded and resampled to Gemini's 16 kHz."""
    from voxtrio.audio import AudioFormat
    from voxtrio.codecs.g711_stream import StreamConverter

    seconds = 10 if quick else 60
    codes = np.frombuffer(
        b"".join(utterance(i) for i in range(seconds // 2)), np.uint8
    ).reshape(-1, 1)
    chunks = [codes[i : i + CHUNK] for i in range(0, len(codes), CHUNK)]
    mulaw = AudioFormat(8000, encoding="mulaw")
    paths = {
        "pass-through (audio/pcmu)": mulaw,
        "decode + resample to 24 kHz PCM": AudioFormat(24000),
        "decode + resample to 16 kHz PCM (Gemini)": AudioFormat(16000),
    }
    table = Table("telephony: input conversion per 20 ms phone frame (sans-IO)")
    base = None
    for name, target in paths.items():
        us = _per_frame_us(lambda t=target: StreamConverter(mulaw, t, 20), chunks, 3)
        base = base or us
        print(f"{name:<44} {us:8.2f} us/frame  {us / base:6.1f}x pass-through")
        table.add(path=name, us_per_frame=round(us, 3), ratio_to_passthrough=round(us / base, 2))
    table.meta.update(frames=len(chunks))
    return table


def main(quick: bool = False) -> list[Table]:
    sizes = (10,) if quick else (10, 25, 50)
    seconds = 4.0 if quick else 8.0
    cap = Table("telephony: one `voxtrio serve` worker, N realtime mu-law calls (audio/pcmu)")
    dsn = os.environ.get("VOXTRIO_TEST_PG_DSN")
    print(f"{'calls':>5} {'cores':>6} {'calls/core':>10} {'in p50':>7} {'in p99':>7} "
          f"{'out p50':>8} {'out p99':>8} {'lag p99':>14} {'runq':>5}"
          "  (ms; lag: phones/provider loops; runq: % of wall the worker waited for a CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            db = dsn or str(Path(tmp) / f"calls-{n}.db")
            r = trio.run(capacity_run, n, seconds, db)
            print(f"{n:>5} {r['worker_cores']:>6.3f} {r['calls_per_core']:>10.1f} "
                  f"{r['in_p50_ms']:>7.2f} {r['in_p99_ms']:>7.2f} {r['out_p50_ms']:>8.2f} "
                  f"{r['out_p99_ms']:>8.2f} "
                  f"{r['phone_lag_p99_ms']:>6.1f}/{r['provider_lag_p99_ms']:<7.1f} "
                  f"{r['worker_runqueue_wait_pct']:>5.1f}")  # fmt: skip
            cap.add(**r)
    cap.meta.update(store="postgresql" if dsn else "sqlite", call_seconds=seconds,
                    reply_ms=REPLY_MS)  # fmt: skip
    res = Table("telephony: resume across two workers sharing PostgreSQL (drop -> B's update)")
    if dsn is None:
        print("resume: skipped (no VOXTRIO_TEST_PG_DSN; run under scripts/pg_cluster.py run --)")
        res.meta["skipped"] = "no PostgreSQL"
    else:
        times = trio.run(resume_run, dsn, 3 if quick else 10)
        ms = [t * 1000 for t in times]
        print(f"resume: {len(ms)} calls, p50 {statistics.median(ms):.0f} ms, "
              f"max {max(ms):.0f} ms")  # fmt: skip
        res.add(resumes=len(ms), p50_ms=round(statistics.median(ms), 1),
                max_ms=round(max(ms), 1))  # fmt: skip
    return [path_costs(quick), cap, res]


if __name__ == "__main__":
    main()
