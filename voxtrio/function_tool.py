"""The provider-neutral declaration of a function the model may call.

:class:`FunctionTool` is what a provider is told about a tool: its name, description
and JSON Schema. Every codec maps it to its wire format (OpenAI ``session.tools``,
Gemini ``functionDeclarations``); :class:`voxtrio.Tool` adds the function the session
runs. It sits on the ground floor (attrs only) so that messages, codecs and the
runtime can all name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["FunctionTool"]


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@attrs.frozen
class FunctionTool:
    """A function the model may call; its calls arrive as :class:`ToolCall`.

    Attributes:
        name: 1..64 characters of letters, digits, ``_`` and ``-``.
        description: what it does, for the model.
        parameters: a JSON Schema object for its arguments.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name):
            raise ValueError(
                f"tool name must be 1..64 letters, digits, '_' or '-', got {self.name!r}"
            )
        if not isinstance(self.parameters, Mapping):
            raise ValueError("tool parameters must be a JSON Schema object (a mapping)")

    def to_wire(self) -> dict[str, Any]:
        """The tool's declaration as a JSON-ready ``function`` tool dict."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }
