"""The provider side of ``bench_telephony``, run in a process of its own.

``python -m benchmarks.telephony_provider`` runs the OpenAI loopback server (replies
paced in real time) on 127.0.0.1, prints ``url <ws://...>`` and notes, per connection,
when each appended byte arrived and when each reply audio delta left
(``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process on Linux). The
openai-package validation of every client event is off here: it is the tests' job, and
its cost would show up as latency. When a line arrives on stdin it prints one JSON
line -- per connection, its first 160 wire bytes (hex, which names the call), its
arrivals ``[t, total_bytes]`` and deltas ``[t, bytes]`` -- and exits.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio

from voxtrio.testing import ConnectionScript, open_openai_loopback
from voxtrio.testing.openai import oracle
from voxtrio.testing.openai.service import FakeRealtimeService

REPLY_MS = 400


class Clock:
    def __init__(self) -> None:
        self.arrivals: dict[int, list[tuple[float, int]]] = {}
        self.deltas: dict[int, list[tuple[float, int]]] = {}
        self.services: dict[int, FakeRealtimeService] = {}

    def install(self) -> None:
        clock = self
        on_message, send = FakeRealtimeService._on_message, FakeRealtimeService._send

        def timed_on_message(svc: FakeRealtimeService, data: str | bytes) -> None:
            wire = svc._input.wire
            before = len(wire)
            on_message(svc, data)
            if len(wire) > before:
                log = clock.arrivals.setdefault(id(svc), [])
                total = (log[-1][1] if log else 0) + sum(len(b) for b in wire[before:])
                log.append((time.monotonic(), total))
                clock.services[id(svc)] = svc

        def timed_send(svc: FakeRealtimeService, out: Any) -> None:
            send(svc, out)
            if isinstance(out, dict) and out.get("type") == "response.output_audio.delta":
                size = len(out["delta"]) * 3 // 4 - out["delta"].count("=")
                clock.deltas.setdefault(id(svc), []).append((time.monotonic(), size))

        setattr(FakeRealtimeService, "_on_message", timed_on_message)  # noqa: B010
        setattr(FakeRealtimeService, "_send", timed_send)  # noqa: B010

    def report(self) -> dict[str, Any]:
        return {
            svc.wire_audio[:160].hex(): {
                "arrivals": self.arrivals.get(key, []),
                "deltas": self.deltas.get(key, []),
            }
            for key, svc in self.services.items()
        }


async def main() -> None:
    oracle._get_oracle = lambda: None  # see the docstring
    clock = Clock()
    clock.install()
    script = ConnectionScript(reply_ms=REPLY_MS, pace_replies=True)
    lags: list[float] = []
    async with (
        open_openai_loopback(default_script=script, api_key="test") as loopback,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(loop_lag, lags)
        print(f"url {loopback.url}", flush=True)
        stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
        await stdin.receive_some(1)
        print(json.dumps({"calls": clock.report(), "lags": lags}), flush=True)
        nursery.cancel_scope.cancel()


async def loop_lag(into: list[float]) -> None:
    """How late this process's loop wakes from a 10 ms sleep: its timestamps are late
    by as much (both latencies include it)."""
    while True:
        t = trio.current_time()
        await trio.sleep(0.01)
        into.append(trio.current_time() - t - 0.01)


if __name__ == "__main__":
    trio.run(main)
