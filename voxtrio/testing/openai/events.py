"""Server events the fake service builds, and the small rules they share.

Plain functions over plain JSON values: no state, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "MIN_COMMIT_MS",
    "RATE",
    "SAMPLES_PER_MS",
    "SESSION_OBJECTS",
    "default_session",
    "error_event",
    "excerpt",
    "is_int",
    "merge_session",
    "ms_or",
    "session_event",
    "transcription_completed_event",
    "transcription_events",
    "truncated_event",
    "user_audio_item",
    "words",
]

RATE: Final = 24_000
SAMPLES_PER_MS: Final = RATE // 1000
MIN_COMMIT_MS: Final = 100

_DEFAULT_TURN_DETECTION: Final[dict[str, Any]] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}


def excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def ms_or(value: object, default: int) -> int:
    """``value`` when it is an int >= 0, else ``default``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


#: The ``object`` of each session type, as the service reports it.
SESSION_OBJECTS: Final = {
    "realtime": "realtime.session",
    "transcription": "realtime.transcription_session",
}


def default_session(
    model: str | None,
    *,
    session_type: str = "realtime",
    session_id: str = "sess_loopback",
    expires_at: int | None = None,
) -> dict[str, Any]:
    """The session a new connection starts with, as the service reports it: its
    configuration, and who it is (``id``, ``object``, ``expires_at`` in Unix seconds)."""
    identity: dict[str, Any] = {
        "id": session_id,
        "object": SESSION_OBJECTS[session_type],
        "expires_at": expires_at,
    }
    if session_type == "transcription":
        return {
            "type": "transcription",
            **identity,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "noise_reduction": None,
                    "transcription": {"model": "gpt-4o-transcribe"},
                    "turn_detection": dict(_DEFAULT_TURN_DETECTION),
                }
            },
            "include": None,
        }
    session: dict[str, Any] = {
        "type": "realtime",
        **identity,
        "instructions": "",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": None,
                "turn_detection": dict(_DEFAULT_TURN_DETECTION),
            },
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin"},
        },
    }
    if model:
        session["model"] = model
    return session


def merge_session(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Apply a ``session.update``: present fields replace, objects merge."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge_session(into[key], value)
        else:
            into[key] = json.loads(json.dumps(value))  # a deep copy of plain JSON


def session_event(kind: str, session: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, "session": json.loads(json.dumps(session))}


def error_event(
    message: str, code: str | None, error_type: str, event_id: str | None
) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": None,
            "event_id": event_id,
        },
    }


def transcription_completed_event(item_id: str, transcript: str) -> dict[str, Any]:
    """A valid ``conversation.item.input_audio_transcription.completed`` server event
    (for ``ConnectionScript.send_after``)."""
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": 1.0},
    }


def transcription_events(item_id: str, transcript: str, *, deltas: bool) -> list[dict[str, Any]]:
    """A completed input transcription, with one delta per word before it if asked."""
    out: list[dict[str, Any]] = []
    if deltas:
        for piece in words(transcript):
            out.append(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": piece,
                }
            )
    out.append(transcription_completed_event(item_id, transcript))
    return out


def words(text: str) -> list[str]:
    """``text`` cut into word pieces that concatenate back to it exactly."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]


def user_audio_item(item_id: str) -> dict[str, Any]:
    """The user message item a committed turn of input audio becomes."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def truncated_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a valid ``conversation.item.truncate``."""
    keys = ("item_id", "content_index", "audio_end_ms")
    return {"type": "conversation.item.truncated", **{k: event[k] for k in keys}}
