"""Tools as functions with Gemini Live, end to end against the loopback Gemini server
on 127.0.0.1: declared in the setup, run by the session, answered in a
``toolResponse`` (Gemini goes on by itself: the session asks for no reply), a failing
tool tells the model and the app, and a ``toolCallCancellation`` stops the tool."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import voxtrio
from voxtrio import ErrorEvent, ReplyDone, ReplyTextDone, ToolCallCancelled, ToolResult
from voxtrio.testing.gemini import GeminiScript, GeminiToolCall, open_gemini_loopback

from .test_gemini_session import KEY, check_server, gemini_session
from .test_gemini_session import _sockets_closed as _sockets_closed

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@voxtrio.tool
async def weather(city: str) -> dict[str, Any]:
    """The current temperature in a city."""
    return {"city": city, "temperature": 21}


@voxtrio.tool
async def broken() -> str:
    """Always fails."""
    raise ValueError("no data")


class Blocked:
    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()

    def tool(self) -> voxtrio.Tool:
        async def hold() -> str:
            """Holds until cancelled."""
            self.started.set()
            try:
                await trio.sleep_forever()
            finally:
                self.cancelled.set()

        return voxtrio.Tool.from_function(hold, timeout_s=None)


def _script(name: str, args: dict[str, Any]) -> GeminiScript:
    # turns=None: the only model turn is the one after the tool's result.
    call = GeminiToolCall(name, args, after=1, call_id="fc_1")
    return GeminiScript(tool_calls=(call,), turns=None)


async def test_a_function_tool_runs_and_gemini_goes_on() -> None:
    with trio.fail_after(30):
        async with open_gemini_loopback(
            api_key=KEY, scripts=(_script("weather", {"city": "Oslo"}),)
        ) as server:
            async with gemini_session(server, tools=[weather]) as (_, recorder):
                await recorder.wait_for(ReplyDone)
                texts = [e.text for e in recorder.of(ReplyTextDone)]
                results = recorder.of(ToolResult)
            check_server(server)
        conn = server.connections[0]
        setup = conn.service.setup
        assert setup is not None
        [declaration] = setup["tools"][0]["functionDeclarations"]
        assert declaration["name"] == "weather"
        assert declaration["parametersJsonSchema"]["required"] == ["city"]
        [response] = conn.service.tool_responses
        assert response["id"] == "fc_1"
        assert response["response"] == {"city": "Oslo", "temperature": 21}
        assert conn.service.client_contents == []  # no turnComplete: Gemini went on
        assert [r.call_id for r in results] == ["fc_1"]
        assert texts == ['The weather tool returned {"city":"Oslo","temperature":21}.']


async def test_a_failing_tool_tells_gemini_and_the_app() -> None:
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY, scripts=(_script("broken", {}),)) as server:
            async with gemini_session(server, tools=[broken]) as (_, recorder):
                await recorder.wait_for(ReplyDone)
                errors = [e for e in recorder.of(ErrorEvent) if e.source == "tools"]
            check_server(server)
        message = "tool broken raised ValueError: no data"
        assert errors == [ErrorEvent(message, "tool_error", source="tools")]
        [response] = server.connections[0].service.tool_responses
        assert response["response"] == {"error": message}


async def test_a_cancelled_call_stops_the_tool() -> None:
    blocked = Blocked()
    with trio.fail_after(30):
        async with open_gemini_loopback(api_key=KEY, scripts=(_script("hold", {}),)) as server:
            async with gemini_session(server, tools=[blocked.tool()]) as (session, recorder):
                await blocked.started.wait()
                conn = server.connections[0]
                await conn.send(conn.service.cancel_tool_calls(["fc_1"]))
                await blocked.cancelled.wait()
                await recorder.wait_for(ToolCallCancelled)
                await session.aclose()
            check_server(server)
        assert server.connections[0].service.tool_responses == []
        assert recorder.of(ToolResult) == []
