"""Scale-out for real: two `voxtrio serve` worker processes sharing one PostgreSQL
(the test cluster in VOXTRIO_TEST_PG_DSN) and one loopback provider in this process.
A call that drops on worker A and comes back to worker B continues the conversation;
a bounded load run with random drops loses no turn."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

import voxtrio
from voxtrio.codecs.transcript import AssistantItem, UserItem
from voxtrio.testing import (
    ConnectionScript,
    OpenAILoopback,
    open_openai_loopback,
    open_serve_worker,
)
from voxtrio.testing.telephony import TelephonyCall, open_telephony_call, wav_to_mulaw

from .telephony_helpers import HELLO

pytestmark = pytest.mark.postgres
UTTERANCE = wav_to_mulaw(HELLO)
REPLY_MS = 400


@contextlib.asynccontextmanager
async def worker(dsn: str, loopback: OpenAILoopback, max_calls: int = 50) -> AsyncIterator[str]:
    """A `voxtrio serve` worker's URL; SIGTERM at the end, after which it must exit 0
    (drained)."""
    serving = open_serve_worker(loopback.url, dsn, max_calls, require_clean_exit=True)
    async with serving as (url, _):
        yield url


async def one_turn(call: TelephonyCall) -> None:
    """Say the utterance and wait for the whole (400 ms) reply to come back."""
    before = call.media_bytes
    await call.send_audio(UTTERANCE, realtime=False)
    await call.send_silence(0.6, realtime=False)
    await call.wait_for(lambda c: c.media_bytes - before >= 8 * REPLY_MS)


def turns(dsn: str, sid: str) -> tuple[list[str], list[str]]:
    with voxtrio.PostgresTranscriptStore(dsn) as store:
        items = store.items(sid)
    return (
        [i.text for i in items if isinstance(i, UserItem)],
        [i.text for i in items if isinstance(i, AssistantItem)],
    )


async def test_a_call_dropped_on_worker_a_continues_on_worker_b(pg_dsn: str) -> None:
    with trio.fail_after(60):
        said = f"my order number is {uuid.uuid4().hex[:6]}"
        script = ConnectionScript(reply_ms=REPLY_MS, transcripts=(said, "and thanks"))
        call_sid = f"CA{uuid.uuid4().hex}"
        async with open_openai_loopback(default_script=script, api_key="test") as loopback, \
                worker(pg_dsn, loopback) as url_a, worker(pg_dsn, loopback) as url_b:
            async with open_telephony_call(url_a, call_sid=call_sid) as call:
                await one_turn(call)
                await call.drop()
            dropped_at = trio.current_time()
            async with open_telephony_call(url_b, call_sid=call_sid) as call:
                conn = await loopback.wait_for_connection(2)
                await loopback.wait_until(lambda: bool(conn.instructions))
                resumed_s = trio.current_time() - dropped_at
                # B's first session.update carries A's turns.
                first = conn.instructions[0]
                assert said in first
                assert "Hello from the loopback provider." in first
                await one_turn(call)
                await call.hang_up()
        print(f"\nresume across workers: {resumed_s * 1000:.0f} ms (drop -> B's session.update)")
        user, assistant = turns(pg_dsn, call_sid)
        assert user == [said, "and thanks"]
        assert len(assistant) == 2
        assert not loopback.internal_errors


async def load_run(pg_dsn: str, calls: int, seed: int, limit_s: float) -> None:
    """``calls`` concurrent calls spread at random over two workers; about 40% drop
    after their first turn and come back to the other worker for a second one. Every
    turn of every call must be in PostgreSQL, in order, nothing lost or doubled."""
    rng = random.Random(seed)
    with trio.fail_after(limit_s):
        async with open_openai_loopback(
            default_script=ConnectionScript(reply_ms=REPLY_MS), api_key="test"
        ) as loopback, worker(pg_dsn, loopback, calls) as url_a, \
                worker(pg_dsn, loopback, calls) as url_b:  # fmt: skip
            urls = [url_a, url_b]
            plan = {f"CA{uuid.uuid4().hex}": rng.random() < 0.4 for _ in range(calls)}
            second_turn: list[float] = []

            async def one_call(sid: str, drops: bool) -> None:
                first = rng.randrange(2)
                async with open_telephony_call(urls[first], call_sid=sid) as call:
                    await one_turn(call)
                    if drops:
                        await call.drop()
                    else:
                        await call.hang_up()
                if drops:
                    t = trio.current_time()
                    async with open_telephony_call(urls[1 - first], call_sid=sid) as call:
                        await one_turn(call)
                        second_turn.append(trio.current_time() - t)
                        await call.hang_up()

            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for sid, drops in plan.items():
                    nursery.start_soon(one_call, sid, drops)
            elapsed = trio.current_time() - started
        for sid, drops in plan.items():
            user, assistant = turns(pg_dsn, sid)
            expected = 2 if drops else 1
            assert len(user) == expected, (sid, user)
            assert len(assistant) == expected, (sid, assistant)
        assert not loopback.internal_errors
        # The resumed calls' audio went to the provider as it came (audio/pcmu).
        for conn in loopback.connections:
            assert conn.service.session["audio"]["input"]["format"]["type"] == "audio/pcmu"
        second_turn.sort()
        p99 = second_turn[int(0.99 * (len(second_turn) - 1))] if second_turn else float("nan")
        print(f"\nload: {calls} calls ({sum(plan.values())} dropped and resumed on the other "
              f"worker) in {elapsed:.1f} s over 2 workers; resumed call's turn (reconnect + "
              f"utterance + reply) p99 {p99:.2f} s")  # fmt: skip


async def test_load_run_over_two_workers_with_random_drops(pg_dsn: str) -> None:
    """The bounded CI run (a few seconds on 2 cores)."""
    await load_run(pg_dsn, calls=12, seed=14, limit_s=60)


@pytest.mark.slow
async def test_load_run_of_100_calls_over_two_workers(pg_dsn: str) -> None:
    """The long run: 100 calls, random drops, every transcript complete."""
    await load_run(pg_dsn, calls=100, seed=100, limit_s=300)


async def test_sigterm_drains_a_worker_and_lets_the_live_call_finish(pg_dsn: str) -> None:
    with trio.fail_after(60):
        call_sid = f"CA{uuid.uuid4().hex}"
        script = ConnectionScript(reply_ms=REPLY_MS)
        async with (
            open_openai_loopback(default_script=script, api_key="test") as loopback,
            open_serve_worker(loopback.url, pg_dsn, require_clean_exit=True) as (url, proc),
            open_telephony_call(url, call_sid=call_sid) as live,
        ):
            await one_turn(live)
            proc.terminate()  # SIGTERM while the call is live
            assert proc.stdout is not None
            said = b""
            while b"\n" not in said:
                said += await proc.stdout.receive_some(1)
            assert said.startswith(b"draining: 1 live calls"), said
            # The listener is closed: a new call is refused by the kernel.
            host, port = url.removeprefix("ws://").split("/")[0].split(":")
            with pytest.raises(OSError, match="failed"):
                await trio.open_tcp_stream(host, int(port))
            await one_turn(live)  # the live call goes on
            await live.hang_up()
            assert live.close_code == 1000
            with trio.fail_after(15):
                assert await proc.wait() == 0
        user, assistant = turns(pg_dsn, call_sid)
        assert len(user) == 2
        assert len(assistant) == 2
