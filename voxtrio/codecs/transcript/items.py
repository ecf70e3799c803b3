"""Transcript items: frozen attrs classes with a stable key and a position ``seq``,
and their JSON encoding (for stores).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final, TypeAlias

import attrs

__all__ = [
    "AssistantItem",
    "Item",
    "SystemItem",
    "ToolCallItem",
    "ToolResultItem",
    "UserItem",
    "check_items",
    "decode_item",
    "encode_item",
    "sort_items",
]

def _text(value: str) -> str:
    """Make text fields valid Unicode: a surrogate pair becomes its character, a lone
    surrogate U+FFFD. Such strings can come out of a provider's JSON (``"\\ud800"``);
    they are not text, cannot be encoded as UTF-8, and would not round-trip."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _opt_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


_str = attrs.validators.instance_of(str)
_opt_str = attrs.validators.optional(_str)
_opt_int = attrs.validators.optional(attrs.validators.instance_of(int))
_opt_float = attrs.validators.optional(attrs.validators.instance_of((int, float)))


# Required fields stay spelled out (``attrs.field(converter=_text, validator=_str)``):
# the attrs mypy plugin reads a field without a literal ``attrs.field`` as defaulted.


def _opt_text_field() -> Any:
    return attrs.field(default=None, converter=_opt_text, validator=_opt_str)


def _seq_field() -> Any:
    return attrs.field(default=0, validator=attrs.validators.instance_of(int))


def _created_field() -> Any:
    return attrs.field(default=None, validator=_opt_float)


# --------------------------------------------------------------------------- items


@attrs.frozen
class _Turn:
    """What one side said: the fields user and assistant items share.

    Attributes:
        item_id: the provider's item id (or one the builder made up).
        text: what was said.
        seq: position in the transcript (stores sort by it).
        pts: stream position (samples of the provider's input stream), when known.
        created_s: wall-clock time (seconds since the epoch) it was recorded.
        interrupted: the turn was cut off before it ended.
    """

    item_id: str = attrs.field(converter=_text, validator=_str)
    text: str = attrs.field(converter=_text, validator=_str)
    seq: int = _seq_field()
    pts: int | None = attrs.field(default=None, validator=_opt_int)
    created_s: float | None = _created_field()
    interrupted: bool = False


@attrs.frozen
class UserItem(_Turn):
    """What the caller said (the provider's transcription of one input item), or a
    text message the app sent; the fields are :class:`_Turn`'s."""

    @property
    def key(self) -> str:
        return f"user:{self.item_id}"


@attrs.frozen
class AssistantItem(_Turn):
    """What the assistant said (reply text, or the transcript of reply audio).

    ``interrupted`` means the caller barged in: they may not have heard all of it;
    ``response_id`` is the reply's, when known.
    """

    response_id: str | None = _opt_text_field()

    @property
    def key(self) -> str:
        return f"assistant:{self.item_id}"


@attrs.frozen
class ToolCallItem:
    """The model called a tool; ``arguments`` is the model's (JSON) argument text."""

    call_id: str = attrs.field(converter=_text, validator=_str)
    name: str = attrs.field(converter=_text, validator=_str)
    arguments: str = attrs.field(converter=_text, validator=_str)
    seq: int = _seq_field()
    created_s: float | None = _created_field()

    @property
    def key(self) -> str:
        return f"tool_call:{self.call_id}"


@attrs.frozen
class ToolResultItem:
    """The app's result for a tool call; ``name`` is the called tool's, when known."""

    call_id: str = attrs.field(converter=_text, validator=_str)
    output: str = attrs.field(converter=_text, validator=_str)
    name: str | None = _opt_text_field()
    seq: int = _seq_field()
    created_s: float | None = _created_field()

    @property
    def key(self) -> str:
        return f"tool_result:{self.call_id}"


@attrs.frozen
class SystemItem:
    """A note for the record (never rendered into the instructions)."""

    item_id: str = attrs.field(converter=_text, validator=_str)
    text: str = attrs.field(converter=_text, validator=_str)
    seq: int = _seq_field()
    created_s: float | None = _created_field()

    @property
    def key(self) -> str:
        return f"system:{self.item_id}"


Item: TypeAlias = UserItem | AssistantItem | ToolCallItem | ToolResultItem | SystemItem

_ITEM_TYPES: Final = (UserItem, AssistantItem, ToolCallItem, ToolResultItem, SystemItem)
_KINDS: Final[dict[str, type[Item]]] = {
    "user": UserItem,
    "assistant": AssistantItem,
    "tool_call": ToolCallItem,
    "tool_result": ToolResultItem,
    "system": SystemItem,
}
_KIND_OF: Final[dict[type[Item], str]] = {cls: kind for kind, cls in _KINDS.items()}


def encode_item(item: Item) -> str:
    """The item as ASCII JSON (``{"kind": ..., fields...}``); :func:`decode_item` inverts it.

    ASCII, so it stores unchanged in any text column.
    """
    record: dict[str, Any] = {"kind": _KIND_OF[type(item)]}
    record.update(attrs.asdict(item, recurse=False))
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


def decode_item(data: str) -> Item:
    """Parse what :func:`encode_item` produced.

    Raises:
        ValueError: not a valid encoded item.
    """
    try:
        record = json.loads(data)
        cls = _KINDS[record.pop("kind")]
        return cls(**record)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an encoded transcript item: {exc}") from None


def check_items(items: Iterable[Item]) -> list[Item]:
    """``items`` as a list, each checked to be a transcript item.

    Raises:
        TypeError: something that is not an item.
    """
    out = list(items)
    for item in out:
        if not isinstance(item, _ITEM_TYPES):
            raise TypeError(f"not a transcript item: {item!r}")
    return out


def sort_items(items: Sequence[Item]) -> list[Item]:
    """Items in transcript order (by ``seq``, then key for a stable tie-break)."""
    return sorted(items, key=lambda i: (i.seq, i.key))
