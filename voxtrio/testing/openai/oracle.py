"""Validation of OpenAI Realtime events.

Client events get voxtrio's structural checks (the shape the codec must produce and
the rules the ``openai`` models do not state, e.g. base64 of whole 16-bit samples)
and, when the ``openai`` package is installed, its own models, with unknown fields
rejected too. Server events are checked against the ``openai`` server-event models.
"""

from __future__ import annotations

import base64
import binascii
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

from .events import RATE, excerpt, is_int
from .scripts import ClientEventRecord

__all__ = [
    "openai_oracle_available",
    "record_client_message",
    "validate_client_event",
    "validate_server_event",
]


class _Oracle:
    """The ``openai`` package's client and server event models, by event type."""

    def __init__(self) -> None:
        from openai.types.realtime import (
            RealtimeSessionCreateResponse,
            RealtimeTranscriptionSessionCreateResponse,
            realtime_client_event,
            realtime_server_event,
        )

        self.client = self._by_type(realtime_client_event.RealtimeClientEvent)
        self.server = self._by_type(realtime_server_event.RealtimeServerEvent)
        #: the session object as the service returns it, which names the session
        self.identity: dict[str, Any] = {
            "realtime": RealtimeSessionCreateResponse,
            "transcription": RealtimeTranscriptionSessionCreateResponse,
        }

    @staticmethod
    def _by_type(union: Any) -> dict[str, Any]:
        # RealtimeXEvent = Annotated[Union[...], discriminator]; map each member's
        # literal ``type`` to the member, so errors name one model, not eleven.
        members = typing.get_args(typing.get_args(union)[0])
        out: dict[str, Any] = {}
        for model in members:
            for name in typing.get_args(model.model_fields["type"].annotation):
                out[name] = model
        return out

    def check(self, models: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
        from pydantic import ValidationError

        model = models.get(event["type"])
        if model is None:
            return f"unknown event type {event['type']!r}"
        session = event.get("session")
        if event["type"] in _SESSION_EVENTS and isinstance(session, Mapping):
            # The SDK types these sessions with the request models, which lack the
            # fields the service adds to name the session; check those with the
            # models of the session object, the rest as usual.
            problem = self._identity(session)
            if problem is not None:
                return problem
            rest = {k: v for k, v in session.items() if k not in _IDENTITY}
            event = {**event, "session": rest}
        try:
            parsed = model.model_validate(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return f"{where}: {first['msg']}"
        return _extra_fields(parsed, event["type"])

    def _identity(self, session: Mapping[str, Any]) -> str | None:
        from pydantic import ValidationError

        model = self.identity.get(str(session.get("type")))
        present = {k: session[k] for k in _IDENTITY if k in session}
        if model is None or not present:
            return None
        fields = {"id": "sess_", "object": "realtime.session", **present}
        try:
            model.model_validate({"type": session["type"], **fields})
        except ValidationError as exc:
            first = exc.errors()[0]
            return f"session.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return None


_SESSION_EVENTS: Final = frozenset({"session.created", "session.updated"})
_IDENTITY: Final = ("id", "object", "expires_at")


def _extra_fields(value: Any, path: str) -> str | None:
    """The first field the models do not define (they accept extras silently)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        if value.model_extra:
            return f"unexpected field {path}.{next(iter(value.model_extra))}"
        for name in value.model_fields_set:
            found = _extra_fields(getattr(value, name), f"{path}.{name}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _extra_fields(item, f"{path}[{i}]")
            if found:
                return found
    return None


_oracle: _Oracle | None = None
_oracle_missing = False


def _get_oracle() -> _Oracle | None:
    global _oracle, _oracle_missing
    if _oracle is None and not _oracle_missing:
        try:
            _oracle = _Oracle()
        except ImportError:
            _oracle_missing = True
    return _oracle


def openai_oracle_available() -> bool:
    """Whether the ``openai`` package's models are there to validate against."""
    return _get_oracle() is not None


_CLIENT_TYPES: Final = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "output_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
    }
)


def _check_session_update(event: dict[str, Any], kind: str) -> str | None:
    session = event.get("session")
    if not isinstance(session, dict):
        return "session.update needs a 'session' object"
    if session.get("type") not in ("realtime", "transcription"):
        return "session.type must be 'realtime' or 'transcription'"
    audio = session.get("audio")
    if audio is None:
        return None
    if not isinstance(audio, dict):
        return "session.audio must be an object"
    for side in ("input", "output"):
        part = audio.get(side)
        if part is None:
            continue
        if not isinstance(part, dict):
            return f"session.audio.{side} must be an object"
        fmt = part.get("format")
        if not isinstance(fmt, dict) or fmt.get("type") != "audio/pcm":
            continue
        if fmt.get("rate", RATE) != RATE:
            return f"session.audio.{side}.format.rate must be {RATE}"
    return None


