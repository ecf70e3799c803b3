"""Many sessions in one process: N concurrent OpenAIRealtime sessions over websockets.

Each session streams the same 2 s of 48 kHz stereo (non-realtime ``ArrayCapture``)
through its own link to one local counting server on 127.0.0.1; the run ends when
every session's commit has arrived. Reported: wall time from the first
``open_session`` to the last commit (connection set-up included), aggregate output
frames per second, the ratio to a single session in the same run, and how many
sessions delivered exactly the one-shot conversion's sample count.
"""

from __future__ import annotations

import base64
import json
import time
from functools import partial

import numpy as np
import trio
import trio_websocket

from benchmarks.results import Table
from voxtrio import OpenAIRealtime
from voxtrio.actors.capture import ArrayCapture
from voxtrio.codecs import AudioFormat
from voxtrio.codecs.convert import convert_oneshot
from voxtrio.runtime import open_session

SOURCE = AudioFormat(48_000, 2)
TARGET = AudioFormat(24_000)
SECONDS = 2.0
FRAMES_PER_SESSION = int(SECONDS * 50)


class CountingServer:
    """Counts the samples of every connection until ``expected`` commits arrived."""

    def __init__(self, expected: int) -> None:
        self.samples: list[int] = []
        self.commits = 0
        self.expected = expected
        self.done = trio.Event()

    async def handler(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        index = len(self.samples)
        self.samples.append(0)
        await ws.send_message(json.dumps({"type": "session.created", "event_id": "e0"}))
        try:
            while True:
                event = json.loads(await ws.get_message())
                if event.get("type") == "input_audio_buffer.append":
                    self.samples[index] += len(base64.b64decode(event["audio"])) // 2
                elif event.get("type") == "input_audio_buffer.commit":
                    self.commits += 1
                    if self.commits == self.expected:
                        self.done.set()
        except trio_websocket.ConnectionClosed:
            pass


async def run_sessions(n: int, pcm: np.ndarray, want: int) -> tuple[float, int]:
    server = CountingServer(n)
    async with trio.open_nursery() as nursery:
        listener = await nursery.start(
            partial(trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None)
        )
        url = f"ws://127.0.0.1:{listener.port}/v1/realtime"

        async def one() -> None:
            provider = OpenAIRealtime(
                model="gpt-realtime", api_key="bench-key", base_url=url, turn_detection=None
            )
            capture = ArrayCapture(pcm, SOURCE)
            async with open_session(provider, capture=capture, realtime_playback=False) as s:
                await server.done.wait()
                await s.aclose()

        t0 = time.perf_counter()
        async with trio.open_nursery() as sessions:
            for _ in range(n):
                sessions.start_soon(one)
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return elapsed, sum(s == want for s in server.samples)


async def measure(counts: list[int]) -> Table:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal((int(SECONDS * SOURCE.sample_rate), 2)) * 1000).astype(np.int16)
    want = convert_oneshot(pcm, SOURCE, TARGET).shape[0]
    print(f"each session: {SECONDS:g} s of 48 kHz stereo -> 24 kHz mono 20 ms frames")
    header = f"{'sessions':>8s} {'wall s':>7s} {'frames/s':>9s} {'x one':>6s} {'exact':>9s}"
    print(header)
    print("-" * len(header))
    table = Table(
        "sessions: N concurrent OpenAIRealtime sessions, 2 s each, as fast as possible",
        meta={"seconds_per_session": SECONDS},
    )
    single = 0.0
    for n in counts:
        elapsed, exact = await run_sessions(n, pcm, want)
        fps = n * FRAMES_PER_SESSION / elapsed
        single = single or fps
        print(f"{n:8d} {elapsed:7.2f} {fps:9,.0f} {fps / single:6.2f} {exact:>4d}/{n:<4d}")
        table.add(sessions=n, wall_s=elapsed, aggregate_frames_per_s=fps,
                  ratio_to_one=fps / single, exact_sessions=exact)
    return table


def main(quick: bool = False) -> Table:
    return trio.run(measure, [1, 10, 20] if quick else [1, 10, 50, 200])


if __name__ == "__main__":
    main()
