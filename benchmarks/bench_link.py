"""Frame throughput over a real websocket: the whole session with the OpenAI link.

48 kHz stereo int16 -> 24 kHz mono 20 ms frames, through ``open_session`` with a
non-realtime :class:`ArrayCapture` and :class:`voxtrio.OpenAIRealtime` pointed at a
minimal websocket server on 127.0.0.1 that only counts the audio it receives (so the
numbers are the client's cost: JSON + base64 encoding, websocket framing and the TCP
loopback), next to the same session with the in-process ``RecordingProvider`` (no
wire at all) in the same run. Each path's best run is reported.

A third path runs a counting server in **another process** (trio and
``benchmarks.ws_sink``, whose numpy unmasking keeps the server's cost low), so this process's
CPU time (``getrusage``: user + system) over the session is the client's alone:
``client us/frame`` is the load-robust figure (on a shared machine wall time swings
with other work; the CPU a session burns much less). For instruction counts, run this
path under ``valgrind --tool=callgrind`` (see ``benchmarks/README.md``).

A run is timed from entering ``open_session`` until the server has every sample (the
client's ``input_audio_buffer.commit`` after the last append arrived). Columns:
output frames per second, times realtime, the ratio to the in-process session, and
whether every sample arrived exactly (count checked against the one-shot conversion).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import trio
import trio_websocket

from benchmarks.bench_pipeline import SOURCE, TARGET, Int16, make_input
from benchmarks.results import Table
from voxtrio import OpenAIRealtime
from voxtrio.actors.capture import ArrayCapture
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.messages import ErrorEvent
from voxtrio.runtime import open_session
from voxtrio.testing.inprocess import RecordingProvider

FRAME_MS = 20
TARGET_RATIO = 0.40  # the issue's: the session over the websocket vs in-process
ROOT = str(Path(__file__).resolve().parents[1])  # for the server's child process


class CountingServer:
    """Accepts one session at a time; counts appended samples until a commit."""

    def __init__(self) -> None:
        self.samples = 0
        self.appends = 0
        self.committed = trio.Event()

    def reset(self) -> None:
        self.samples = 0
        self.appends = 0
        self.committed = trio.Event()

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(json.dumps({"type": "session.created", "event_id": "e0"}))
        try:
            while True:
                message = await ws.get_message()
                event = json.loads(message)
                kind = event.get("type")
                if kind == "input_audio_buffer.append":
                    self.samples += len(base64.b64decode(event["audio"])) // 2
                    self.appends += 1
                elif kind == "input_audio_buffer.commit":
                    self.committed.set()
        except trio_websocket.ConnectionClosed:
            pass


DONE = "bench_done"  # the code of the error event the other-process server answers a commit with


def _serve_remote() -> None:
    """The counting server of the other process, on trio with ``benchmarks.ws_sink``
    (as ``capacity_server``: it unmasks frames with numpy, which keeps the server's own
    cost low, so the client is what the wall clock measures; a trio-websocket server
    here unmasked in Python and was the slower end). On a commit it answers with an
    ``error`` event carrying ``DONE`` and the sample count (an event the codec decodes,
    so the client sees that the server has every sample). Prints its port; serves
    until killed."""
    from benchmarks.ws_sink import SinkConnection, serve_sink

    async def handler(ws: SinkConnection) -> None:
        await ws.send(json.dumps({"type": "session.created", "event_id": "e0"}))
        samples = 0
        while (message := await ws.receive()) is not None:
            event = json.loads(message.data)
            if event.get("type") == "input_audio_buffer.append":
                samples += len(base64.b64decode(event["audio"])) // 2
            elif event.get("type") == "input_audio_buffer.commit":
                error = {"message": str(samples), "code": DONE}
                await ws.send(json.dumps({"type": "error", "error": error}))
                samples = 0

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            print(await nursery.start(serve_sink, handler), flush=True)

    trio.run(main)


async def run_client_only(url: str, pcm: Int16) -> tuple[float, float, int]:
    """One session against the other process's server: (wall s, CPU s, samples)."""
    provider = OpenAIRealtime(
        model="gpt-realtime", api_key="bench-key", base_url=url, turn_detection=None
    )
    capture = ArrayCapture(pcm, SOURCE)
    got = ErrorEvent("", code=None)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    async with open_session(provider, capture=capture, realtime_playback=False) as session:
        async for event in session.subscribe():
            if isinstance(event, ErrorEvent) and event.code == DONE:
                got = event
                break
        elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        await session.aclose()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return elapsed, cpu, int(got.message or 0)


@contextlib.asynccontextmanager
async def remote_server() -> AsyncIterator[str]:
    """The counting server in a child process; yields its URL."""
    code = f"import sys; sys.path.insert(0, {ROOT!r}); "
    code += "from benchmarks.bench_link import _serve_remote; _serve_remote()"
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, [sys.executable, "-c", code], stdout=subprocess.PIPE,
                    check=False)
        )
        assert process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            line += await process.stdout.receive_some(64)
        try:
            yield f"ws://127.0.0.1:{int(line)}/v1/realtime"
        finally:
            process.kill()


