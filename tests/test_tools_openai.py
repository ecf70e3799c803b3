"""Tools as functions, end to end against the loopback OpenAI server on 127.0.0.1:
the declaration the types imply (validated by the ``openai`` types on the way out,
see :func:`tests.loopback_helpers.serve`), the session running the tool, the result
on the wire once, the reply continued, and failures the model and the app can read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest
import trio

import voxtrio
from voxtrio import ErrorEvent, ReplyDone, ReplyTextDone, ToolCall, ToolResult
from voxtrio.codecs.transcript import ToolCallItem, ToolResultItem
from voxtrio.runtime import Session
from voxtrio.testing import ConnectionScript, OpenAILoopback, ScriptedToolCall

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
async def weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, Any]:
    """The current temperature in a city.

    (Only the first paragraph goes to the model.)
    """
    return {"city": city, "temperature": 21 if unit == "C" else 70, "unit": unit}


@voxtrio.tool
def boom(reason: str) -> str:
    """Always fails (a sync tool: it runs in a worker thread)."""
    raise RuntimeError(f"nope: {reason}")


@voxtrio.tool(timeout_s=0.2)
async def slow() -> str:
    """Takes far longer than its timeout."""
    await trio.sleep(60)
    return "never"


@asynccontextmanager
async def tool_session(
    server: OpenAILoopback, tools: list[Any]
) -> AsyncIterator[tuple[Session, Recorder]]:
    provider = provider_for(server.url, turn_detection=None)
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(provider, instructions="Test.", tools=tools) as session,
    ):
        recorder = Recorder(session.subscribe(max_buffer=100_000))
        nursery.start_soon(recorder.run)
        nursery.start_soon(drain, session.output)
        yield session, recorder


def _script(name: str, arguments: str) -> ConnectionScript:
    return ConnectionScript(tool_calls=(ScriptedToolCall(name, arguments, call_id="call_1"),))


async def test_a_typed_function_is_declared_run_answered_and_the_reply_goes_on() -> None:
    with trio.fail_after(20):
        async with (
            serve(default_script=_script("weather", '{"city": "Oslo"}')) as server,
            tool_session(server, [weather]) as (session, rec),
        ):
            await session.create_reply()
            done = await rec.wait_for(ReplyDone, 2)
            assert done.status == "completed"
            texts = [e.text for e in rec.of(ReplyTextDone)]
            session_id, store = session.session_id, session.store
        [update] = server.all_events("session.update")
        [declared] = update["session"]["tools"]
        assert declared == {
            "type": "function",
            "name": "weather",
            "description": "The current temperature in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"default": "C", "enum": ["C", "F"], "type": "string"},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        }
        expected = {"city": "Oslo", "temperature": 21, "unit": "C"}
        outputs = [
            e["item"] for e in server.all_events("conversation.item.create")
        ]
        assert [(o["type"], o["call_id"]) for o in outputs] == [("function_call_output", "call_1")]
        assert json.loads(outputs[0]["output"]) == expected
        # The result, then one response.create asking the model to go on.
        kinds = [e["type"] for e in server.all_events() if e["type"] != "session.update"]
        assert kinds == ["response.create", "conversation.item.create", "response.create"]
        assert texts == [f"The weather tool returned {outputs[0]['output']}."]
        calls, results = rec.of(ToolCall), rec.of(ToolResult)
        assert [c.call_id for c in calls] == ["call_1"]
        assert results == [ToolResult("call_1", outputs[0]["output"], "weather")]
        items = store.items(session_id)
        assert [type(i) for i in items if isinstance(i, ToolCallItem | ToolResultItem)] == [
            ToolCallItem,
            ToolResultItem,
        ]


@pytest.mark.parametrize(
    ("tool", "arguments", "code", "message"),
    [
        (boom, '{"reason": "test"}', "tool_error", "tool boom raised RuntimeError: nope: test"),
        (slow, "{}", "tool_timeout", "tool slow timed out after 0.2 s"),
        (
            weather,
            '{"city": 5}',
            "tool_arguments",
            "invalid arguments for weather: city: Input should be a valid string",
        ),
    ],
    ids=["raises", "times-out", "bad-arguments"],
)
async def test_a_failing_tool_tells_the_model_and_the_app(
    tool: voxtrio.Tool, arguments: str, code: str, message: str
) -> None:
    with trio.fail_after(20):
        async with (
            serve(default_script=_script(tool.name, arguments)) as server,
            tool_session(server, [tool]) as (session, rec),
        ):
            await session.create_reply()
            await rec.wait_for(ReplyDone, 2)
            errors = [e for e in rec.of(ErrorEvent) if e.source == "tools"]
        assert errors == [ErrorEvent(message, code, source="tools")]
        [item] = [e["item"] for e in server.all_events("conversation.item.create")]
        assert json.loads(item["output"]) == {"error": message}
        assert len(server.all_events("response.create")) == 2  # the reply went on


async def test_a_tool_without_a_function_is_left_to_the_app() -> None:
    manual = voxtrio.FunctionTool("lookup", "Looks something up.")
    with trio.fail_after(20):
        async with (
            serve(default_script=_script("lookup", "{}")) as server,
            tool_session(server, [manual]) as (session, rec),
        ):
            await session.create_reply()
            call = await rec.wait_for(ToolCall)
            await rec.wait_for(ReplyDone)
            assert server.all_events("conversation.item.create") == []
            await session.send_tool_result(call.call_id, "found it")
            await session.create_reply()
            await rec.wait_for(ReplyDone, 2)
            texts = [e.text for e in rec.of(ReplyTextDone)]
        assert texts == ["The lookup tool returned found it."]
