"""Transcript items, their injection-safe rendering, and folding events into items.

Pure and synchronous: no trio, no clock, no I/O. Three parts:

* :mod:`.items`: the items of a conversation (:class:`UserItem`,
  :class:`AssistantItem`, :class:`ToolCallItem`, :class:`ToolResultItem`,
  :class:`SystemItem`), frozen attrs classes with a stable ``key`` and a transcript
  position ``seq``, and their JSON encoding;
* :mod:`.render`: :func:`render_context_as_text` and :func:`instructions_with_context`
  (its module docstring says why transcript text cannot escape the block it is
  rendered into);
* :mod:`.builder`: :class:`TranscriptBuilder` turns the session's events into items
  (its module docstring says how items are ordered).
"""

from .builder import TranscriptBuilder
from .items import (
    AssistantItem,
    Item,
    SystemItem,
    ToolCallItem,
    ToolResultItem,
    UserItem,
    decode_item,
    encode_item,
    sort_items,
)
from .render import (
    DEFAULT_BASE_INSTRUCTIONS,
    DEFAULT_BUDGET_CHARS,
    MIN_BUDGET_CHARS,
    escape_text,
    instructions_with_context,
    render_context_as_text,
    render_line,
)

__all__ = [
    "DEFAULT_BASE_INSTRUCTIONS",
    "DEFAULT_BUDGET_CHARS",
    "MIN_BUDGET_CHARS",
    "AssistantItem",
    "Item",
    "SystemItem",
    "ToolCallItem",
    "ToolResultItem",
    "TranscriptBuilder",
    "UserItem",
    "decode_item",
    "encode_item",
    "escape_text",
    "instructions_with_context",
    "render_context_as_text",
    "render_line",
    "sort_items",
]