async def run_over_websocket(server: CountingServer, url: str, pcm: Int16) -> tuple[float, int]:
    server.reset()
    provider = OpenAIRealtime(
        model="gpt-realtime", api_key="bench-key", base_url=url, turn_detection=None
    )
    capture = ArrayCapture(pcm, SOURCE)
    t0 = time.perf_counter()
    async with open_session(provider, capture=capture, realtime_playback=False) as session:
        await server.committed.wait()
        elapsed = time.perf_counter() - t0
        await session.aclose()
    return elapsed, server.samples


async def run_in_process(pcm: Int16) -> tuple[float, int]:
    provider = RecordingProvider(input_format=TARGET, input_frame_ms=FRAME_MS, record=False)
    capture = ArrayCapture(pcm, SOURCE)
    t0 = time.perf_counter()
    async with open_session(provider, capture=capture, realtime_playback=False) as session:
        await provider.input_ended.wait()
        elapsed = time.perf_counter() - t0
        await session.aclose()
    return elapsed, provider.samples_received


async def measure(seconds: float, repeats: int) -> Table:
    pcm = make_input(seconds)
    expected = convert_oneshot(pcm, SOURCE, TARGET).shape[0]
    server = CountingServer()
    names = ("websocket", "in-process", "client only")
    best = dict.fromkeys(names, math.inf)
    samples = dict.fromkeys(names, 0)
    best_cpu = math.inf
    async with trio.open_nursery() as nursery, remote_server() as remote_url:
        listener = await nursery.start(
            partial(trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None)
        )
        url = f"ws://127.0.0.1:{listener.port}/v1/realtime"
        for _ in range(repeats):
            for name in names:
                gc.collect()
                if name == "websocket":
                    elapsed, got = await run_over_websocket(server, url, pcm)
                elif name == "in-process":
                    elapsed, got = await run_in_process(pcm)
                else:
                    elapsed, cpu, got = await run_client_only(remote_url, pcm)
                    best_cpu = min(best_cpu, cpu)
                best[name] = min(best[name], elapsed)
                samples[name] = got
        nursery.cancel_scope.cancel()

    frames = math.ceil(expected / (TARGET.sample_rate * FRAME_MS / 1000))
    print(
        f"input: {seconds:g} s of 48 kHz stereo -> 24 kHz mono {FRAME_MS} ms frames "
        f"({expected} samples, {frames} frames); best of {repeats} runs"
    )
    header = f"{'session path':50s} {'frames/s':>9s} {'x RT':>6s} {'x in-proc':>9s} {'ok':>3s}"
    print(header)
    print("-" * len(header))
    table = Table(
        "link: the whole session, in-process provider vs OpenAIRealtime over a websocket",
        meta={"input_s": seconds, "repeats": repeats, "frames": frames},
    )
    ref = frames / best["in-process"]
    for name, label in (
        ("in-process", "in-process RecordingProvider (no wire)"),
        ("websocket", "OpenAIRealtime over ws://127.0.0.1"),
        ("client only", "OpenAIRealtime, server in another process"),
    ):
        fps = frames / best[name]
        ok = "yes" if samples[name] == expected else f"NO ({samples[name]})"
        print(f"{label:50s} {fps:9,.0f} {seconds / best[name]:6.0f} {fps / ref:9.2f} {ok:>3s}")
        row = {"path": label, "frames_per_s": fps, "x_realtime": seconds / best[name],
               "ratio_to_in_process": fps / ref, "exact": samples[name] == expected}
        if name == "client only":
            row["client_us_per_frame"] = best_cpu / frames * 1e6
        table.add(**row)
    print(f"client CPU (server in another process): {best_cpu / frames * 1e6:.1f} us per frame")
    # The target is the session's (the client's): judged on the row whose server runs in
    # another process; the same-process row also pays for its server (wsproto unmasking
    # in Python, JSON parsing, base64 decoding), shown for comparison.
    remote = (frames / best["client only"]) / ref
    local = (frames / best["websocket"]) / ref
    met = remote >= TARGET_RATIO
    table.meta.update(ratio_remote_server=remote, ratio_same_process=local, target_met=met)
    print(
        f"target (full session over the websocket >= {TARGET_RATIO:.0%} of the in-process "
        f"session): {'MET' if met else 'NOT MET'} ({remote:.2f} with the server in another "
        f"process; {local:.2f} with it in this process, its own cost included)"
    )
    return table


def main(quick: bool = False) -> Table:
    return trio.run(measure, 5.0 if quick else 60.0, 2 if quick else 5)


if __name__ == "__main__":
    main()
