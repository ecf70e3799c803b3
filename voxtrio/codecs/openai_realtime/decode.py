"""OpenAI Realtime GA server events as voxtrio events and link signals.

Server ``error`` events (and failed replies) are classified here: those after which
the service will not serve this session however often the link reconnects (a rejected
key, no quota or billing, an unknown model) become ``ErrorEvent(recoverable=False)``; every other
error is reported as recoverable (a bad client event, a rate limit, a server fault).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import numpy as np

from ...messages import (
    DtmfReceived,
    ErrorEvent,
    Event,
    InputCommitted,
    InputIdleTimeout,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
)
from ..wire import ConnectionExpiry, LinkSignal, Ready, excerpt
from ._json import Malformed, get_int, get_obj, get_opt, get_opt_str, get_str
from .state import ConnectionState

__all__ = ["FATAL_ERROR_CODES", "Decoder", "is_fatal_error"]

log = logging.getLogger("voxtrio.openai")

_Decoded: TypeAlias = list[Event | LinkSignal]

#: Server error codes that mean "stop": retrying cannot help until a person acts.
FATAL_ERROR_CODES: Final = frozenset(
    {
        "invalid_api_key",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "account_deactivated",
        "model_not_found",
    }
)


def is_fatal_error(code: str | None) -> bool:
    """Whether a server error with ``code`` ends the session (see the module doc)."""
    return code is not None and (code in FATAL_ERROR_CODES or code.startswith("billing_"))


#: Server events voxtrio understands but has nothing to report for.
_QUIET_TYPES: Final = frozenset(
    {
        "conversation.created",
        "conversation.item.created",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.deleted",
        "conversation.item.retrieved",
        "conversation.item.truncated",
        "conversation.item.input_audio_transcription.segment",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
        "response.output_item.added",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        # Remote MCP tools run on the service; their progress is not the app's
        # business (their failures are reported, see _MCP_FAILURES).
        "mcp_list_tools.in_progress",
        "mcp_list_tools.completed",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
    }
)

#: MCP failures, reported as recoverable provider errors: ``(code, message)``.
_MCP_FAILURES: Final = {
    "mcp_list_tools.failed": (
        "mcp_list_tools_failed",
        "the MCP server's tools could not be listed",
    ),
    "response.mcp_call.failed": ("mcp_call_failed", "an MCP tool call failed"),
}


def protocol_error(message: str) -> ErrorEvent:
    return ErrorEvent(message, code="protocol_error", source="link")


def _parse(data: str | bytes) -> dict[str, Any] | ErrorEvent:
    """The server message as a JSON object with a string ``type``, or why not."""
    if not isinstance(data, str):
        size = len(data) if isinstance(data, bytes | bytearray | memoryview) else 0
        return protocol_error(f"unexpected binary frame from OpenAI ({size} bytes)")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return protocol_error(f"malformed JSON from OpenAI: {excerpt(data, quote=True)}")
    if not isinstance(obj, dict):
        return protocol_error(
            f"OpenAI sent JSON that is not an object: {excerpt(data, quote=True)}"
        )
    if not isinstance(obj.get("type"), str):
        return protocol_error(f"OpenAI sent an event without a type: {excerpt(data, quote=True)}")
    return obj


def _decode_pcm(text: str, encoding: str = "pcm16") -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"audio is not valid base64 ({len(text)} chars)") from None
    if encoding != "pcm16":  # G.711: the codes, one byte per sample, as they came
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1)
    if len(raw) % 2:
        raise Malformed(f"audio of {len(raw)} bytes is not whole 16-bit samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False).reshape(-1, 1)


def _error_code(err: dict[str, Any], where: str) -> str | None:
    return get_opt_str(err, "code", where) or get_opt_str(err, "type", where)


class Decoder:
    """The server side of one connection: JSON text in, events out."""

    def __init__(self, state: ConnectionState) -> None:
        self.state = state
        self._decoders: dict[str, Callable[[dict[str, Any]], _Decoded]] = {
            "session.created": self._session,
            "session.updated": self._session,
            "error": self._error,
            "input_audio_buffer.speech_started": self._speech_started,
            "input_audio_buffer.speech_stopped": self._speech_stopped,
            "input_audio_buffer.committed": self._committed,
            "input_audio_buffer.cleared": self._cleared,
            "conversation.item.input_audio_transcription.delta": self._transcription_delta,
            "conversation.item.input_audio_transcription.completed": self._transcription_done,
            "conversation.item.input_audio_transcription.failed": self._transcription_failed,
            "response.created": self._response_created,
            "response.output_audio.delta": self._audio_delta,
            "response.output_audio.done": self._audio_done,
            "response.output_audio_transcript.delta": self._text_delta,
            "response.output_text.delta": self._text_delta,
            "response.output_audio_transcript.done": self._text_done,
            "response.output_text.done": self._text_done,
            "response.output_item.done": self._item_done,
            "response.done": self._response_done,
            "input_audio_buffer.dtmf_event_received": self._dtmf,
            "input_audio_buffer.timeout_triggered": self._idle_timeout,
            **{kind: self._mcp_failed for kind in _MCP_FAILURES},
        }

    def decode(self, data: str | bytes) -> _Decoded:
        obj = _parse(data)
        if isinstance(obj, ErrorEvent):
            return [obj]
        kind: str = obj["type"]
        decoder = self._decoders.get(kind)
        if decoder is None:
            if kind not in _QUIET_TYPES:
                log.debug("ignoring unknown OpenAI event type %r", excerpt(kind, 80))
            return []
        try:
            return decoder(obj)
        except Malformed as exc:
            return [protocol_error(f"malformed {kind} event from OpenAI: {exc}")]

    def _session(self, ev: dict[str, Any]) -> _Decoded:
        session = get_obj(ev, "session", ev["type"])
        session_id = get_opt_str(session, "id", "session")
        if session_id is not None:
            self.state.session_id = session_id
        if ev["type"] == "session.updated":
            self.state.configured = True
            return [Ready(session_id=self.state.session_id)]
        out: _Decoded = [Ready(session_id=self.state.session_id)]
        # The session's time limit (60 minutes): the link moves before it. Only
        # session.created sets it; a session.update cannot change it.
        # A value of another type is ignored rather than failing the whole event
        # (which would lose the Ready); the link then has no limit to plan for.
        expires_at = session.get("expires_at")
        if (
            isinstance(expires_at, int | float)
            and not isinstance(expires_at, bool)
            and math.isfinite(expires_at)
            and expires_at > 0
        ):
            out.append(ConnectionExpiry(float(expires_at)))
        return out

    def _error(self, ev: dict[str, Any]) -> _Decoded:
        err = get_obj(ev, "error", "error")
        message = get_str(err, "message", "error")
        code = _error_code(err, "error")
        event_id = get_opt_str(err, "event_id", "error")
        if event_id is not None and event_id == self.state.config_event_id:
            message = f"session configuration rejected: {message}"
        fatal = is_fatal_error(code)
        return [
            ErrorEvent(
                excerpt(message),
                code=code,
                source="provider",
                recoverable=not fatal,
                event_id=event_id,
            )
        ]

    def _speech_started(self, ev: dict[str, Any]) -> _Decoded:
        ms = get_int(ev, "audio_start_ms", "speech_started")
        item_id = get_str(ev, "item_id", "speech_started")
        self.state.speaking = True
        return [SpeechStarted(item_id, ms, self.state.input_pts(ms))]

    def _speech_stopped(self, ev: dict[str, Any]) -> _Decoded:
        ms = get_int(ev, "audio_end_ms", "speech_stopped")
        item_id = get_str(ev, "item_id", "speech_stopped")
        self.state.speaking = False
        self.state.uncommitted = 0  # the service commits the turn itself
        return [SpeechStopped(item_id, ms, self.state.input_pts(ms))]

    def _committed(self, ev: dict[str, Any]) -> _Decoded:
        self.state.uncommitted = 0
        return [InputCommitted(get_opt_str(ev, "item_id", "committed"))]

    def _cleared(self, ev: dict[str, Any]) -> _Decoded:
        self.state.uncommitted = 0
        self.state.speaking = False
        return []

    def _transcription_delta(self, ev: dict[str, Any]) -> _Decoded:
        item_id = get_str(ev, "item_id", "transcription delta")
        delta = get_opt_str(ev, "delta", "transcription delta")
        return [InputTranscriptionDelta(delta, item_id)] if delta else []

    def _transcription_done(self, ev: dict[str, Any]) -> _Decoded:
        where = "transcription"
        return [
            InputTranscriptionCompleted(
                get_str(ev, "item_id", where),
                get_str(ev, "transcript", where),
                get_int(ev, "content_index", where),
            )
        ]

    def _transcription_failed(self, ev: dict[str, Any]) -> _Decoded:
        where = "transcription failure"
        item_id = get_str(ev, "item_id", where)
        err = get_obj(ev, "error", where)
        message = get_opt_str(err, "message", where) or "the transcription failed"
        return [InputTranscriptionFailed(item_id, excerpt(message), _error_code(err, where))]

    def _response_created(self, ev: dict[str, Any]) -> _Decoded:
        response = get_obj(ev, "response", "response.created")
        return [ReplyStarted(get_opt_str(response, "id", "response"))]  # optional in GA

    def _audio_delta(self, ev: dict[str, Any]) -> _Decoded:
        where = "audio delta"
        response_id = get_str(ev, "response_id", where)
        item_id = get_str(ev, "item_id", where)
        rate, encoding = self.state.out_rate, self.state.out_encoding
        pcm = _decode_pcm(get_str(ev, "delta", where), encoding)
        if not pcm.shape[0]:
            return []
        return [ReplyAudio(pcm, rate, response_id, item_id, encoding)]

    def _audio_done(self, ev: dict[str, Any]) -> _Decoded:
        where = "audio done"
        return [ReplyAudioDone(get_str(ev, "response_id", where), get_str(ev, "item_id", where))]

    def _text_delta(self, ev: dict[str, Any]) -> _Decoded:
        where = ev["type"]
        delta = get_str(ev, "delta", where)
        response_id = get_str(ev, "response_id", where)
        item_id = get_str(ev, "item_id", where)
        return [ReplyTextDelta(delta, response_id, item_id)] if delta else []

    def _text_done(self, ev: dict[str, Any]) -> _Decoded:
        """``.output_text.done`` carries ``text``; ``.output_audio_transcript.done``
        carries ``transcript``."""
        where = ev["type"]
        field = "text" if where == "response.output_text.done" else "transcript"
        return [
            ReplyTextDone(
                get_str(ev, field, where),
                get_str(ev, "response_id", where),
                get_str(ev, "item_id", where),
            )
        ]

    def _item_done(self, ev: dict[str, Any]) -> _Decoded:
        item = get_obj(ev, "item", "response.output_item.done")
        if item.get("type") != "function_call":
            return []
        if get_opt_str(item, "status", "item") not in (None, "completed"):
            return []  # cut short (e.g. cancelled): its arguments are incomplete
        # ``call_id`` is optional in the GA schema: the item's id stands in (the
        # answer must name something), else an empty id.
        call_id = get_opt_str(item, "call_id", "function_call")
        if call_id is None:
            call_id = get_opt_str(item, "id", "function_call") or ""
        return [
            ToolCall(
                call_id,
                get_str(item, "name", "function_call"),
                get_str(item, "arguments", "function_call"),
            )
        ]

    def _dtmf(self, ev: dict[str, Any]) -> _Decoded:
        where = "dtmf_event_received"
        return [DtmfReceived(get_str(ev, "event", where), get_opt(ev, "received_at", int, where))]

    def _idle_timeout(self, ev: dict[str, Any]) -> _Decoded:
        return [InputIdleTimeout(get_opt_str(ev, "item_id", "timeout_triggered"))]

    def _mcp_failed(self, ev: dict[str, Any]) -> _Decoded:
        code, message = _MCP_FAILURES[ev["type"]]
        item_id = get_opt_str(ev, "item_id", ev["type"])
        return [ErrorEvent(message, code=code, source="provider", item_id=item_id)]

    def _response_done(self, ev: dict[str, Any]) -> _Decoded:
        response = get_obj(ev, "response", "response.done")
        response_id = get_opt_str(response, "id", "response")
        status = get_opt_str(response, "status", "response") or "completed"
        details: dict[str, Any] = get_opt(response, "status_details", dict, "response") or {}
        out: _Decoded = []
        if status == "cancelled" and details.get("reason") == "turn_detected":
            out.append(ReplyInterrupted(response_id))
        elif status == "failed":
            err: dict[str, Any] = get_opt(details, "error", dict, "status_details") or {}
            message = get_opt_str(err, "message", "status_details.error") or "the reply failed"
            code = get_opt_str(err, "code", "status_details.error") or "response_failed"
            fatal = is_fatal_error(code)  # e.g. the quota ran out mid-reply
            out.append(
                ErrorEvent(excerpt(message), code=code, source="provider", recoverable=not fatal)
            )
        out.append(ReplyDone(response_id, status))
        return out
