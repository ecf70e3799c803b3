"""The counting server of ``bench_capacity``, run in a process of its own.

``python -m benchmarks.capacity_server OUT.npz`` listens on 127.0.0.1 port 0, prints
``port <N>`` on stdout and serves the OpenAI Realtime handshake's one event
(``session.created``) to every connection. For every ``input_audio_buffer.append`` it
records the arrival time (``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every
process on Linux) and the connection's running count of samples. A connection is named
by the ``bench-session-<i>`` tag in its ``session.update`` instructions.

When a line arrives on stdin (or stdin closes) it writes ``OUT.npz``: for each tag,
``t_<i>`` (arrival times) and ``n_<i>`` (cumulative samples after each append), plus
``cpu_s`` (this process's CPU time while serving) and ``wall_s``; then prints ``done``
and exits. It runs on trio with ``benchmarks.ws_sink`` (wsproto's handshake, then
frames read and unmasked with numpy there), which keeps the server's own cost low: the
client is what is measured.
"""

from __future__ import annotations

import json
import re
import sys
import time

import numpy as np
import trio

from benchmarks.ws_sink import SinkConnection, serve_sink

TAG = re.compile(r"bench-session-(\d+)")


class Recorder:
    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.counts: dict[int, list[int]] = {}
        self.untagged = 0

    async def handler(self, ws: SinkConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "event_id": "e0"}))
        times: list[float] | None = None
        counts: list[int] = []
        total = 0
        while (message := await ws.receive()) is not None:
            now = time.monotonic()
            event = json.loads(message.data)
            kind = event.get("type")
            if kind == "input_audio_buffer.append":
                audio: str = event["audio"]
                total += (len(audio) * 3 // 4 - audio[-2:].count("=")) // 2
                if times is None:
                    self.untagged += 1
                    continue
                times.append(now)
                counts.append(total)
            elif kind == "session.update" and times is None:
                found = TAG.search(message.as_text())
                if found:
                    index = int(found.group(1))
                    times, counts = [], []
                    self.times[index], self.counts[index] = times, counts

    def dump(self, path: str, cpu_s: float, wall_s: float) -> None:
        arrays: dict[str, np.ndarray] = {
            "cpu_s": np.array(cpu_s),
            "wall_s": np.array(wall_s),
            "untagged": np.array(self.untagged),
        }
        for i, times in self.times.items():
            arrays[f"t_{i}"] = np.array(times, dtype=np.float64)
            arrays[f"n_{i}"] = np.array(self.counts[i], dtype=np.int64)
        np.savez(path, **arrays)  # type: ignore[arg-type]


async def main(out: str) -> None:
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_sink, recorder.handler)
        print(f"port {port}", flush=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        nursery.cancel_scope.cancel()
    recorder.dump(out, cpu, wall)
    print("done", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
