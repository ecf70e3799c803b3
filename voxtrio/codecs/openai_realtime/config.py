"""The OpenAI Realtime session configuration: one frozen attrs class, validated once.

:class:`OpenAIRealtimeConfig` holds every session option the codec sends in its
``session.update``; the provider (:class:`voxtrio.providers.openai.OpenAIRealtime`)
builds one and makes a codec per connection from it. Also here: turn detection
(:class:`ServerVad`, :class:`SemanticVad`), :class:`FunctionTool`, and the URL and
handshake headers of a connection.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias

import attrs

from ...audio import AudioFormat
from ...function_tool import FunctionTool

__all__ = [
    "AUDIO_FORMATS",
    "DEFAULT_BASE_URL",
    "MAX_APPEND_BYTES",
    "OPENAI_RATE",
    "FunctionTool",
    "OpenAIRealtimeConfig",
    "SemanticVad",
    "ServerVad",
    "TurnDetection",
    "VOICES",
    "auth_headers",
    "realtime_url",
]

#: The only PCM rate the Realtime API accepts, in and out.
OPENAI_RATE: Final = 24_000
#: The audio formats of the GA service, by their wire name: 24 kHz PCM, and 8 kHz
#: G.711 mu-law (``audio/pcmu``) and A-law (``audio/pcma``), taken and sent as they
#: are (a phone call needs no decoding or resampling).
#: The ``audio_format`` names.
AudioFormatName: TypeAlias = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
AUDIO_FORMATS: Final[dict[AudioFormatName, AudioFormat]] = {
    "audio/pcm": AudioFormat(OPENAI_RATE),
    "audio/pcmu": AudioFormat(8000, encoding="mulaw"),
    "audio/pcma": AudioFormat(8000, encoding="alaw"),
}


def wire_audio_format(fmt: AudioFormat) -> AudioFormatName | None:
    """The wire name of ``fmt`` (``"audio/pcmu"`` ...), or None if the service has
    no such format."""
    for name, known in AUDIO_FORMATS.items():
        if known == fmt:
            return name
    return None


#: The public endpoint.
DEFAULT_BASE_URL: Final = "wss://api.openai.com/v1/realtime"
#: The most raw PCM one append may carry: its base64 (4/3 larger) plus the JSON
#: envelope stays below the service's 15 MiB limit per append.
MAX_APPEND_BYTES: Final = 11 * 1024 * 1024


# ------------------------------------------------------------------ validators


def _non_negative_int(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attr.name} must be an int >= 0, got {value!r}")


def _unit_float(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise ValueError(f"{attr.name} must be a number in [0, 1], got {value!r}")


def _check_model(value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"model must be a non-empty string, got {value!r}")


def _model(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    _check_model(value)


def _opt_name(_inst: object, attr: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{attr.name} must be a non-empty string or None, got {value!r}")


def _one_of(*allowed: object) -> Any:
    """A validator: the value is one of ``allowed`` (the message lists them)."""
    names = ", ".join("None" if a is None else str(a) for a in allowed)
    names = names.rsplit(", ", 1)[0] + " or " + names.rsplit(", ", 1)[1]

    def check(_inst: object, attr: attrs.Attribute[Any], value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"{attr.name} must be {names}, got {value!r}")

    return check


def _as_tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    """A converter: sequences become tuples (so the config is hashable and frozen);
    anything else is kept for the validator to refuse."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]
    return tuple(value)


#: The built-in GA voices (as the ``openai`` package's ``RealtimeAudioConfigOutput``
#: lists them).
VOICES: Final = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
                 "marin", "cedar")  # fmt: skip


