"""Provider configurations: what ``open_session`` needs to run a link to a provider.

A provider object is plain configuration (validated when it is made) plus the
:meth:`run_link` the session starts. The wire format lives in a sans-IO codec
(``voxtrio.codecs``); the websocket, reconnects and buffering live in the shared
link actor (:mod:`voxtrio.actors.link`), run by
:class:`~voxtrio.runtime.websocket_provider.ApiKeyProvider`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from functools import partial
from typing import Any, Final, Literal

import attrs

from ...actors.link import ReconnectPolicy
from ...audio import AudioFormat
from ...codecs.openai_realtime import (
    FunctionTool,
    OpenAIRealtimeCodec,
    OpenAIRealtimeConfig,
    ServerVad,
    TurnDetection,
    auth_headers,
    realtime_url,
)
from ...codecs.openai_realtime.config import wire_audio_format
from ...errors import MissingApiKeyError
from ...runtime.websocket_provider import ApiKeyProvider

__all__ = ["DEFAULT_TURN_DETECTION", "MissingApiKeyError", "OpenAIRealtime", "OpenAIRealtimeConfig"]


#: Server VAD with the service's defaults (frozen, so safe as a default argument).
DEFAULT_TURN_DETECTION: Final = ServerVad()


class OpenAIRealtime(ApiKeyProvider):
    """The OpenAI Realtime API (GA) as a session provider.

    Args:
        model: the Realtime model, e.g. ``"gpt-realtime"`` (required unless
            ``config`` is given; then it may only repeat ``config.model``).
        api_key: the API key; by default ``OPENAI_API_KEY`` from the environment,
            read when the session opens. It is sent only in the handshake's
            ``Authorization`` header and never appears in a repr, log line, event
            or error message.
        base_url: the websocket endpoint; the public one by default. Accepts
            ``ws://127.0.0.1:PORT/v1/realtime`` (the loopback server of
            :mod:`voxtrio.testing`).
        voice, transcription_model, transcription_language, turn_detection,
        output_modalities, noise_reduction, tools, tool_choice, audio_format: the
            session configuration (``audio_format="audio/pcmu"`` or ``"audio/pcma"``
            takes and returns 8 kHz G.711 as it is), see
            :class:`~voxtrio.codecs.openai_realtime.OpenAIRealtimeConfig` (validated
            there, once).
        config: the whole session configuration as one
            :class:`~voxtrio.codecs.openai_realtime.OpenAIRealtimeConfig`, instead of
            the keywords above (which must then keep their defaults).
        reconnect: retry, backoff and outage-buffer policy of the link, and when
            it moves the session before the service's 60-minute limit
            (``expiry_margin_s``, ``expiry_floor_s``; see
            ``docs/session-lifetimes.md``).
        ssl_context: for ``wss://`` (a verifying default context when None).
        max_message_size: the largest server message accepted, in bytes.
        allow_insecure: accept a ``ws://`` ``base_url`` to a host that is not the
            loopback (the key then travels unencrypted); without it such a URL is
            a ``ValueError`` here. ``ws://`` to 127.0.0.0/8, ``::1`` and
            ``localhost`` needs no flag.
        seed: seeds the reconnect jitter (tests).

    Raises:
        ValueError: an invalid option (at construction);
            :class:`MissingApiKeyError` (a ``ValueError``) when the session opens
            without a key.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        voice: str | None = "marin",
        transcription_model: str | None = "gpt-4o-transcribe",
        transcription_language: str | None = None,
        turn_detection: TurnDetection = DEFAULT_TURN_DETECTION,
        output_modalities: Sequence[str] = ("audio",),
        noise_reduction: Literal["near_field", "far_field"] | None = None,
        tools: Sequence[FunctionTool] = (),
        tool_choice: Literal["auto", "none", "required"] | None = None,
        audio_format: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm",
        reconnect: ReconnectPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 16 * 1024 * 1024,
        allow_insecure: bool = False,
        seed: int | None = None,
        config: OpenAIRealtimeConfig | None = None,
    ) -> None:
        options = {
            "voice": voice,
            "transcription_model": transcription_model,
            "transcription_language": transcription_language,
            "turn_detection": turn_detection,
            "output_modalities": output_modalities,
            "noise_reduction": noise_reduction,
            "tools": tools,
            "tool_choice": tool_choice,
            "audio_format": audio_format,
        }
        self.config: Final = _config(model, config, options)
        self.model = self.config.model
        super().__init__(
            "openai",
            self.make_codec,
            url=realtime_url(base_url, self.config.model),
            api_key=api_key,
            key_variables=("OPENAI_API_KEY",),
            auth_headers=auth_headers,
            missing_key="no OpenAI API key: pass OpenAIRealtime(api_key=...) or set OPENAI_API_KEY",
            reconnect=reconnect,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            allow_insecure=allow_insecure,
            seed=seed,
        )

    def __repr__(self) -> str:
        host = self._url.split("?", 1)[0]
        return f"OpenAIRealtime(model={self.model!r}, url={host!r})"

    def with_native_audio(self, fmt: AudioFormat) -> OpenAIRealtime | None:
        """A copy of this provider whose audio, both ways, is ``fmt`` as it is, or
        None if the service has no such format (it takes 24 kHz PCM and 8 kHz
        G.711: ``audio/pcmu``, ``audio/pcma``). This provider is unchanged.

        ``open_session(input_format=AudioFormat(8000, encoding="mulaw"))`` asks for
        this, so a phone call reaches the service without being decoded or resampled.
        """
        name = wire_audio_format(fmt)
        if name is None:
            return None
        if name == self.config.audio_format:
            return self
        config = attrs.evolve(self.config, audio_format=name)
        twin = self.with_codec_factory(partial(OpenAIRealtimeCodec, config))
        twin.config = config  # type: ignore[misc]  # a fresh copy, not yet shared
        twin._codec = twin._codec_factory()
        return twin

    def make_codec(self) -> OpenAIRealtimeCodec:
        """A fresh codec with this configuration (the link makes one per connection)."""
        return OpenAIRealtimeCodec(self.config)


#: The session options as ``OpenAIRealtime`` keywords take them by default.
_DEFAULTS: Final[dict[str, Any]] = {
    field.name: field.default
    for field in attrs.fields(OpenAIRealtimeConfig)
    if field.name not in ("model", "max_append_bytes")
}


def _config(
    model: str | None, config: OpenAIRealtimeConfig | None, options: dict[str, Any]
) -> OpenAIRealtimeConfig:
    """One configuration from either ``config`` or the keywords (validated once, by
    :class:`OpenAIRealtimeConfig`)."""
    if config is None:
        if model is None:
            raise ValueError("model must be a non-empty string, got None")
        return OpenAIRealtimeConfig(model=model, **options)
    if not isinstance(config, OpenAIRealtimeConfig):
        raise ValueError(f"config must be an OpenAIRealtimeConfig, got {config!r}")
    if model is not None and model != config.model:
        raise ValueError(f"model {model!r} differs from config.model {config.model!r}")
    changed = sorted(k for k, v in options.items() if _differs(v, _DEFAULTS[k]))
    if changed:
        raise ValueError(f"pass {', '.join(changed)} in config, not beside it")
    return config


def _differs(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):  # a list of the same options is no change
        try:
            return isinstance(value, str) or tuple(value) != default
        except TypeError:
            return True
    return bool(value != default)
