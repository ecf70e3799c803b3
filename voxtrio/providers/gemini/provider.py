"""Gemini Live as a session provider: configuration and the link factory.

The wire format is the sans-IO codec :mod:`voxtrio.codecs.gemini_live`; the
websocket, reconnects and buffering are the shared link
(:mod:`voxtrio.actors.provider_link`).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Final, Literal

from ...actors.link import ReconnectPolicy
from ...codecs.gemini_live import (
    AutomaticVad,
    GeminiLiveCodec,
    GeminiLiveConfig,
    auth_headers,
    live_url,
)
from ...codecs.openai_realtime import FunctionTool
from ...runtime.websocket_provider import ApiKeyProvider

__all__ = ["DEFAULT_GEMINI_TURN_DETECTION", "GeminiLive"]

#: Automatic activity detection with the service's defaults (frozen: a safe default).
DEFAULT_GEMINI_TURN_DETECTION: Final = AutomaticVad()

#: Where the key is looked for when none is passed, in order.
_KEY_VARIABLES: Final = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class GeminiLive(ApiKeyProvider):
    """Gemini Live (the Gemini API's ``BidiGenerateContent``) as a session provider.

    Args:
        model: the Live model, e.g. ``"gemini-2.5-flash-native-audio-preview-09-2025"``
            (``models/`` is added on the wire).
        api_key: the API key; by default ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` from
            the environment, read when the session opens. It is sent only in the
            handshake's ``x-goog-api-key`` header (never in the URL) and never
            appears in a repr, log line, event or error message.
        base_url: the websocket endpoint; the public one by default. Accepts a
            loopback ``ws://127.0.0.1:PORT/...`` URL (:mod:`voxtrio.testing`).
        voice, language_code, response_modalities, input_transcription,
        output_transcription, turn_detection, context_compression, tools,
        temperature: the session configuration, see
            :class:`~voxtrio.codecs.gemini_live.GeminiLiveConfig` (``turn_detection=None``
            turns automatic activity detection off: each input segment is one turn).
        reconnect: retry, backoff and outage-buffer policy of the link.
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
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        voice: str | None = None,
        language_code: str | None = None,
        response_modalities: Sequence[Literal["AUDIO", "TEXT"]] = ("AUDIO",),
        input_transcription: bool = True,
        output_transcription: bool = True,
        turn_detection: AutomaticVad | None = DEFAULT_GEMINI_TURN_DETECTION,
        context_compression: bool = True,
        tools: Sequence[FunctionTool] = (),
        temperature: float | None = None,
        reconnect: ReconnectPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 16 * 1024 * 1024,
        allow_insecure: bool = False,
        seed: int | None = None,
    ) -> None:
        self.config = GeminiLiveConfig(
            model=model,
            voice=voice,
            language_code=language_code,
            response_modalities=tuple(response_modalities),
            input_transcription=input_transcription,
            output_transcription=output_transcription,
            turn_detection=turn_detection,
            context_compression=context_compression,
            tools=tuple(tools),
            temperature=temperature,
        )
        self.model = model
        super().__init__(
            "gemini",
            self.make_codec,
            url=live_url(base_url),
            api_key=api_key,
            key_variables=_KEY_VARIABLES,
            auth_headers=auth_headers,
            missing_key=(
                "no Gemini API key: pass GeminiLive(api_key=...) or set GEMINI_API_KEY "
                "(or GOOGLE_API_KEY)"
            ),
            reconnect=reconnect,
            ssl_context=ssl_context,
            max_message_size=max_message_size,
            allow_insecure=allow_insecure,
            seed=seed,
        )

    def __repr__(self) -> str:
        host = self._url.split("?", 1)[0]
        return f"GeminiLive(model={self.model!r}, url={host!r})"

    def make_codec(self) -> GeminiLiveCodec:
        """A fresh codec with this configuration (the link makes one per connection;
        each gets its own id prefix, so ids never repeat across reconnects)."""
        return GeminiLiveCodec(self.config)
