"""A tiny provider protocol of our own, to prove the link is provider-neutral.

The echo protocol (JSON text messages) drives every link signal: a setup the server
answers with ``ready`` (the codec waits for it), ``goAway``, and resumption handles
that say which client message was consumed last. Its server is
:mod:`voxtrio.testing.echo_server`. Nothing in the link, the session or the
vocabulary knows about it: the codec plugs into
:class:`voxtrio.runtime.websocket_provider.WebsocketProvider` like any other.

Client -> server (one message per link input, so consumed indexes fall on input
boundaries)::

    {"type": "setup", "instructions": str, "handle": str | null}   (connect message)
    {"type": "audio", "pts": int, "pcm": base64 int16}              (AudioFrame, FrameBatch)
    {"type": "text", "text": str, "item_id": str | null}            (SendText)
    {"type": "tool_result", "call_id": str, "output": str}          (ToolResult)
    {"type": "control", "name": "commit" | "clear" | "end" | ...}   (other controls)

Server -> client::

    {"type": "ready", "session": str}            -> Ready
    {"type": "echo", "pcm": base64}               -> ReplyAudio
    {"type": "text_echo", "text": str}            -> ReplyTextDone
    {"type": "goAway", "time_left_s": float}      -> GoAway
    {"type": "handle", "handle": str | null, "resumable": bool, "consumed": int | null}
                                                  -> ResumptionHandle
    {"type": "error", "message": str, "code": str} -> ErrorEvent

Sans-IO: no trio here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..audio import AudioFormat, AudioFrame
from ..codecs.wire import (
    Capabilities,
    GoAway,
    LinkSignal,
    Ready,
    ResumptionHandle,
    Verdict,
    default_close_verdict,
    default_rejection_verdict,
    excerpt,
)
from ..messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    ErrorEvent,
    Event,
    FrameBatch,
    LinkInput,
    ReplyAudio,
    ReplyTextDone,
    SendText,
    ToolResult,
    TruncateItem,
)

__all__ = ["ECHO_FORMAT", "EchoCodec"]

#: The echo protocol's audio: 16 kHz mono int16, both ways.
ECHO_FORMAT = AudioFormat(16_000)

_CONTROL_NAMES: dict[type, str] = {
    CommitInput: "commit",
    ClearInput: "clear",
    EndOfInput: "end",
    CreateReply: "create_reply",
    CancelReply: "cancel_reply",
    TruncateItem: "truncate",
}


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


class EchoCodec:
    """The echo protocol's codec. Fresh per connection, like every codec.

    Args:
        fatal_close_codes: close codes after which no retry can help (4000 by
            default); every other code is read as usual (1008 final, rest retried).
        wait_for_ready: hold input back until the server's ``ready``.
    """

    provider = "echo"
    input_format = ECHO_FORMAT
    output_format = ECHO_FORMAT
    capabilities = Capabilities(
        manual_commit=True, clear_input=True, cancel_reply=True, resumption=True
    )

    def __init__(
        self, *, fatal_close_codes: Sequence[int] = (4000,), wait_for_ready: bool = True
    ) -> None:
        self.fatal_close_codes = frozenset(fatal_close_codes)
        self._wait_for_ready = wait_for_ready

    @property
    def wait_for_ready(self) -> bool:
        return self._wait_for_ready

    def classify_close(self, code: int | None, reason: str | None) -> Verdict:
        if code in self.fatal_close_codes:
            return Verdict.FATAL
        return default_close_verdict(code)

    def classify_rejection(self, status: int) -> Verdict:
        return default_rejection_verdict(status)

    def connect_messages(
        self, instructions: str, *, resumption_handle: str | None = None
    ) -> list[str]:
        setup = {"type": "setup", "instructions": instructions, "handle": resumption_handle}
        return [_dumps(setup)]

    def encode(self, msg: LinkInput) -> list[str]:
        if isinstance(msg, AudioFrame):
            msg = FrameBatch((msg,))
        if isinstance(msg, FrameBatch):
            if not msg.frames:
                return []
            for frame in msg.frames:
                if frame.sample_rate != ECHO_FORMAT.sample_rate or frame.channels != 1:
                    raise ValueError("the echo protocol takes 16 kHz mono audio")
            pcm = np.concatenate([f.pcm[:, 0] for f in msg.frames]).astype("<i2")
            data = base64.b64encode(pcm.tobytes()).decode("ascii")
            return [_dumps({"type": "audio", "pts": msg.frames[0].pts, "pcm": data})]
        if isinstance(msg, SendText):
            return [_dumps({"type": "text", "text": msg.text, "item_id": msg.item_id})]
        if isinstance(msg, ToolResult):
            return [_dumps({"type": "tool_result", "call_id": msg.call_id, "output": msg.output})]
        name = _CONTROL_NAMES.get(type(msg))
        if name is None:
            raise TypeError(f"not a link input: {type(msg).__name__}")
        return [_dumps({"type": "control", "name": name})]

    def decode(self, data: str | bytes) -> list[Event | LinkSignal]:
        try:
            event = json.loads(data)
            if not isinstance(event, dict):
                raise ValueError("not an object")
            return self._decode(event)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            return [
                ErrorEvent(
                    f"bad echo message ({exc}): {excerpt(data, quote=True)}",
                    code="protocol_error",
                )
            ]

    def _decode(self, event: dict[str, Any]) -> list[Event | LinkSignal]:
        kind = event["type"]
        if kind == "ready":
            return [Ready(session_id=event.get("session"))]
        if kind == "echo":
            raw = base64.b64decode(event["pcm"], validate=True)
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16).reshape(-1, 1)
            return [ReplyAudio(pcm, ECHO_FORMAT.sample_rate)] if len(pcm) else []
        if kind == "text_echo":
            return [ReplyTextDone(str(event["text"]))]
        if kind == "goAway":
            left = event.get("time_left_s")
            return [GoAway(None if left is None else float(left))]
        if kind == "handle":
            consumed = event.get("consumed")
            return [
                ResumptionHandle(
                    event.get("handle"),
                    resumable=bool(event.get("resumable", True)),
                    last_consumed_index=None if consumed is None else int(consumed),
                )
            ]
        if kind == "error":
            return [ErrorEvent(str(event["message"]), code=event.get("code"))]
        raise ValueError(f"unknown type {excerpt(str(kind), quote=True)}")
