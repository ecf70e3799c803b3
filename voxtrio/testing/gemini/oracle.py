"""The google-genai package's own types as the oracle for Gemini Live messages.

A test-time dependency (the ``test`` extra): imported when first used, so
``voxtrio.testing`` works without it.

``LiveClientMessage`` and ``LiveServerMessage`` forbid unknown fields, so a
misspelled or invented field fails. One gap: the SDK's ``LiveClientSetup`` type has
no ``realtimeInputConfig``, although the SDK's own converter sends it at
``setup.realtimeInputConfig`` (``google.genai._live_converters``); it is validated on
its own with ``RealtimeInputConfig``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.genai import types as gt

__all__ = ["client_message", "gemini_oracle_available", "server_message"]


def gemini_oracle_available() -> bool:
    """Whether google-genai is installed."""
    try:
        return importlib.util.find_spec("google.genai") is not None
    except ModuleNotFoundError:
        return False


def client_message(wire: str | bytes) -> gt.LiveClientMessage:
    """Parse and validate one client message.

    Raises:
        pydantic.ValidationError: not a valid ``LiveClientMessage``.
        ValueError: not JSON.
    """
    from google.genai import types

    obj: dict[str, Any] = json.loads(wire)
    setup = obj.get("setup")
    if isinstance(setup, dict) and "realtimeInputConfig" in setup:
        obj = copy.deepcopy(obj)
        types.RealtimeInputConfig.model_validate(obj["setup"].pop("realtimeInputConfig"))
    return types.LiveClientMessage.model_validate(obj)


def server_message(wire: str | bytes) -> gt.LiveServerMessage:
    """Parse and validate one server message (JSON text or a binary frame's bytes).

    Raises:
        pydantic.ValidationError: not a valid ``LiveServerMessage``.
        ValueError: not JSON.
    """
    from google.genai import types

    return types.LiveServerMessage.model_validate(json.loads(wire))
