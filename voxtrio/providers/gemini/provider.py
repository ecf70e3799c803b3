"""Gemini Live as a session provider: configuration and the link factory.

The wire format is the sans-IO codec :mod:`voxtrio.codecs.gemini_live`; the
websocket, reconnects and buffering are the shared link
(:mod:`voxtrio.actors.provider_link`).
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Sequence
from typing import Final, Literal

import trio

from ...actors import provider_link
from ...actors.base import InstructionsSource
from ...actors.provider_link import ConnectTarget, ReconnectPolicy
from ...audio import AudioFormat, FrameMs
from ...codecs.gemini_live import (
    AutomaticVad,
    GeminiLiveCodec,
    GeminiLiveConfig,
    auth_headers,
    live_url,
)
from ...codecs.openai_realtime import FunctionTool
from ...codecs.wire import Capabilities
from ...errors import MissingApiKeyError
from ...messages import Event, LinkInput

__all__ = ["DEFAULT_GEMINI_TURN_DETECTION", "GeminiLive"]

#: Automatic activity detection with the service's defaults (frozen: a safe default).
DEFAULT_GEMINI_TURN_DETECTION: Final = AutomaticVad()

#: Where the key is looked for when none is passed, in order.
_KEY_VARIABLES: Final = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


class GeminiLive:
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
        seed: seeds the reconnect jitter (tests).

    Raises:
        ValueError: an invalid option (at construction);
            :class:`MissingApiKeyError` (a ``ValueError``) when the session opens
            without a key.
    """

    name: Final = "gemini"

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
        self._new_codec = functools.partial(GeminiLiveCodec, self.config)
        self._codec = self.make_codec()
        self._url = live_url(base_url)
        if api_key is not None:
            auth_headers(api_key)  # a malformed key fails here (without echoing it)
        if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
            raise ValueError(f"reconnect must be a ReconnectPolicy, got {reconnect!r}")
        if isinstance(max_message_size, bool) or not (
            isinstance(max_message_size, int) and max_message_size >= 1024
        ):
            raise ValueError(f"max_message_size must be an int >= 1024, got {max_message_size!r}")
        self.model = model
        self._api_key = api_key
        self.reconnect = reconnect or ReconnectPolicy()
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._seed = seed

    def __repr__(self) -> str:
        host = self._url.split("?", 1)[0]
        return f"GeminiLive(model={self.model!r}, url={host!r})"

    def make_codec(self) -> GeminiLiveCodec:
        """A fresh codec with this configuration (the link makes one per connection;
        each gets its own id prefix, so ids never repeat across reconnects)."""
        return self._new_codec()

    @property
    def input_format(self) -> AudioFormat:
        return self._codec.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._codec.output_format

    @property
    def input_frame_ms(self) -> FrameMs:
        return 20

    @property
    def capabilities(self) -> Capabilities:
        return self._codec.capabilities

    def check(self) -> None:
        """Fail now, with a clear message, if the session could not connect.

        Raises:
            MissingApiKeyError: no ``api_key`` and neither ``GEMINI_API_KEY`` nor
                ``GOOGLE_API_KEY``.
            ValueError: a malformed key (the message never contains it).
        """
        self._resolve_key()

    def _resolve_key(self) -> str:
        key = self._api_key
        if key is None:
            key = next((os.environ[v] for v in _KEY_VARIABLES if os.environ.get(v)), None)
        if not key:
            raise MissingApiKeyError(
                "no Gemini API key: pass GeminiLive(api_key=...) or set GEMINI_API_KEY "
                "(or GOOGLE_API_KEY)"
            )
        auth_headers(key)
        return key

    def target(self) -> ConnectTarget:
        """Where the link connects, with the key in the handshake headers."""
        key = self._resolve_key()
        return ConnectTarget(
            url=self._url,
            headers=auth_headers(key),
            secrets=(key,),
            ssl_context=self._ssl_context,
            max_message_size=self._max_message_size,
        )

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the shared websocket link with this configuration (see ``Provider``)."""
        await provider_link.run(
            receive,
            events,
            name=self.name,
            codec_factory=self.make_codec,
            target=self.target(),
            instructions=instructions,
            policy=self.reconnect,
            seed=self._seed,
            live_input=live_input,
            task_status=task_status,
        )
