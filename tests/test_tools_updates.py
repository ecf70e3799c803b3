"""Mid-session changes against the loopback OpenAI server on 127.0.0.1: the live
connection gets a ``session.update`` at once, and the next connection (after a drop)
is configured with the new instructions and tools. Gemini refuses at the call.
"""

from __future__ import annotations

import pytest
import trio

import voxtrio
from voxtrio import (
    GeminiLive,
    ReplyDone,
    ReplyTextDone,
    SessionConnected,
    SessionReconnected,
    ToolResult,
    UnsupportedError,
)
from voxtrio.testing import ConnectionScript, ScriptedToolCall

from .loopback_helpers import (
    LOOPBACK_MARKS,
    Recorder,
    _sockets_closed,  # noqa: F401 - an autouse fixture
    drain,
    provider_for,
    serve,
)

pytestmark = LOOPBACK_MARKS


@voxtrio.tool
def first() -> str:
    """The first tool."""
    return "one"


@voxtrio.tool
def second(word: str) -> str:
    """The second tool."""
    return word.upper()


async def test_updates_reach_the_live_connection_and_the_next_one() -> None:
    calls = (ScriptedToolCall("second", '{"word": "hi"}', call_id="call_2"),)
    scripts = (ConnectionScript(), ConnectionScript(tool_calls=calls))
    with trio.fail_after(20):
        async with (
            serve(scripts=scripts) as server,
            trio.open_nursery() as nursery,
            voxtrio.open_session(
                provider_for(server.url, turn_detection=None),
                instructions="Old instructions.",
                tools=[first],
            ) as session,
        ):
            rec = Recorder(session.subscribe(max_buffer=10_000))
            nursery.start_soon(rec.run)
            nursery.start_soon(drain, session.output)
            await rec.wait_for(SessionConnected)
            await session.update_instructions("New instructions.")
            await session.update_tools([second])
            live = server.connections[0]
            update = await live.wait_for_event("session.update", 3)
            await server.drop()
            await rec.wait_for(SessionReconnected)
            await session.create_reply()  # the second connection calls "second"
            await rec.wait_for(ReplyDone, 2)
            texts = [e.text for e in rec.of(ReplyTextDone)]
            results = rec.of(ToolResult)
        connect, by_instructions, by_tools = live.events_of("session.update")
        assert connect["session"]["instructions"] == "Old instructions."
        assert [t["name"] for t in connect["session"]["tools"]] == ["first"]
        assert by_instructions["session"] == {
            "type": "realtime",
            "instructions": "New instructions.",
        }
        assert update == by_tools
        assert by_tools["session"]["type"] == "realtime"
        assert [t["name"] for t in by_tools["session"]["tools"]] == ["second"]
        [reconnect] = server.connections[1].events_of("session.update")
        assert reconnect["session"]["instructions"].startswith("New instructions.")
        assert [t["name"] for t in reconnect["session"]["tools"]] == ["second"]
        assert results == [ToolResult("call_2", "HI", "second")]
        assert texts == ["The second tool returned HI."]


async def test_gemini_cannot_change_its_session() -> None:
    provider = GeminiLive(model="gemini-live-2.5-flash-preview", api_key="k",
                          base_url="ws://127.0.0.1:9/ws")  # fmt: skip
    with trio.fail_after(10):
        async with voxtrio.open_session(provider) as session:
            with pytest.raises(UnsupportedError, match=r"cannot update the instructions: the "
                               r"gemini provider does not support it"):  # fmt: skip
                await session.update_instructions("x")
            with pytest.raises(UnsupportedError, match="cannot update the tools"):
                await session.update_tools([first])
            await session.aclose()
