"""JSON in and out for the OpenAI codec: valid UTF-8 text, and typed field access."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Malformed", "dumps", "get_int", "get_obj", "get_opt", "get_opt_str", "get_str"]


def dumps(obj: Mapping[str, Any]) -> str:
    """Compact JSON that is always valid UTF-8 (a websocket text frame must be).

    Python strings may hold lone surrogates (from ``surrogateescape`` decoding, or
    a JSON ``"\\ud800"``); they become U+FFFD here instead of failing in the link.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class Malformed(Exception):
    """A known server event lacks a field or has one of the wrong type."""


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise Malformed(f"{where} has no {key!r}")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        raise Malformed(f"{where}.{key} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise Malformed(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def get_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value: str = _field(obj, key, str, where)
    return value


def get_int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value: int = _field(obj, key, int, where)
    return value


def get_obj(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value: dict[str, Any] = _field(obj, key, dict, where)
    return value


def get_opt(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """The field, or None when it is absent or null."""
    if obj.get(key) is None:
        return None
    return _field(obj, key, kind, where)


def get_opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value: str | None = get_opt(obj, key, str, where)
    return value
