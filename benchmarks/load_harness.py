"""Load with faults: many sessions in one process, one shared SQLite store, and
loopback servers that drop and close connections at random.

Shared by ``benchmarks/bench_reliability.py`` (the figures of RELIABILITY.md) and
``tests/test_reliability_load.py`` (the invariants, at a bounded size in CI).

Each session ``i`` is a real ``OpenAIRealtime`` session (push mode, no audio) against
a loopback OpenAI Realtime server of its own on 127.0.0.1, and every session writes
its transcript to ONE :class:`~voxtrio.stores.SqliteTranscriptStore`. A driver task
per server plays the provider: every ``turn_interval_s`` (first turn staggered) it
sends a completed input transcription on the current connection; at random times
(exponential gaps, mean ``fault_interval_s``, from ``random.Random(seed)``) it
drops the TCP connection or closes it with a close code the link retries. The app
side subscribes to each session and notes every ``InputTranscriptionCompleted`` it
sees. After ``seconds`` the drivers stop and the apps leave their sessions (a
normal close); then the harness checks and measures:

* **lost**: a transcript an app saw that the store does not hold with the same
  text (the promise: none);
* **unseen**: a transcript a server sent that its app never saw (a drop can lose
  what was in flight on the wire; reported, not a store loss);
* **seen-to-disk**: from the app seeing the transcript (the hub hands an item to
  the store's writer before it publishes the event, so this is a lower bound) and
  **sent-to-disk**, from the server sending it (an upper bound: it adds the
  network, the link and the hub) to the end of the ``COMMIT`` that made it durable
  (in the store's thread, where the writer hands items over directly); the event
  loop's **lag** (a 10 ms sleep's overshoot), which every session's timers suffer;
* **RSS** every second (``/proc/self/statm``) and its slope over the last half of
  the run; MB per session = (peak RSS under load - RSS before) / sessions; and the
  Python heap's allocated blocks (``sys.getallocatedblocks()``) and their slope,
  which the C allocator's arenas (RSS grows in steps) do not blur;
* **fds** (``/proc/self/fd``), **trio tasks** and **threads** before the servers
  start and after everything closed (the store too);
* **hangs**: sessions that had not ended ``hang_after_s`` after they were told to.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

import voxtrio
from voxtrio import ErrorEvent, InputTranscriptionCompleted, ReconnectPolicy
from voxtrio.codecs.transcript import UserItem
from voxtrio.stores import SqliteTranscriptStore
from voxtrio.testing import (
    LoopbackClosedError,
    LoopbackConnection,
    OpenAILoopback,
    open_openai_loopback,
)
from voxtrio.testing.processes import ChildFailed, StderrFile, checkout_env, failure

from .bench_store_shared import TimedSqliteStore

__all__ = ["LoadPlan", "LoadResult", "count_tasks", "open_fds", "rss_mb", "run_load"]

KEY = "sk-load-test-4fJw9QzR2mXc"
#: Close codes the link retries (1008 and OpenAI's 4001/4003/4004 would end the session).
RETRIED_CLOSE_CODES = (1000, 1001, 1011, 1012, 1013)


@attrs.frozen
class LoadPlan:
    """What to run (see the module docstring)."""

    sessions: int = 60
    seconds: float = 10.0
    turn_interval_s: float = 0.5
    fault_interval_s: float = 2.0
    seed: int = 0
    drain_s: float = 5.0
    hang_after_s: float = 30.0
    sample_every_s: float = 1.0


@attrs.define
class LoadResult:
    """What a run measured (see the module docstring)."""

    plan: LoadPlan
    sent: int = 0
    seen: int = 0
    stored: int = 0
    lost: list[tuple[str, str]] = attrs.Factory(list)
    incomplete: list[tuple[str, str]] = attrs.Factory(list)
    unseen: int = 0
    duplicated_seen: int = 0
    faults: Counter[str] = attrs.Factory(Counter)
    connections: int = 0
    provider_errors: int = 0  # events the loopback servers could not process
    errors: Counter[str] = attrs.Factory(Counter)
    seen_to_disk_s: list[float] = attrs.Factory(list)
    sent_to_disk_s: list[float] = attrs.Factory(list)
    lag_s: list[float] = attrs.Factory(list)  # event-loop lag: a 10 ms sleep's overshoot
    rss: list[tuple[float, float]] = attrs.Factory(list)  # (s since start, MB)
    blocks: list[tuple[float, float]] = attrs.Factory(list)  # (s, Python heap blocks)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    fds_before: int = 0
    fds_open: int = 0  # with every session up (the peak sample)
    fds_after: int = 0
    tasks_before: int = 0
    tasks_after: int = 0
    threads_before: int = 0  # voxtrio's own threads (the store's checkpointer)
    threads_after: int = 0
    hung: int = 0
    ended: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def quantile(self, which: str, q: float) -> float:
        """The ``q`` quantile (0..1, nearest rank) of ``seen_to_disk_s``,
        ``sent_to_disk_s`` or ``lag_s``; NaN when empty."""
        values: list[float] = sorted(getattr(self, which))
        if not values:
            return math.nan
        return values[min(len(values) - 1, int(q * len(values)))]

    def rss_slope_mb_per_s(self) -> float:
        """Least-squares slope of RSS over the last half of the samples (MB/s)."""
        return _slope(self.rss)

    def blocks_slope_per_s(self) -> float:
        """Least-squares slope of the Python heap's allocated blocks
        (``sys.getallocatedblocks()``) over the last half of the samples (blocks/s):
        what Python objects the run keeps, without the C allocator's arenas."""
        return _slope(self.blocks)

    def rss_per_session_mb(self) -> float:
        """(Peak RSS under load - RSS before) / sessions."""
        peak = max((m for _, m in self.rss), default=self.rss_before_mb)
        return (peak - self.rss_before_mb) / self.plan.sessions

    def summary(self) -> dict[str, float | int | str]:
        """The figures, flat (for a table row)."""
        return {
            "sessions": self.plan.sessions,
            "seconds": self.plan.seconds,
            "seed": self.plan.seed,
            "sent": self.sent,
            "seen": self.seen,
            "stored": self.stored,
            "lost": len(self.lost),
            "incomplete": len(self.incomplete),
            "unseen": self.unseen,
            "faults": sum(self.faults.values()),
            "drops": self.faults["drop"],
            "closes": sum(n for k, n in self.faults.items() if k.startswith("close")),
            "connections": self.connections,
            "hung": self.hung,
            "seen_p50_s": self.quantile("seen_to_disk_s", 0.5),
            "seen_p99_s": self.quantile("seen_to_disk_s", 0.99),
            "seen_max_s": self.quantile("seen_to_disk_s", 1.0),
            "sent_p50_s": self.quantile("sent_to_disk_s", 0.5),
            "sent_p99_s": self.quantile("sent_to_disk_s", 0.99),
            "sent_max_s": self.quantile("sent_to_disk_s", 1.0),
            "lag_p99_s": self.quantile("lag_s", 0.99),
            "lag_max_s": self.quantile("lag_s", 1.0),
            "rss_before_mb": self.rss_before_mb,
            "rss_peak_mb": max((m for _, m in self.rss), default=math.nan),
            "rss_after_mb": self.rss_after_mb,
            "rss_mb_per_session": self.rss_per_session_mb(),
            "rss_slope_mb_per_s": self.rss_slope_mb_per_s(),
            "blocks_slope_per_s": self.blocks_slope_per_s(),
            "fds_before": self.fds_before,
            "fds_open": self.fds_open,
            "fds_after": self.fds_after,
            "tasks_before": self.tasks_before,
            "tasks_after": self.tasks_after,
            "threads_before": self.threads_before,
            "threads_after": self.threads_after,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
        }


