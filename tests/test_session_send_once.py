"""Send-once: what the app adds to the conversation (a text, a tool result) is
recorded when the link has actually sent it, so one sent before the first connection
or during an outage reaches the model exactly once -- as a new item, not also inside
the (re)connect instructions as a past turn -- and is stored once."""

from __future__ import annotations

import pytest
import trio

from voxtrio.actors.transcript_store import MemoryTranscriptStore
from voxtrio.codecs.transcript import ToolResultItem, UserItem
from voxtrio.messages import Event, SendText, ToolCall, ToolResult
from voxtrio.runtime import Subscription, open_session
from voxtrio.testing import RecordingProvider


async def until(sub: Subscription, kind: type[Event], seen: list[Event]) -> None:
    async for event in sub:
        seen.append(event)
        if isinstance(event, kind):
            return
    raise AssertionError(f"no {kind.__name__}")


@pytest.mark.parametrize("when", ["before the first connection", "during an outage"])
async def test_a_text_and_a_tool_result_queued_by_the_link_reach_the_model_once(
    when: str,
) -> None:
    provider = RecordingProvider(connect_at_start=(when == "during an outage"))
    store = MemoryTranscriptStore()
    seen: list[Event] = []
    with trio.fail_after(10):
        async with open_session(provider, instructions="Base.", store=store, session_id="s") as s:
            sub = s.subscribe(max_buffer=1000)
            if provider.online:
                await provider.emit(ToolCall("c1", "lookup", "{}"))
                await until(sub, ToolCall, seen)
                provider.disconnect()
            await s.send_text("queued words")
            await s.send_tool_result("c1", "queued result", name="lookup")
            instructions = await provider.connect()
            await until(sub, ToolResult, seen)
            await s.aclose()
            seen += [e async for e in sub]
    # The instructions of the connection that carried them do not hold them ...
    assert "queued words" not in instructions
    assert "queued result" not in instructions
    # ... the model got each once, as a new item ...
    texts = [c for c in provider.controls if isinstance(c, SendText)]
    results = [c for c in provider.controls if isinstance(c, ToolResult)]
    assert [t.text for t in texts] == ["queued words"]
    assert results == [ToolResult("c1", "queued result", "lookup")]
    # ... subscribers saw each once, and the store holds each once.
    assert [e for e in seen if isinstance(e, SendText)] == texts
    assert [e for e in seen if isinstance(e, ToolResult)] == results
    items = store.items("s")
    assert [i.text for i in items if isinstance(i, UserItem)] == ["queued words"]
    assert [i.output for i in items if isinstance(i, ToolResultItem)] == ["queued result"]


async def test_what_was_sent_is_in_the_next_connections_instructions_once() -> None:
    provider = RecordingProvider(connect_at_start=False)
    with trio.fail_after(10):
        async with open_session(provider, instructions="Base.") as s:
            sub = s.subscribe()
            await s.send_text("said while offline")
            await provider.connect()
            await until(sub, SendText, [])
            provider.disconnect()
            again = await provider.connect()
    assert again.count("said while offline") == 1  # a past turn now, once
    assert [c.text for c in provider.controls if isinstance(c, SendText)] == [
        "said while offline"
    ]


async def test_a_tool_result_takes_its_name_from_the_call_it_answers() -> None:
    provider = RecordingProvider()
    with trio.fail_after(10):
        async with open_session(provider) as s:
            sub = s.subscribe()
            await provider.connected.wait()
            await provider.emit(ToolCall("c7", "weather", "{}"))
            await until(sub, ToolCall, [])
            await s.send_tool_result("c7", "sunny")
            await s.send_tool_result("c8", "unknown call")  # no call seen: no name
            await s.send_tool_result("c7", "again", name="explicit")
            for _ in range(3):
                await until(sub, ToolResult, [])
    results = [c for c in provider.controls if isinstance(c, ToolResult)]
    assert results == [
        ToolResult("c7", "sunny", "weather"),
        ToolResult("c8", "unknown call", None),
        ToolResult("c7", "again", "explicit"),
    ]
