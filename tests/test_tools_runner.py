"""The session's tool runner with an in-process provider and trio's autojump clock:
batches answered before one reply is asked for, cancellation by the provider and by
an interruption, providers that go on by themselves, and results sent during an
outage reaching the model once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
import trio.testing

import voxtrio
from voxtrio.codecs.wire import Capabilities
from voxtrio.messages import (
    CreateReply,
    Event,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ToolCall,
    ToolCallCancelled,
    ToolResult,
    UpdateSession,
)
from voxtrio.testing import RecordingProvider

CAPS = Capabilities(tool_calls=True, tool_cancellation=True, session_update=True)


class Provider(RecordingProvider):
    """Wakes waiters on every control it takes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lot = trio.lowlevel.ParkingLot()

    async def until(self, n: int) -> None:
        """Until ``n`` controls were taken."""
        while len(self.controls) < n:
            await self._lot.park()

    async def _deliver(self, msg: Any) -> None:
        await super()._deliver(msg)
        self._lot.unpark_all()


class Probe:
    """Async tools that record what became of each call."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release = trio.Event()
        self.a_started = trio.Event()
        self.a_cancelled = trio.Event()

    def tools(self) -> list[voxtrio.Tool]:
        probe = self

        @voxtrio.tool
        async def quick(x: int) -> int:
            """Doubles x."""
            probe.started.append("quick")
            return 2 * x

        @voxtrio.tool(timeout_s=None)
        async def waits(tag: str) -> str:
            """Waits for the test to release it."""
            probe.started.append(tag)
            probe.a_started.set()
            try:
                await probe.release.wait()
            except trio.Cancelled:
                probe.cancelled.append(tag)
                probe.a_cancelled.set()
                raise
            return f"released {tag}"

        return [quick, waits]


def _results_and_replies(provider: RecordingProvider) -> list[Any]:
    return [c for c in provider.controls if isinstance(c, ToolResult | CreateReply)]


async def test_a_batch_is_answered_then_one_reply(autojump_clock: trio.testing.MockClock) -> None:
    probe, provider = Probe(), Provider(capabilities=CAPS)
    with trio.fail_after(30):
        async with voxtrio.open_session(provider, tools=probe.tools()) as session:
            await provider.connected.wait()
            await provider.emit(ReplyStarted("r1"))
            await provider.emit(ToolCall("c1", "quick", '{"x": 21}'))
            await provider.emit(ToolCall("c2", "waits", '{"tag": "b"}'))
            await provider.emit(ReplyDone("r1"))
            await provider.until(2)  # the declaration and c1's result
            await trio.sleep(1)
            assert _results_and_replies(provider) == [ToolResult("c1", "42", "quick")]
            probe.release.set()
            await provider.until(4)
            await trio.sleep(1)
            await session.aclose()
    assert provider.controls[0] == UpdateSession(tools=tuple(t.declaration for t in probe.tools()))
    assert _results_and_replies(provider) == [
        ToolResult("c1", "42", "quick"),
        ToolResult("c2", "released b", "waits"),
        CreateReply(),
    ]


@pytest.mark.parametrize(
    "cancel",
    [ToolCallCancelled(("c1",)), ReplyInterrupted("r1")],
    ids=["provider-cancels", "reply-interrupted"],
)
async def test_a_cancelled_call_stops_the_tool_and_is_not_answered(
    autojump_clock: trio.testing.MockClock, cancel: Event
) -> None:
    probe, provider = Probe(), Provider(capabilities=CAPS)
    with trio.fail_after(30):
        async with voxtrio.open_session(provider, tools=probe.tools()) as session:
            sub = session.subscribe()
            await provider.connected.wait()
            await provider.emit(ReplyStarted("r1"))
            await provider.emit(ToolCall("c1", "waits", '{"tag": "a"}'))
            await probe.a_started.wait()
            await provider.emit(cancel)
            await provider.emit(ReplyDone("r1"))
            await probe.a_cancelled.wait()
            probe.release.set()
            await trio.sleep(5)
            await session.aclose()
            seen = [e async for e in sub]
    assert _results_and_replies(provider) == []
    assert ToolCall("c1", "waits", '{"tag": "a"}') in seen  # the app still sees the call
    assert cancel in seen


async def test_a_provider_that_goes_on_is_not_asked_for_a_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    caps = Capabilities(tool_calls=True, session_update=True, replies_after_tool_result=True)
    probe, provider = Probe(), Provider(capabilities=caps)
    with trio.fail_after(30):
        async with voxtrio.open_session(provider, tools=probe.tools()) as session:
            await provider.connected.wait()
            await provider.emit(ToolCall("c1", "quick", '{"x": 1}'))
            await provider.emit(ReplyDone("r1"))
            await provider.until(2)
            await trio.sleep(5)
            await session.aclose()
    assert _results_and_replies(provider) == [ToolResult("c1", "2", "quick")]


async def test_a_result_sent_during_an_outage_reaches_the_model_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe, provider = Probe(), Provider(capabilities=CAPS)
    with trio.fail_after(30):
        async with voxtrio.open_session(provider, tools=probe.tools()) as session:
            sub = session.subscribe()
            await provider.connected.wait()
            await provider.emit(ToolCall("c1", "quick", '{"x": 5}'))
            provider.disconnect()
            await trio.sleep(5)  # the runner has answered; the result waits offline
            assert _results_and_replies(provider) == []
            reconnect_instructions = await provider.connect()
            await trio.sleep(5)
            await session.aclose()
            results = [e async for e in sub if isinstance(e, ToolResult)]
            items = session.store.items(session.session_id)
    assert [c for c in provider.controls if isinstance(c, ToolResult)] == [
        ToolResult("c1", "10", "quick")
    ]
    assert results == [ToolResult("c1", "10", "quick")]  # published once, when sent
    assert "10" not in reconnect_instructions.split("[transcript")[-1]  # not also in context
    assert sum(1 for i in items if type(i).__name__ == "ToolResultItem") == 1


async def test_a_sync_tool_runs_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    @voxtrio.tool
    def where() -> str:
        """Says where it ran."""
        threads.append(threading.current_thread())
        return "here"

    provider = Provider(capabilities=CAPS)
    with trio.fail_after(10):
        async with voxtrio.open_session(provider, tools=[where]) as session:
            await provider.connected.wait()
            await provider.emit(ToolCall("c1", "where", "{}"))
            await provider.until(2)  # the declaration, the result
            await session.aclose()
    assert len(threads) == 1
    assert threads[0] is not threading.main_thread()


async def test_tools_need_a_provider_that_can_take_them() -> None:
    caps = Capabilities(tool_calls=True)
    with pytest.raises(voxtrio.UnsupportedError, match="cannot be given tools"):
        async with voxtrio.open_session(Provider(capabilities=caps), tools=[_noop]):
            pass


@voxtrio.tool
def _noop() -> None:
    """Does nothing."""