def _voice(_inst: object, _attr: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in VOICES:
        raise ValueError(
            f"voice must be one of {', '.join(VOICES)} or None (the service's default); "
            f"{value!r} is not an OpenAI voice"
        )


# ------------------------------------------------------------------ turn detection


@attrs.frozen
class ServerVad:
    """Server-side voice activity detection (the service's default turn detection).

    Attributes:
        threshold: activation threshold, 0..1 (higher needs louder speech).
        prefix_padding_ms: audio kept before detected speech.
        silence_duration_ms: silence that ends a turn.
        create_response: reply automatically when a turn ends.
        interrupt_response: cancel the reply in progress when the user speaks.
    """

    threshold: float = attrs.field(default=0.5, validator=_unit_float)
    prefix_padding_ms: int = attrs.field(default=300, validator=_non_negative_int)
    silence_duration_ms: int = attrs.field(default=500, validator=_non_negative_int)
    create_response: bool = True
    interrupt_response: bool = True

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "server_vad",
            "threshold": float(self.threshold),
            "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


_EAGERNESS = ("low", "medium", "high", "auto")


@attrs.frozen
class SemanticVad:
    """Turn detection by a model that judges whether the user finished speaking."""

    eagerness: Literal["low", "medium", "high", "auto"] = attrs.field(
        default="auto", validator=attrs.validators.in_(_EAGERNESS)
    )
    create_response: bool = True
    interrupt_response: bool = True

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "semantic_vad",
            "eagerness": self.eagerness,
            "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        }


#: ``None`` turns detection off: the app commits and asks for replies itself.
TurnDetection: TypeAlias = ServerVad | SemanticVad | None


def _turn_detection(_inst: object, _attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, ServerVad | SemanticVad):
        raise ValueError(
            f"turn_detection must be ServerVad(), SemanticVad() or None, got {value!r}"
        )


# ------------------------------------------------------------------ tools
# FunctionTool lives in voxtrio.function_tool (provider-neutral: the Gemini codec and
# the session's messages use it too); it is re-exported here, where it always was.

def _tools(_inst: object, _attr: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    if not isinstance(value, tuple) or not all(isinstance(t, FunctionTool) for t in value):
        raise ValueError("tools must be FunctionTool instances")
    if len({t.name for t in value}) != len(value):
        raise ValueError("tool names must be unique")


def _modalities(_inst: object, _attr: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if value not in (("audio",), ("text",)):
        raise ValueError(f'output_modalities must be ("audio",) or ("text",), got {value!r}')


def _append_bytes(_inst: object, _attr: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_APPEND_BYTES:
        raise ValueError(f"max_append_bytes must be in 2..{MAX_APPEND_BYTES}, got {value!r}")


# ------------------------------------------------------------------ the configuration


@attrs.frozen
class OpenAIRealtimeConfig:
    """Every session option of an OpenAI Realtime connection, validated when made.

    Attributes:
        model: the Realtime model (it goes in the URL, see :func:`realtime_url`).
        voice: the reply voice, one of :data:`VOICES`; ``None`` leaves the
            service's default.
        transcription_model: the model transcribing the user's speech; ``None``
            turns input transcription off.
        transcription_language: an ISO-639-1 hint for the transcription, or None.
        turn_detection: :class:`ServerVad` (default), :class:`SemanticVad`, or
            ``None`` for manual turns (the app commits and asks for replies).
        output_modalities: ``("audio",)`` (audio with a transcript) or ``("text",)``.
        noise_reduction: ``"near_field"``, ``"far_field"``, or None (off).
        tools: functions the model may call (names unique).
        tool_choice: ``"auto"``, ``"none"`` or ``"required"``; None leaves the default.
        max_append_bytes: raw PCM bytes per ``input_audio_buffer.append`` at most
            (default 8 MiB, at most :data:`MAX_APPEND_BYTES`; rounded down to whole
            samples when used, see :attr:`append_step`).
        audio_format: the audio of both directions, one of :data:`AUDIO_FORMATS`:
            ``"audio/pcm"`` (24 kHz PCM, the default), ``"audio/pcmu"`` or
            ``"audio/pcma"`` (8 kHz G.711, for phone calls: passed through untouched).

    Raises:
        ValueError: any option out of range (the message names it).
    """

    model: str = attrs.field(default="gpt-realtime", validator=_model)
    voice: str | None = attrs.field(default="marin", validator=_voice)
    transcription_model: str | None = attrs.field(
        default="gpt-4o-transcribe", validator=_opt_name
    )
    transcription_language: str | None = attrs.field(default=None, validator=_opt_name)
    turn_detection: TurnDetection = attrs.field(default=ServerVad(), validator=_turn_detection)
    output_modalities: tuple[str, ...] = attrs.field(
        default=("audio",), converter=_as_tuple, validator=_modalities
    )
    noise_reduction: Literal["near_field", "far_field"] | None = attrs.field(
        default=None, validator=_one_of("near_field", "far_field", None)
    )
    tools: tuple[FunctionTool, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_tools
    )
    tool_choice: Literal["auto", "none", "required"] | None = attrs.field(
        default=None, validator=_one_of("auto", "none", "required", None)
    )
    max_append_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_append_bytes)
    audio_format: AudioFormatName = attrs.field(
        default="audio/pcm", validator=_one_of(*AUDIO_FORMATS)
    )

    @property
    def audio(self) -> AudioFormat:
        """:attr:`audio_format` as an :class:`~voxtrio.audio.AudioFormat`."""
        return AUDIO_FORMATS[self.audio_format]

    @property
    def append_step(self) -> int:
        """:attr:`max_append_bytes` rounded down to whole 16-bit samples."""
        return self.max_append_bytes - self.max_append_bytes % 2


# ------------------------------------------------------------------ URL and headers


def realtime_url(base_url: str | None, model: str) -> str:
    """The websocket URL for ``model``: ``base_url`` (default the public endpoint)
    with ``?model=`` set, keeping any other query parameters.

    Accepts ``ws://`` (e.g. ``ws://127.0.0.1:PORT/v1/realtime`` for the loopback
    server) and ``wss://`` URLs.

    Raises:
        ValueError: another scheme, no host, or an empty model.
    """
    _check_model(model)
    url = DEFAULT_BASE_URL if base_url is None else base_url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"base_url must be a ws:// or wss:// URL, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("base_url has no host")
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k != "model"
    ]
    query.append(("model", model))
    path = parts.path or "/"
    return urllib.parse.urlunsplit(
        (
            parts.scheme,
            parts.netloc,
            path,
            urllib.parse.urlencode(query, quote_via=urllib.parse.quote),
            "",
        )
    )


def auth_headers(api_key: str) -> tuple[tuple[bytes, bytes], ...]:
    """Handshake headers for ``api_key``: ``Authorization: Bearer``, nothing else.

    (The retired beta's ``OpenAI-Beta`` header is never sent: the GA service
    rejects it.)

    Raises:
        ValueError: an empty key or one with whitespace or control characters. The
            message never contains the key.
    """
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("the OpenAI API key is empty")
    if not api_key.isascii() or not api_key.isprintable() or any(c.isspace() for c in api_key):
        raise ValueError("the OpenAI API key contains whitespace or non-printable characters")
    return ((b"Authorization", b"Bearer " + api_key.encode("ascii")),)
