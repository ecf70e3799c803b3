"""Configuration of a Gemini Live session, and the pure helpers for connecting.

:class:`GeminiLiveConfig` is validated when it is made (a bad option fails at the
call site, not at the provider) and becomes the ``setup`` message the codec sends
first on every connection (:meth:`GeminiLiveConfig.setup_message`).
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any, Final, Literal

import attrs

from ..openai_realtime import FunctionTool

__all__ = [
    "DEFAULT_BASE_URL",
    "GEMINI_INPUT_RATE",
    "GEMINI_OUTPUT_RATE",
    "AutomaticVad",
    "GeminiLiveConfig",
    "auth_headers",
    "live_url",
]

#: Gemini Live takes 16 kHz 16-bit mono PCM natively (and says so in ``mimeType``).
GEMINI_INPUT_RATE: Final = 16_000
#: Reply audio is 24 kHz 16-bit mono PCM.
GEMINI_OUTPUT_RATE: Final = 24_000
#: The public endpoint of the Gemini API's Live websocket.
DEFAULT_BASE_URL: Final = (
    "wss://generativelanguage.googleapis.com/ws/"
    "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
)

_SENSITIVITY = ("high", "low")


def _opt_non_negative_int(_inst: object, attr: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attr.name} must be an int >= 0 or None, got {value!r}")


def _bool(_inst: object, attr: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attr.name} must be True or False, got {value!r}")


def _opt_name(_inst: object, attr: attrs.Attribute[str | None], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attr.name} must be a non-empty string or None, got {value!r}")


def _model(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise ValueError(f"model must be a non-empty string without spaces, got {value!r}")


@attrs.frozen
class AutomaticVad:
    """The service's automatic activity detection (its default turn detection).

    Attributes:
        start_sensitivity: ``"high"`` or ``"low"`` (None: the service's default).
        end_sensitivity: ``"high"`` or ``"low"`` (None: the service's default).
        prefix_padding_ms: speech needed before a start is committed.
        silence_duration_ms: silence that ends a turn.
        interrupt: the user's speech interrupts a reply in progress (barge-in).
    """

    start_sensitivity: Literal["high", "low"] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_SENSITIVITY))
    )
    end_sensitivity: Literal["high", "low"] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_SENSITIVITY))
    )
    prefix_padding_ms: int | None = attrs.field(default=None, validator=_opt_non_negative_int)
    silence_duration_ms: int | None = attrs.field(default=None, validator=_opt_non_negative_int)
    interrupt: bool = attrs.field(default=True, validator=_bool)

    def to_wire(self) -> dict[str, Any]:
        """The ``automaticActivityDetection`` object."""
        out: dict[str, Any] = {"disabled": False}
        if self.start_sensitivity is not None:
            out["startOfSpeechSensitivity"] = f"START_SENSITIVITY_{self.start_sensitivity.upper()}"
        if self.end_sensitivity is not None:
            out["endOfSpeechSensitivity"] = f"END_SENSITIVITY_{self.end_sensitivity.upper()}"
        if self.prefix_padding_ms is not None:
            out["prefixPaddingMs"] = self.prefix_padding_ms
        if self.silence_duration_ms is not None:
            out["silenceDurationMs"] = self.silence_duration_ms
        return out


def _vad(_inst: object, attr: attrs.Attribute[AutomaticVad | None], value: object) -> None:
    if value is not None and not isinstance(value, AutomaticVad):
        raise ValueError(f"turn_detection must be AutomaticVad() or None, got {value!r}")


def _tools(value: object) -> tuple[FunctionTool, ...]:
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError("tools must be a sequence of FunctionTool")
    tools = tuple(value)
    if not all(isinstance(t, FunctionTool) for t in tools):
        raise ValueError("tools must be FunctionTool instances")
    if len({t.name for t in tools}) != len(tools):
        raise ValueError("tool names must be unique")
    return tools


def _modalities(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f'response_modalities must be ("AUDIO",) or ("TEXT",), got {value!r}')
    mods = tuple(value)
    if mods not in (("AUDIO",), ("TEXT",)):
        raise ValueError(f'response_modalities must be ("AUDIO",) or ("TEXT",), got {value!r}')
    return mods


def _compression(_inst: object, attr: attrs.Attribute[int | None], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attr.name} must be an int >= 1 or None, got {value!r}")


@attrs.frozen
class GeminiLiveConfig:
    """Everything the ``setup`` message says about a Gemini Live session.

    Attributes:
        model: the Live model, without the ``models/`` prefix (it is added).
        voice: a prebuilt voice name (``"Puck"``, ``"Kore"``, ...); None: default.
        language_code: the reply speech's language (BCP-47), or None.
        response_modalities: ``("AUDIO",)`` (audio with its transcript) or ``("TEXT",)``.
        input_transcription: transcribe the user's speech.
        output_transcription: transcribe the reply audio (as reply text).
        turn_detection: :class:`AutomaticVad` (default), or None for manual turns
            (the codec brackets each input segment in ``activityStart`` /
            ``activityEnd``).
        context_compression: keep long sessions going with a sliding window.
        compression_trigger_tokens, compression_target_tokens: the window's limits
            (None: the service's defaults).
        transparent_resumption: ask for ``lastConsumedClientMessageIndex`` in
            resumption updates, so the link can resend exactly what was not consumed.
        tools: functions the model may call.
        temperature: sampling temperature, or None.

    Raises:
        ValueError: any option out of range.
    """

    model: str = attrs.field(validator=_model)
    voice: str | None = attrs.field(default=None, validator=_opt_name)
    language_code: str | None = attrs.field(default=None, validator=_opt_name)
    response_modalities: tuple[str, ...] = attrs.field(
        default=("AUDIO",), converter=_modalities
    )
    input_transcription: bool = attrs.field(
        default=True, validator=_bool
    )
    output_transcription: bool = attrs.field(
        default=True, validator=_bool
    )
    turn_detection: AutomaticVad | None = attrs.field(factory=AutomaticVad, validator=_vad)
    context_compression: bool = attrs.field(
        default=True, validator=_bool
    )
    compression_trigger_tokens: int | None = attrs.field(default=None, validator=_compression)
    compression_target_tokens: int | None = attrs.field(default=None, validator=_compression)
    transparent_resumption: bool = attrs.field(
        default=True, validator=_bool
    )
    tools: tuple[FunctionTool, ...] = attrs.field(default=(), converter=_tools)
    temperature: float | None = attrs.field(default=None)

    def __attrs_post_init__(self) -> None:
        t = self.temperature
        if t is not None and (
            isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0
        ):
            raise ValueError(f"temperature must be a finite number >= 0 or None, got {t!r}")
        trig, target = self.compression_trigger_tokens, self.compression_target_tokens
        if trig is not None and target is not None and target > trig:
            raise ValueError("compression_target_tokens must not exceed compression_trigger_tokens")

    @property
    def model_name(self) -> str:
        """``models/NAME``, as the wire wants it."""
        return self.model if self.model.startswith("models/") else f"models/{self.model}"

    def setup_message(self, instructions: str, resumption_handle: str | None) -> dict[str, Any]:
        """The ``setup`` client message (camelCase, ready for JSON)."""
        generation: dict[str, Any] = {"responseModalities": list(self.response_modalities)}
        speech: dict[str, Any] = {}
        if self.voice is not None:
            speech["voiceConfig"] = {"prebuiltVoiceConfig": {"voiceName": self.voice}}
        if self.language_code is not None:
            speech["languageCode"] = self.language_code
        if speech:
            generation["speechConfig"] = speech
        if self.temperature is not None:
            generation["temperature"] = float(self.temperature)
        setup: dict[str, Any] = {"model": self.model_name, "generationConfig": generation}
        if instructions:
            setup["systemInstruction"] = {"parts": [{"text": instructions}]}
        if self.input_transcription:
            setup["inputAudioTranscription"] = {}
        if self.output_transcription:
            setup["outputAudioTranscription"] = {}
        resumption: dict[str, Any] = {}
        if resumption_handle is not None:
            resumption["handle"] = resumption_handle
        if self.transparent_resumption:
            resumption["transparent"] = True
        setup["sessionResumption"] = resumption
        if self.context_compression:
            window: dict[str, Any] = {}
            if self.compression_target_tokens is not None:
                window["targetTokens"] = self.compression_target_tokens
            compression: dict[str, Any] = {"slidingWindow": window}
            if self.compression_trigger_tokens is not None:
                compression["triggerTokens"] = self.compression_trigger_tokens
            setup["contextWindowCompression"] = compression
        vad = self.turn_detection
        realtime: dict[str, Any] = {
            "automaticActivityDetection": {"disabled": True} if vad is None else vad.to_wire()
        }
        if vad is not None:
            realtime["activityHandling"] = (
                "START_OF_ACTIVITY_INTERRUPTS" if vad.interrupt else "NO_INTERRUPTION"
            )
        setup["realtimeInputConfig"] = realtime
        if self.tools:
            setup["tools"] = [{"functionDeclarations": [_declaration(t) for t in self.tools]}]
        return {"setup": setup}


def _declaration(tool: FunctionTool) -> dict[str, Any]:
    # FunctionTool.parameters is JSON Schema: Gemini takes it as parametersJsonSchema
    # (``parameters`` would be its OpenAPI subset).
    out: dict[str, Any] = {"name": tool.name, "parametersJsonSchema": dict(tool.parameters)}
    if tool.description:
        out["description"] = tool.description
    return out


def live_url(base_url: str | None) -> str:
    """The websocket URL: ``base_url`` (default the public endpoint) as given.

    Accepts ``ws://`` (the loopback server) and ``wss://``. A ``key`` query
    parameter is refused: the key travels in the ``x-goog-api-key`` header only,
    so it never lands in a URL that may be logged.

    Raises:
        ValueError: another scheme, no host, or a key in the query.
    """
    url = DEFAULT_BASE_URL if base_url is None else base_url
    if not isinstance(url, str):
        raise ValueError(f"base_url must be a string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"base_url must be a ws:// or wss:// URL, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("base_url has no host")
    if any(k == "key" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)):
        raise ValueError("base_url must not carry the API key: pass api_key= instead")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def auth_headers(api_key: str) -> tuple[tuple[bytes, bytes], ...]:
    """Handshake headers for ``api_key``: ``x-goog-api-key``, nothing else.

    Raises:
        ValueError: an empty key or one with whitespace or control characters. The
            message never contains the key.
    """
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("the Gemini API key is empty")
    if not api_key.isascii() or not api_key.isprintable() or any(c.isspace() for c in api_key):
        raise ValueError("the Gemini API key contains whitespace or non-printable characters")
    return ((b"x-goog-api-key", api_key.encode("ascii")),)