def _check_append(event: dict[str, Any], kind: str, sample_bytes: int = 2) -> str | None:
    audio = event.get("audio")
    if not isinstance(audio, str):
        return "input_audio_buffer.append needs an 'audio' string"
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        return "audio is not valid base64"
    if len(raw) % sample_bytes:  # 1 for G.711 (audio/pcmu, audio/pcma): any length
        return f"audio of {len(raw)} bytes is not whole 16-bit samples"
    return None


def _check_item_create(event: dict[str, Any], kind: str) -> str | None:
    item = event.get("item")
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return "conversation.item.create needs an 'item' object with a type"
    return None


def _check_truncate(event: dict[str, Any], kind: str) -> str | None:
    if not isinstance(event.get("item_id"), str):
        return "truncate needs an item_id string"
    for key in ("content_index", "audio_end_ms"):
        if not is_int(event.get(key)) or event[key] < 0:
            return f"truncate needs {key} as an int >= 0"
    return None


def _check_item_id(event: dict[str, Any], kind: str) -> str | None:
    if not isinstance(event.get("item_id"), str):
        return f"{kind} needs an item_id string"
    return None


def _check_response_create(event: dict[str, Any], kind: str) -> str | None:
    if event.get("response") is not None and not isinstance(event["response"], dict):
        return "response.create's 'response' must be an object"
    return None


def _check_response_cancel(event: dict[str, Any], kind: str) -> str | None:
    if event.get("response_id") is not None and not isinstance(event["response_id"], str):
        return "response_id must be a string"
    return None


#: The rules of each client event type beyond the envelope (types not here have none).
_TYPE_CHECKS: Final[Mapping[str, Callable[[dict[str, Any], str], str | None]]] = {
    "session.update": _check_session_update,
    "input_audio_buffer.append": _check_append,
    "conversation.item.create": _check_item_create,
    "conversation.item.truncate": _check_truncate,
    "conversation.item.delete": _check_item_id,
    "conversation.item.retrieve": _check_item_id,
    "response.create": _check_response_create,
    "response.cancel": _check_response_cancel,
}


def _structural_problem(event: object, sample_bytes: int = 2) -> str | None:
    """voxtrio's own checks of a client event: the shape the codec must produce and
    the rules the ``openai`` models do not state (valid base64 of whole samples).
    The envelope first, then the rules of the event's type (:data:`_TYPE_CHECKS`).
    """
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "the event has no string 'type'"
    if kind not in _CLIENT_TYPES:
        return f"unknown event type {excerpt(kind, 80)!r}"
    if "event_id" in event and not isinstance(event["event_id"], str):
        return "event_id must be a string"
    if kind == "input_audio_buffer.append":
        return _check_append(event, kind, sample_bytes)
    check = _TYPE_CHECKS.get(kind)
    return check(event, kind) if check is not None else None


def validate_client_event(event: object, *, sample_bytes: int = 2) -> str | None:
    """Why ``event`` (a parsed client event) is invalid, or None if it is valid.

    Always applies voxtrio's structural checks; also validates against the
    ``openai`` package's models when it is installed, rejecting unknown fields.
    ``sample_bytes`` is the session's input sample size: 2 for PCM, 1 for G.711.
    """
    problem = _structural_problem(event, sample_bytes)
    if problem is None:
        oracle = _get_oracle()
        if oracle is not None:
            assert isinstance(event, dict)
            problem = oracle.check(oracle.client, event)
    return problem


def validate_server_event(event: object) -> str | None:
    """Why ``event`` (a parsed server event) does not match the ``openai`` server
    event models, or None. Without the ``openai`` package only the envelope
    (an object with a string ``type`` and ``event_id``) is checked."""
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    if not isinstance(event.get("type"), str) or not isinstance(event.get("event_id"), str):
        return "a server event needs string 'type' and 'event_id'"
    oracle = _get_oracle()
    return None if oracle is None else oracle.check(oracle.server, event)


_NOT_JSON: Final = object()


def record_client_message(
    index: int, data: str | bytes, *, sample_bytes: int = 2
) -> ClientEventRecord:
    """Parse and validate the ``index``-th client message of a connection
    (``sample_bytes``: of the session's input audio, 1 for G.711)."""
    if isinstance(data, bytes):
        problem: str | None = "binary frames are not part of the protocol"
        return ClientEventRecord(index, None, None, False, problem, len(data), binary=True)
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = _NOT_JSON
    event: dict[str, Any] | None = None
    if parsed is _NOT_JSON:
        problem = "not valid JSON"
    else:
        event = parsed if isinstance(parsed, dict) else None
        problem = validate_client_event(parsed, sample_bytes=sample_bytes)
    kind = event.get("type") if event is not None else None
    kind = kind if isinstance(kind, str) else None
    return ClientEventRecord(index, kind, event, problem is None, problem, len(data))
