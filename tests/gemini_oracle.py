"""The google-genai package's own types as the oracle for Gemini Live messages.

``LiveClientMessage`` and ``LiveServerMessage`` forbid unknown fields, so a
misspelled or invented field fails. One gap: the SDK's ``LiveClientSetup`` type has
no ``realtimeInputConfig``, although the SDK's own converter sends it at
``setup.realtimeInputConfig`` (``_live_converters``); it is checked on its own with
``RealtimeInputConfig`` (``test_sdk_sends_realtime_input_config_in_setup`` pins
where the SDK puts it).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from google.genai import types as gt


def client_message(wire: str | bytes) -> gt.LiveClientMessage:
    """Parse and validate one client message; raises on anything invalid."""
    obj: dict[str, Any] = json.loads(wire)
    setup = obj.get("setup")
    if isinstance(setup, dict) and "realtimeInputConfig" in setup:
        obj = copy.deepcopy(obj)
        gt.RealtimeInputConfig.model_validate(obj["setup"].pop("realtimeInputConfig"))
    return gt.LiveClientMessage.model_validate(obj)


def server_message(wire: str | bytes) -> gt.LiveServerMessage:
    """Parse and validate one server message; raises on anything invalid."""
    return gt.LiveServerMessage.model_validate(json.loads(wire))
