"""The OpenAI Realtime codec: one configuration, one connection's encoder and decoder."""

from __future__ import annotations

from typing import Any, Final

from ...audio import AudioFormat
from ...messages import Event, LinkInput
from ..wire import (
    Capabilities,
    LinkSignal,
    Verdict,
    default_close_verdict,
    default_rejection_verdict,
)
from .config import FunctionTool, OpenAIRealtimeConfig, TurnDetection, realtime_url
from .decode import Decoder
from .encode import Encoder
from .state import ConnectionState

__all__ = ["OpenAIRealtimeCodec"]

#: Close codes after which the service will not take the session back.
_FATAL_CLOSE_CODES: Final = frozenset({1008, 4001, 4003, 4004})


class OpenAIRealtimeCodec:
    """Encode link inputs as OpenAI Realtime GA client events; decode server events.

    Made from an :class:`OpenAIRealtimeConfig` (``OpenAIRealtimeCodec(config)``) or
    from its options as keywords (``OpenAIRealtimeCodec(model=..., voice=...)``), not
    both; with neither, the defaults.

    Raises:
        ValueError: any option out of range (see :class:`OpenAIRealtimeConfig`).
        TypeError: ``config`` is not an :class:`OpenAIRealtimeConfig`, or it is given
            together with keyword options.

    Stateful per connection: it numbers client events (``event_id``), counts the
    audio it sent so that ``audio_start_ms``/``audio_end_ms`` map back to input
    ``pts``, and follows speech state so that :class:`EndOfInput` commits only what
    the service still holds.

    Errors: a server ``error`` whose code means the session cannot go on
    (``invalid_api_key``, ``insufficient_quota``, any ``billing_*`` code,
    ``model_not_found``, ``account_deactivated``) decodes to
    ``ErrorEvent(recoverable=False)``; see :mod:`.decode`. Closes and refused
    handshakes are classified by :meth:`classify_close` and :meth:`classify_rejection`.
    """

    provider: Final = "openai"
    wait_for_ready: Final = False  # the service applies events in order

    def __init__(self, config: OpenAIRealtimeConfig | None = None, **options: Any) -> None:
        if config is None:
            config = OpenAIRealtimeConfig(**options)
        elif not isinstance(config, OpenAIRealtimeConfig):
            raise TypeError(f"config must be an OpenAIRealtimeConfig, got {config!r}")
        elif options:
            raise TypeError("pass either a config or keyword options, not both")
        self.config: Final = config
        audio = config.audio
        self._state = ConnectionState(
            rate=audio.sample_rate, out_rate=audio.sample_rate, out_encoding=audio.encoding
        )
        self._encoder = Encoder(config, self._state)
        self._decoder = Decoder(self._state)

    # ------------------------------------------------------------- configuration

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def voice(self) -> str | None:
        return self.config.voice

    @property
    def transcription_model(self) -> str | None:
        return self.config.transcription_model

    @property
    def transcription_language(self) -> str | None:
        return self.config.transcription_language

    @property
    def turn_detection(self) -> TurnDetection:
        return self.config.turn_detection

    @property
    def output_modalities(self) -> tuple[str, ...]:
        return self.config.output_modalities

    @property
    def noise_reduction(self) -> str | None:
        return self.config.noise_reduction

    @property
    def tools(self) -> tuple[FunctionTool, ...]:
        return self.config.tools

    @property
    def tool_choice(self) -> str | None:
        return self.config.tool_choice

    @property
    def max_append_bytes(self) -> int:
        """Raw PCM bytes per append at most (whole samples)."""
        return self.config.append_step

    @property
    def configured(self) -> bool:
        """The service confirmed this connection's ``session.update``."""
        return self._state.configured

    @property
    def session_id(self) -> str | None:
        """The service's session id, once it said it."""
        return self._state.session_id

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"OpenAIRealtimeCodec(model={cfg.model!r}, voice={cfg.voice!r}, "
            f"transcription_model={cfg.transcription_model!r}, "
            f"turn_detection={cfg.turn_detection!r})"
        )

    # ------------------------------------------------------------- the wire codec

    @property
    def capabilities(self) -> Capabilities:
        """Manual commits, clears, cancels and truncation; no resumption; server VAD
        and input transcription as configured."""
        return Capabilities(
            manual_commit=True,
            clear_input=True,
            server_vad=self.config.turn_detection is not None,
            cancel_reply=True,
            truncation=True,
            resumption=False,
            tool_calls=True,
            tool_cancellation=False,
            input_transcription=self.config.transcription_model is not None,
            session_update=True,
        )

    def classify_close(self, code: int | None, reason: str | None) -> Verdict:
        """Final for a policy violation (1008) and the service's 4001/4003/4004 (a
        rejected key or a bad configuration); anything else is retried."""
        if code in _FATAL_CLOSE_CODES:
            return Verdict.FATAL
        return default_close_verdict(code)

    def classify_rejection(self, status: int) -> Verdict:
        """A refused handshake: 400/401/403/404 are final, others retried."""
        return default_rejection_verdict(status)

    @property
    def input_format(self) -> AudioFormat:
        """The configured ``audio_format``: 24 kHz mono int16 by default, or 8 kHz
        G.711 (``audio/pcmu``, ``audio/pcma``) taken as it is."""
        return self.config.audio

    @property
    def output_format(self) -> AudioFormat:
        """The reply audio's format: the same as :attr:`input_format`."""
        return self.config.audio

    def url(self, base_url: str | None = None) -> str:
        """:func:`realtime_url` for this codec's model."""
        return realtime_url(base_url, self.config.model)

    def input_pts(self, audio_ms: int) -> int | None:
        """The input ``pts`` of the audio the service names by ``audio_ms`` (ms since
        the first audio appended on this connection), or None before any audio."""
        return self._state.input_pts(audio_ms)

    def session_config(self, instructions: str) -> dict[str, Any]:
        """The ``session`` object of the ``session.update`` sent on connect."""
        return self._encoder.session_config(instructions)

    def connect_messages(
        self, instructions: str, *, resumption_handle: str | None = None
    ) -> list[str]:
        """One ``session.update`` with the full configuration and ``instructions``.

        ``resumption_handle`` is ignored: the service has no session resumption (a
        reconnect starts a new session; the instructions carry the conversation).

        Raises:
            TypeError: ``instructions`` is not a string.
        """
        return self._encoder.connect_messages(instructions)

    def encode(self, msg: LinkInput) -> list[str]:
        """Client events for one link input.

        * ``AudioFrame`` / ``FrameBatch`` -> ``input_audio_buffer.append`` (a batch
          becomes as few appends as ``max_append_bytes`` allows; empty audio, none);
        * ``CommitInput`` -> ``input_audio_buffer.commit``; ``ClearInput`` -> ``.clear``;
        * ``EndOfInput`` -> a commit when the service holds an unfinished turn
          (manual turns: at least 100 ms appended since the last commit; VAD: speech
          started and not yet stopped), else nothing;
        * ``CreateReply`` -> ``response.create``; ``CancelReply`` -> ``response.cancel``;
        * ``TruncateItem`` -> ``conversation.item.truncate`` (nothing at 0 ms);
        * ``SendText`` -> a user ``input_text`` message; ``ToolResult`` -> a
          ``function_call_output`` item (ask for a reply with ``CreateReply``).

        Raises:
            ValueError: audio that is not 24 kHz mono, or a negative truncate position.
            TypeError: ``msg`` is not a link input.
        """
        return self._encoder.encode(msg)

    def decode(self, data: str | bytes) -> list[Event | LinkSignal]:
        """Events and link signals for one server message. Never raises.

        Unknown event types are ignored (logged at debug level); anything that is not
        a JSON object with a string ``type``, and known events with missing or
        mistyped fields, become ``ErrorEvent(code="protocol_error", source="link")``.
        A server error that means "stop" is ``ErrorEvent(recoverable=False)``.
        """
        return self._decoder.decode(data)

