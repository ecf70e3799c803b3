"""Scripted tool calls of the fake OpenAI service.

A :class:`~.scripts.ScriptedToolCall` in a :class:`~.scripts.ConnectionScript`
makes the service answer with a response holding one ``function_call`` item instead
of its canned reply (or after the N-th client message). It keeps the
``function_call_output`` the client sends back, and the next reply it makes says
what the tool returned (``"The <name> tool returned <output>."``), so a test can
check the result reached the model and the reply went on.
"""

from __future__ import annotations

from typing import Any

__all__ = ["function_call_events", "tool_reply_text"]


def function_call_events(
    *, response_id: str, item_id: str, call_id: str, name: str, arguments: str
) -> list[dict[str, Any]]:
    """A whole response whose only output is a completed ``function_call`` item."""
    item: dict[str, Any] = {
        "id": item_id,
        "object": "realtime.item",
        "type": "function_call",
        "status": "in_progress",
        "name": name,
        "call_id": call_id,
        "arguments": "",
    }
    done = {**item, "status": "completed", "arguments": arguments}
    response: dict[str, Any] = {
        "id": response_id,
        "object": "realtime.response",
        "status": "in_progress",
        "output": [],
        "output_modalities": ["audio"],
    }
    return [
        {"type": "response.created", "response": response},
        {
            "type": "response.output_item.added",
            "response_id": response_id,
            "output_index": 0,
            "item": item,
        },
        {
            "type": "response.function_call_arguments.delta",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "call_id": call_id,
            "delta": arguments,
        },
        {
            "type": "response.function_call_arguments.done",
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        },
        {
            "type": "response.output_item.done",
            "response_id": response_id,
            "output_index": 0,
            "item": done,
        },
        {
            "type": "response.done",
            "response": {**response, "status": "completed", "output": [done]},
        },
    ]


def tool_reply_text(results: list[tuple[str, str]]) -> str:
    """What the reply after tool results says: each ``(name, output)`` in turn."""
    return " ".join(f"The {name} tool returned {output}." for name, output in results)