def _slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope over the last half of ``samples`` (NaN: too few)."""
    half = samples[len(samples) // 2 :]
    if len(half) < 2:
        return math.nan
    xs = [t for t, _ in half]
    ys = [m for _, m in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# ------------------------------------------------------------------ process gauges


def rss_mb() -> float:
    """This process's resident set size in MB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        resident = int(f.read().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / 1e6


def open_fds() -> int:
    """How many file descriptors this process has open (Linux ``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir opened


def count_tasks() -> int:
    """How many tasks the current trio run has (the root's tree, this one included)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    count = 0
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


# ------------------------------------------------------------------ the store


# ------------------------------------------------------------------ the provider's side
#
# It runs in a child process (``python -m benchmarks.load_harness serve ...``), as a
# real provider would be elsewhere: the figures of the app's process (RSS, fds,
# tasks, event-loop lag) are then the sessions' alone. It prints one JSON line per
# server (its port), then one per transcript sent and per fault, then ``{"done":
# ...}`` when the load time is over; it goes on serving (close handshakes, the last
# reconnects) until its stdin closes.


def _line(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _is_open(conn: LoopbackConnection) -> bool:
    return conn.is_open


async def _drive(
    server: OpenAILoopback, index: int, plan: LoadPlan, rng: random.Random, stop_at: float
) -> None:
    """One server's provider: a transcript every turn, a fault now and then."""
    next_turn = trio.current_time() + rng.random() * plan.turn_interval_s
    next_fault = trio.current_time() + rng.expovariate(1 / plan.fault_interval_s)
    turn = 0
    handled = 0  # connections taken over so far
    while trio.current_time() < stop_at:
        await server.wait_for_connection(handled + 1)
        handled = len(server.accepted)
        conn = server.accepted[-1]
        # Accepted is not open yet: the handshake's answer may still be on its way.
        await server.wait_until(lambda c=conn: c.is_open or c.closed.is_set())  # type: ignore[misc]
        while _is_open(conn):
            fault = next_fault < next_turn
            await trio.sleep_until(min(next_fault if fault else next_turn, stop_at))
            if trio.current_time() >= stop_at:
                return
            if not _is_open(conn):
                break
            if fault:
                next_fault = trio.current_time() + rng.expovariate(1 / plan.fault_interval_s)
                if rng.random() < 0.5:
                    _line(fault="drop", s=index)
                    await conn.drop()
                else:
                    code = rng.choice(RETRIED_CLOSE_CODES)
                    _line(fault=f"close {code}", s=index)
                    await conn.close(code, "load test fault")
                break
            next_turn += plan.turn_interval_s
            item_id = f"item_{index}_{turn}"
            text = f"session {index} turn {turn}"
            when = time.perf_counter()  # CLOCK_MONOTONIC: the same in both processes
            try:
                await conn.send_transcript(text, item_id=item_id)
            except LoopbackClosedError:
                continue  # closed meanwhile: this turn was never sent
            _line(sent=item_id, s=index, text=text, t=when)
            turn += 1


async def _serve(plan: LoadPlan) -> None:
    rng = random.Random(plan.seed)
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(open_openai_loopback(api_key=KEY))
            for _ in range(plan.sessions)
        ]
        for server in servers:
            _line(port=server.port)
        stop_at = trio.current_time() + plan.seconds
        async with trio.open_nursery() as nursery:
            for index, server in enumerate(servers):
                seed = rng.randrange(2**32)
                nursery.start_soon(_drive, server, index, plan, random.Random(seed), stop_at)
            await trio.sleep_until(stop_at)
            nursery.cancel_scope.cancel()
        _line(done=sum(len(s.connections) for s in servers),
              errors=sum(len(s.internal_errors) for s in servers))  # fmt: skip
        # Serve on (the apps' close handshakes) until the harness closes our stdin.
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


def serve_main(argv: Sequence[str]) -> None:
    """``python -m benchmarks.load_harness serve PLAN_JSON``: the provider's side."""
    logging.getLogger("voxtrio").setLevel(logging.ERROR)
    trio.run(_serve, LoadPlan(**json.loads(argv[0])))


# ------------------------------------------------------------------ the app's side


@attrs.define
class _Session:
    index: int
    seen: dict[str, tuple[str, float]] = attrs.Factory(dict)  # item id -> (text, when)
    duplicated: int = 0
    errors: Counter[str] = attrs.Factory(Counter)
    ended: bool = False

    @property
    def session_id(self) -> str:
        return f"load-{self.index:04d}"


class _Progress:
    """Counts what the run waits for at its end: transcripts sent but not seen yet,
    sessions not ended yet; :meth:`wait` wakes on every change."""

    def __init__(self, sessions: int) -> None:
        self._sent: set[tuple[int, str]] = set()
        self._seen: set[tuple[int, str]] = set()
        self.outstanding = 0  # sent and not seen
        self.running = sessions
        self._changed = trio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def sent(self, key: tuple[int, str]) -> None:
        self._sent.add(key)
        if key not in self._seen:
            self.outstanding += 1
        self._notify()

    def saw(self, key: tuple[int, str]) -> None:
        self._seen.add(key)
        if key in self._sent:
            self.outstanding -= 1
        self._notify()

    def ended(self) -> None:
        self.running -= 1
        self._notify()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        while True:
            changed = self._changed
            if predicate():
                return
            await changed.wait()


@attrs.define
class _Provider:
    """What the child process reported."""

    ports: list[int] = attrs.Factory(list)
    sent: dict[tuple[int, str], tuple[str, float]] = attrs.Factory(dict)
    faults: Counter[str] = attrs.Factory(Counter)
    connections: int = 0
    internal_errors: int = 0
    ready: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    #: The harness closed the child's stdin: it may end now.
    stopping: bool = False

    def take(self, record: dict[str, Any], progress: _Progress) -> None:
        if "port" in record:
            self.ports.append(int(record["port"]))
        elif "sent" in record:
            key = (int(record["s"]), str(record["sent"]))
            self.sent[key] = (str(record["text"]), float(record["t"]))
            progress.sent(key)
        elif "fault" in record:
            self.faults[str(record["fault"])] += 1
        elif "done" in record:
            self.connections = int(record["done"])
            self.internal_errors = int(record["errors"])
            self.done.set()


#: What a failed server child is called in its ChildFailed.
SERVER = "the load server process"


async def _read_provider(
    child: trio.Process,
    stderr: StderrFile | None,
    provider: _Provider,
    progress: _Progress,
    n: int,
) -> None:
    """Take the child's lines as they come. Its stdout ending before the harness let
    it stop (or with an exit code other than 0) means it died: raise
    :class:`ChildFailed` at once, with its stderr, rather than wait for lines that
    will never come."""
    stdout = child.stdout
    assert stdout is not None
    buffer = b""
    async with stdout:
        async for chunk in stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                provider.take(json.loads(line), progress)
            if len(provider.ports) >= n:
                provider.ready.set()
    with trio.move_on_after(5):  # stdout closes as it exits: reap it
        await child.wait()
    code = child.returncode
    if provider.stopping and code == 0:
        return
    what = f"exited with code {code}" if code is not None else "closed its stdout"
    if not provider.stopping:
        what += " before the harness let it stop"
    raise failure(child, SERVER, stderr, what)


def _server_command(plan: LoadPlan) -> list[str]:
    """The child's command line (the provider's side of ``plan``)."""
    return [sys.executable, "-m", "benchmarks.load_harness", "serve",
            json.dumps(attrs.asdict(plan))]  # fmt: skip


async def _app(
    port: int, store: TimedSqliteStore, state: _Session, stop: trio.Event, progress: _Progress
) -> None:
    """The app's side: one session, every completed transcript noted."""
    provider = voxtrio.OpenAIRealtime(
        model="gpt-realtime",
        api_key=KEY,
        base_url=f"ws://127.0.0.1:{port}{OpenAILoopback.PATH}",
        reconnect=ReconnectPolicy(),
    )
    try:
        async with voxtrio.open_session(
            provider, store=store, session_id=state.session_id, realtime_playback=False
        ) as session:
            sub = session.subscribe(max_buffer=10_000)

            async def watch() -> None:
                async for event in sub:
                    if isinstance(event, InputTranscriptionCompleted):
                        key = str(event.item_id)
                        if key in state.seen:
                            state.duplicated += 1
                        else:
                            state.seen[key] = (event.transcript, time.perf_counter())
                            progress.saw((state.index, key))
                    elif isinstance(event, ErrorEvent):
                        state.errors[event.code or event.source] += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await stop.wait()
                nursery.cancel_scope.cancel()
    finally:
        state.ended = True
        progress.ended()


async def _sample(result: LoadResult, every_s: float) -> None:
    started = time.perf_counter()
    while True:
        now = time.perf_counter() - started
        result.rss.append((now, rss_mb()))
        result.blocks.append((now, float(sys.getallocatedblocks())))
        result.fds_open = max(result.fds_open, open_fds())
        await trio.sleep(every_s)


async def _lag(result: LoadResult) -> None:
    """How late the event loop wakes a task (what every session's timers suffer)."""
    while True:
        due = trio.current_time() + 0.01
        await trio.sleep_until(due)
        result.lag_s.append(trio.current_time() - due)


async def run_load(plan: LoadPlan, db: Path) -> LoadResult:
    """Run ``plan`` with the shared store at ``db`` (a new file); see the module
    docstring for what is measured. Must run in a trio run of its own (the task and
    fd counts are of the whole run and process).

    Raises:
        ChildFailed: the server child died (before or during the run), quoting the
            end of its stderr; the sessions are cancelled at once.
    """
    result = LoadResult(plan)
    gc.collect()
    result.fds_before = open_fds()
    result.tasks_before = count_tasks()
    result.threads_before = _our_threads()
    result.rss_before_mb = rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    states = [_Session(i) for i in range(plan.sessions)]
    stop = trio.Event()
    provider = _Provider()
    progress = _Progress(plan.sessions)
    # The store itself, not a wrapper: a wrapped store would turn the writer's
    # direct hand-over to the store's thread off. Commit times come from its thread.
    sqlite = TimedSqliteStore(db)
    command = _server_command(plan)
    env = checkout_env()
    try:
        with StderrFile() as stderr:
            async with trio.open_nursery() as outer:
                child = await outer.start(partial(
                    trio.run_process, command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=stderr.file, env=env, check=False,
                ))  # fmt: skip
                assert child.stdin is not None
                outer.start_soon(_read_provider, child, stderr, provider, progress, plan.sessions)
                await provider.ready.wait()
                async with trio.open_nursery() as sampler:
                    sampler.start_soon(_sample, result, plan.sample_every_s)
                    sampler.start_soon(_lag, result)
                    async with trio.open_nursery() as nursery:
                        for port, state in zip(provider.ports, states, strict=True):
                            nursery.start_soon(_app, port, sqlite, state, stop, progress)
                        await provider.done.wait()
                        # Let what is on its way arrive (bounded), then leave normally.
                        with trio.move_on_after(plan.drain_s):
                            await progress.wait(lambda: progress.outstanding == 0)
                        stop.set()
                        with trio.move_on_after(plan.hang_after_s):
                            await progress.wait(lambda: progress.running == 0)
                        result.hung = sum(not s.ended for s in states)
                        nursery.cancel_scope.cancel()  # the hung ones, if any
                    result.rss.append((time.perf_counter() - wall0, rss_mb()))
                    sampler.cancel_scope.cancel()
                provider.stopping = True
                await child.stdin.aclose()
    except* ChildFailed as failed:  # from the reader: the server died; not as a group
        raise failed.exceptions[0] from None
    finally:
        await sqlite.aclose()
    result.wall_s = time.perf_counter() - wall0
    result.cpu_s = time.process_time() - cpu0
    result.faults = provider.faults
    result.connections = provider.connections
    result.provider_errors = provider.internal_errors
    _check(result, states, provider, sqlite.durable, SqliteTranscriptStore(db))
    gc.collect()
    await trio.lowlevel.checkpoint()
    result.fds_after = open_fds()
    result.tasks_after = count_tasks()
    result.threads_after = _our_threads()
    result.rss_after_mb = rss_mb()
    return result


def _our_threads() -> int:
    """voxtrio's own threads still alive (the store's checkpoint thread)."""
    return sum(t.name.startswith("voxtrio") for t in threading.enumerate())


def _check(
    result: LoadResult,
    states: Sequence[_Session],
    provider: _Provider,
    durable: dict[tuple[str, str], float],
    reader: SqliteTranscriptStore,
) -> None:
    """Compare what was sent, seen and stored (read back by a fresh connection)."""
    result.sent = len(provider.sent)
    with reader:
        for state in states:
            items = {
                i.item_id: i for i in reader.items(state.session_id) if isinstance(i, UserItem)
            }
            result.seen += len(state.seen)
            result.duplicated_seen += state.duplicated
            result.errors.update(state.errors)
            for item_id, (text, seen_at) in state.seen.items():
                sent = provider.sent.get((state.index, item_id))
                stored = items.get(item_id)
                if stored is None:
                    result.lost.append((state.session_id, item_id))
                    continue
                result.stored += 1
                if stored.text != text or sent is None or sent[0] != text:
                    result.incomplete.append((state.session_id, item_id))
                key = (state.session_id, f"user:{item_id}")
                if key in durable:
                    result.seen_to_disk_s.append(durable[key] - seen_at)
                    if sent is not None:
                        result.sent_to_disk_s.append(durable[key] - sent[1])
    result.unseen = sum(1 for (s, i) in provider.sent if i not in states[s].seen)
    result.ended = sum(s.ended for s in states)


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        raise SystemExit("usage: python -m benchmarks.load_harness serve PLAN_JSON")
    serve_main(sys.argv[2:])
