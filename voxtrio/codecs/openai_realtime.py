"""A sans-IO codec for the OpenAI Realtime API (GA) websocket protocol.

:class:`OpenAIRealtimeCodec` turns voxtrio link inputs into OpenAI client events
(JSON text) and OpenAI server events into voxtrio events. It is pure and synchronous:
the generic provider link (``voxtrio.actors.provider_link``) does the I/O.

Wire facts this module relies on (see ``PROTOCOLS.md``):

* input and output audio are ``audio/pcm``: 16-bit little-endian mono at exactly
  24 000 Hz -- the codec refuses frames of any other rate or channel count, so the
  declared rate always equals the real one;
* one ``input_audio_buffer.append`` carries at most 15 MiB; the codec cuts large
  batches into several appends well below that;
* a truncate at 0 ms is rejected by the service: the codec sends none then;
* input transcriptions may complete out of order: every event keeps its item id.

A codec instance serves one connection; make a fresh one per (re)connect.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import logging
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs
import numpy as np

from ..audio import AudioFormat, AudioFrame
from ..messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    ErrorEvent,
    Event,
    FrameBatch,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    LinkInput,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SpeechStarted,
    SpeechStopped,
    ToolCall,
    ToolResult,
    TruncateItem,
)
from .wire import (
    Capabilities,
    LinkSignal,
    Ready,
    Verdict,
    default_close_verdict,
    default_rejection_verdict,
    excerpt,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_APPEND_BYTES",
    "OPENAI_RATE",
    "FunctionTool",
    "OpenAIRealtimeCodec",
    "SemanticVad",
    "ServerVad",
    "TurnDetection",
    "auth_headers",
    "realtime_url",
]

log = logging.getLogger("voxtrio.openai")

#: The only PCM rate the Realtime API accepts, in and out.
OPENAI_RATE: Final = 24_000
#: The public endpoint.
DEFAULT_BASE_URL: Final = "wss://api.openai.com/v1/realtime"
#: The most raw PCM one append may carry: its base64 (4/3 larger) plus the JSON
#: envelope stays below the service's 15 MiB limit per append.
MAX_APPEND_BYTES: Final = 11 * 1024 * 1024
#: Below this much committed audio the service rejects a commit.
_MIN_COMMIT_SAMPLES: Final = OPENAI_RATE // 10  # 100 ms
_SAMPLES_PER_MS: Final = OPENAI_RATE // 1000

_FORMAT: Final = AudioFormat(OPENAI_RATE, 1)
_PCM_FORMAT: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": OPENAI_RATE}


# ------------------------------------------------------------------ configuration


#: Close codes after which the service will not take the session back.
_FATAL_CLOSE_CODES: Final = frozenset({1008, 4001, 4003, 4004})


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

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@attrs.frozen
class FunctionTool:
    """A function the model may call; its calls arrive as :class:`ToolCall`.

    Attributes:
        name: 1..64 characters of letters, digits, ``_`` and ``-``.
        description: what it does, for the model.
        parameters: a JSON Schema object for its arguments.
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOOL_NAME.match(self.name):
            raise ValueError(
                f"tool name must be 1..64 letters, digits, '_' or '-', got {self.name!r}"
            )
        if not isinstance(self.parameters, Mapping):
            raise ValueError("tool parameters must be a JSON Schema object (a mapping)")

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


# ------------------------------------------------------------------ pure helpers


def realtime_url(base_url: str | None, model: str) -> str:
    """The websocket URL for ``model``: ``base_url`` (default the public endpoint)
    with ``?model=`` set, keeping any other query parameters.

    Accepts ``ws://`` (e.g. ``ws://127.0.0.1:PORT/v1/realtime`` for the loopback
    server) and ``wss://`` URLs.

    Raises:
        ValueError: another scheme, no host, or an empty model.
    """
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string, got {model!r}")
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


def _dumps(obj: Mapping[str, Any]) -> str:
    """Compact JSON that is always valid UTF-8 (a websocket text frame must be).

    Python strings may hold lone surrogates (from ``surrogateescape`` decoding, or
    a JSON ``"\\ud800"``); they become U+FFFD here instead of failing in the link.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


# ------------------------------------------------------------------ decoding helpers


class _Malformed(Exception):
    """A known server event lacks a field or has one of the wrong type."""


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise _Malformed(f"{where} has no {key!r}")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        raise _Malformed(f"{where}.{key} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise _Malformed(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value: str = _field(obj, key, str, where)
    return value


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value: int = _field(obj, key, int, where)
    return value


def _obj(obj: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value: dict[str, Any] = _field(obj, key, dict, where)
    return value


def _opt(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if obj.get(key) is None:
        return None
    return _field(obj, key, kind, where)


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value: str | None = _opt(obj, key, str, where)
    return value


# ------------------------------------------------------------------ the codec

_Decoded: TypeAlias = list[Event | LinkSignal]

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
        "input_audio_buffer.timeout_triggered",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "rate_limits.updated",
        "response.output_item.added",
        "response.content_part.added",
        "response.content_part.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    }
)


class OpenAIRealtimeCodec:
    """Encode link inputs as OpenAI Realtime GA client events; decode server events.

    Args:
        model: the Realtime model (it goes in the URL, see :meth:`url`).
        voice: the reply voice; ``None`` leaves the service's default.
        transcription_model: the model transcribing the user's speech; ``None``
            turns input transcription off.
        transcription_language: an ISO-639-1 hint for the transcription, or None.
        turn_detection: :class:`ServerVad` (default), :class:`SemanticVad`, or
            ``None`` for manual turns (the app commits and asks for replies).
        output_modalities: ``("audio",)`` (audio with a transcript) or ``("text",)``.
        noise_reduction: ``"near_field"``, ``"far_field"``, or None (off).
        tools: functions the model may call.
        tool_choice: ``"auto"``, ``"none"`` or ``"required"``; None leaves the default.
        max_append_bytes: raw PCM bytes per ``input_audio_buffer.append`` at most
            (default 8 MiB, at most :data:`MAX_APPEND_BYTES`).

    Raises:
        ValueError: any argument out of range.

    Stateful per connection: it numbers client events (``event_id``), counts the
    audio it sent so that ``audio_start_ms``/``audio_end_ms`` map back to input
    ``pts``, and follows speech state so that :class:`EndOfInput` commits only what
    the service still holds.
    """

    provider: Final = "openai"
    wait_for_ready: Final = False  # the service applies events in order

    def __init__(
        self,
        *,
        model: str = "gpt-realtime",
        voice: str | None = "marin",
        transcription_model: str | None = "gpt-4o-transcribe",
        transcription_language: str | None = None,
        turn_detection: TurnDetection = ServerVad(),
        output_modalities: Sequence[str] = ("audio",),
        noise_reduction: Literal["near_field", "far_field"] | None = None,
        tools: Sequence[FunctionTool] = (),
        tool_choice: Literal["auto", "none", "required"] | None = None,
        max_append_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        for name, value in (
            ("voice", voice),
            ("transcription_model", transcription_model),
            ("transcription_language", transcription_language),
        ):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        if turn_detection is not None and not isinstance(turn_detection, ServerVad | SemanticVad):
            raise ValueError(
                f"turn_detection must be ServerVad(), SemanticVad() or None, got {turn_detection!r}"
            )
        modalities = tuple(output_modalities)
        if modalities not in (("audio",), ("text",)):
            raise ValueError(
                f'output_modalities must be ("audio",) or ("text",), got {output_modalities!r}'
            )
        if noise_reduction not in (None, "near_field", "far_field"):
            raise ValueError(
                f"noise_reduction must be near_field, far_field or None, got {noise_reduction!r}"
            )
        tools = tuple(tools)
        if not all(isinstance(t, FunctionTool) for t in tools):
            raise ValueError("tools must be FunctionTool instances")
        if len({t.name for t in tools}) != len(tools):
            raise ValueError("tool names must be unique")
        if tool_choice not in (None, "auto", "none", "required"):
            raise ValueError(
                f"tool_choice must be auto, none, required or None, got {tool_choice!r}"
            )
        if (
            isinstance(max_append_bytes, bool)
            or not isinstance(max_append_bytes, int)
            or not 2 <= max_append_bytes <= MAX_APPEND_BYTES
        ):
            raise ValueError(
                f"max_append_bytes must be in 2..{MAX_APPEND_BYTES}, got {max_append_bytes!r}"
            )
        self.model = model
        self.voice = voice
        self.transcription_model = transcription_model
        self.transcription_language = transcription_language
        self.turn_detection = turn_detection
        self.output_modalities: tuple[str, ...] = modalities
        self.noise_reduction = noise_reduction
        self.tools: tuple[FunctionTool, ...] = tools
        self.tool_choice = tool_choice
        self.max_append_bytes = max_append_bytes - max_append_bytes % 2  # whole samples

        self._next_event = 0
        self._config_event_id: str | None = None
        self.configured = False  # the service confirmed our session.update
        self.session_id: str | None = None
        # Audio bookkeeping: samples appended on this connection, and where the input
        # pts jumped (audio dropped during an outage), as (appended offset, pts).
        self._appended = 0
        self._break_offsets: list[int] = []
        self._break_pts: list[int] = []
        self._next_pts: int | None = None
        self._uncommitted = 0  # samples appended since the last commit/clear/turn
        self._speaking = False  # the service's VAD heard speech start, not yet stop

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
            "response.output_audio_transcript.done": self._transcript_done,
            "response.output_text.done": self._text_done,
            "response.output_item.done": self._item_done,
            "response.done": self._response_done,
        }

    @property
    def capabilities(self) -> Capabilities:
        """Manual commits, clears, cancels and truncation; no resumption; server VAD
        and input transcription as configured."""
        return Capabilities(
            manual_commit=True,
            clear_input=True,
            server_vad=self.turn_detection is not None,
            cancel_reply=True,
            truncation=True,
            resumption=False,
            tool_calls=True,
            tool_cancellation=False,
            input_transcription=self.transcription_model is not None,
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

    def __repr__(self) -> str:
        return (
            f"OpenAIRealtimeCodec(model={self.model!r}, voice={self.voice!r}, "
            f"transcription_model={self.transcription_model!r}, "
            f"turn_detection={self.turn_detection!r})"
        )

    # ------------------------------------------------------------- properties

    @property
    def input_format(self) -> AudioFormat:
        """24 kHz mono int16: the only input the service takes."""
        return _FORMAT

    @property
    def output_format(self) -> AudioFormat:
        return _FORMAT

    def url(self, base_url: str | None = None) -> str:
        """:func:`realtime_url` for this codec's model."""
        return realtime_url(base_url, self.model)

    def input_pts(self, audio_ms: int) -> int | None:
        """The input ``pts`` of the audio the service names by ``audio_ms`` (ms since
        the first audio appended on this connection), or None before any audio."""
        if not self._break_offsets:
            return None
        offset = audio_ms * _SAMPLES_PER_MS
        i = max(0, bisect.bisect_right(self._break_offsets, offset) - 1)
        return self._break_pts[i] + offset - self._break_offsets[i]

    # ------------------------------------------------------------- encoding

    def _event_id(self) -> str:
        self._next_event += 1
        return f"vx_{self._next_event}"

    def session_config(self, instructions: str) -> dict[str, Any]:
        """The ``session`` object of the ``session.update`` sent on connect."""
        audio_in: dict[str, Any] = {"format": dict(_PCM_FORMAT)}
        if self.transcription_model is None:
            audio_in["transcription"] = None
        else:
            transcription: dict[str, Any] = {"model": self.transcription_model}
            if self.transcription_language is not None:
                transcription["language"] = self.transcription_language
            audio_in["transcription"] = transcription
        audio_in["turn_detection"] = (
            None if self.turn_detection is None else self.turn_detection.to_wire()
        )
        if self.noise_reduction is not None:
            audio_in["noise_reduction"] = {"type": self.noise_reduction}
        audio_out: dict[str, Any] = {"format": dict(_PCM_FORMAT)}
        if self.voice is not None:
            audio_out["voice"] = self.voice
        session: dict[str, Any] = {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": list(self.output_modalities),
            "audio": {"input": audio_in, "output": audio_out},
        }
        if self.tools:
            session["tools"] = [t.to_wire() for t in self.tools]
        if self.tool_choice is not None:
            session["tool_choice"] = self.tool_choice
        return session

    def connect_messages(
        self, instructions: str, *, resumption_handle: str | None = None
    ) -> list[str]:
        """One ``session.update`` with the full configuration and ``instructions``.

        ``resumption_handle`` is ignored: the service has no session resumption (a
        reconnect starts a new session; the instructions carry the conversation).

        Raises:
            TypeError: ``instructions`` is not a string.
        """
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
        event_id = self._event_id()
        self._config_event_id = event_id
        return [
            _dumps(
                {
                    "type": "session.update",
                    "event_id": event_id,
                    "session": self.session_config(instructions),
                }
            )
        ]

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
        if isinstance(msg, FrameBatch):
            return self._encode_audio(msg.frames)
        if isinstance(msg, AudioFrame):
            return self._encode_audio((msg,))
        if isinstance(msg, CommitInput):
            self._uncommitted = 0
            return [self._simple("input_audio_buffer.commit")]
        if isinstance(msg, ClearInput):
            self._uncommitted = 0
            return [self._simple("input_audio_buffer.clear")]
        if isinstance(msg, EndOfInput):
            if self.turn_detection is None:
                pending = self._uncommitted >= _MIN_COMMIT_SAMPLES
            else:
                pending = self._speaking and self._uncommitted > 0
            if not pending:
                return []
            self._uncommitted = 0
            return [self._simple("input_audio_buffer.commit")]
        if isinstance(msg, CreateReply):
            event: dict[str, Any] = {"type": "response.create", "event_id": self._event_id()}
            if msg.instructions is not None:
                event["response"] = {"instructions": msg.instructions}
            return [_dumps(event)]
        if isinstance(msg, CancelReply):
            event = {"type": "response.cancel", "event_id": self._event_id()}
            if msg.response_id is not None:
                event["response_id"] = msg.response_id
            return [_dumps(event)]
        if isinstance(msg, TruncateItem):
            if isinstance(msg.audio_end_ms, bool) or not isinstance(msg.audio_end_ms, int):
                raise ValueError(f"audio_end_ms must be an int, got {msg.audio_end_ms!r}")
            if msg.audio_end_ms < 0 or msg.content_index < 0:
                raise ValueError(
                    f"cannot truncate at {msg.audio_end_ms} ms / content {msg.content_index}"
                )
            if msg.audio_end_ms == 0:
                return []  # the service rejects a truncate before anything played
            return [
                _dumps(
                    {
                        "type": "conversation.item.truncate",
                        "event_id": self._event_id(),
                        "item_id": msg.item_id,
                        "content_index": msg.content_index,
                        "audio_end_ms": msg.audio_end_ms,
                    }
                )
            ]
        if isinstance(msg, SendText):
            item: dict[str, Any] = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": msg.text}],
            }
            return [self._item_create(item)]
        if isinstance(msg, ToolResult):
            item = {"type": "function_call_output", "call_id": msg.call_id, "output": msg.output}
            return [self._item_create(item)]
        raise TypeError(f"not a link input the OpenAI codec can encode: {type(msg).__name__}")

    def _simple(self, kind: str) -> str:
        return _dumps({"type": kind, "event_id": self._event_id()})

    def _item_create(self, item: dict[str, Any]) -> str:
        return _dumps(
            {"type": "conversation.item.create", "event_id": self._event_id(), "item": item}
        )

    def _encode_audio(self, frames: Sequence[AudioFrame]) -> list[str]:
        for frame in frames:  # check everything before changing any state
            if not isinstance(frame, AudioFrame):
                raise TypeError(f"a FrameBatch holds AudioFrames, got {type(frame).__name__}")
            if frame.sample_rate != OPENAI_RATE or frame.channels != 1:
                raise ValueError(
                    f"OpenAI Realtime takes 24000 Hz mono audio; got {frame.sample_rate} Hz, "
                    f"{frame.channels} channel(s): convert it first"
                )
        chunks: list[bytes] = []
        for frame in frames:
            if not frame.samples:
                continue
            if frame.pts != self._next_pts:
                self._break_offsets.append(self._appended)
                self._break_pts.append(frame.pts)
            self._appended += frame.samples
            self._uncommitted += frame.samples
            self._next_pts = frame.end_pts
            chunks.append(frame.to_bytes())
        if not chunks:
            return []
        raw = b"".join(chunks)
        return [
            self._append(raw[i : i + self.max_append_bytes])
            for i in _cuts(len(raw), self.max_append_bytes)
        ]

    def _append(self, pcm: bytes) -> str:
        audio = base64.b64encode(pcm).decode("ascii")
        # Built by hand: json.dumps would scan megabytes of base64 for escapes.
        return (
            f'{{"type":"input_audio_buffer.append","event_id":"{self._event_id()}",'
            f'"audio":"{audio}"}}'
        )

    # ------------------------------------------------------------- decoding

    def decode(self, data: str | bytes) -> list[Event | LinkSignal]:
        """Events and link signals for one server message. Never raises.

        Unknown event types are ignored (logged at debug level); anything that is not
        a JSON object with a string ``type``, and known events with missing or
        mistyped fields, become ``ErrorEvent(code="protocol_error", source="link")``.
        """
        if not isinstance(data, str):
            size = len(data) if isinstance(data, bytes | bytearray | memoryview) else 0
            return [_protocol_error(f"unexpected binary frame from OpenAI ({size} bytes)")]
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            return [_protocol_error(f"malformed JSON from OpenAI: {excerpt(data, quote=True)}")]
        if not isinstance(obj, dict):
            return [
                _protocol_error(
                    f"OpenAI sent JSON that is not an object: {excerpt(data, quote=True)}"
                )
            ]
        kind = obj.get("type")
        if not isinstance(kind, str):
            return [
                _protocol_error(f"OpenAI sent an event without a type: {excerpt(data, quote=True)}")
            ]
        decoder = self._decoders.get(kind)
        if decoder is None:
            if kind not in _QUIET_TYPES:
                log.debug("ignoring unknown OpenAI event type %r", excerpt(kind, 80))
            return []
        try:
            return decoder(obj)
        except _Malformed as exc:
            return [_protocol_error(f"malformed {kind} event from OpenAI: {exc}")]

    def _session(self, ev: dict[str, Any]) -> _Decoded:
        session = _obj(ev, "session", ev["type"])
        session_id = _opt_str(session, "id", "session")
        if session_id is not None:
            self.session_id = session_id
        if ev["type"] == "session.updated":
            self.configured = True
        return [Ready(session_id=self.session_id)]

    def _error(self, ev: dict[str, Any]) -> _Decoded:
        err = _obj(ev, "error", "error")
        message = _str(err, "message", "error")
        code = _opt_str(err, "code", "error") or _opt_str(err, "type", "error")
        event_id = _opt_str(err, "event_id", "error")
        if event_id is not None and event_id == self._config_event_id:
            message = f"session configuration rejected: {message}"
        return [ErrorEvent(excerpt(message), code=code, source="provider", event_id=event_id)]

    def _speech_started(self, ev: dict[str, Any]) -> _Decoded:
        where = "speech_started"
        ms = _int(ev, "audio_start_ms", where)
        item_id = _str(ev, "item_id", where)
        self._speaking = True
        return [SpeechStarted(item_id, ms, self.input_pts(ms))]

    def _speech_stopped(self, ev: dict[str, Any]) -> _Decoded:
        where = "speech_stopped"
        ms = _int(ev, "audio_end_ms", where)
        item_id = _str(ev, "item_id", where)
        self._speaking = False
        self._uncommitted = 0  # the service commits the turn itself
        return [SpeechStopped(item_id, ms, self.input_pts(ms))]

    def _committed(self, ev: dict[str, Any]) -> _Decoded:
        self._uncommitted = 0
        return []

    def _cleared(self, ev: dict[str, Any]) -> _Decoded:
        self._uncommitted = 0
        self._speaking = False
        return []

    def _transcription_delta(self, ev: dict[str, Any]) -> _Decoded:
        where = "transcription delta"
        item_id = _str(ev, "item_id", where)
        delta = _opt_str(ev, "delta", where)
        if not delta:
            return []
        return [InputTranscriptionDelta(delta, item_id)]

    def _transcription_done(self, ev: dict[str, Any]) -> _Decoded:
        where = "transcription"
        return [
            InputTranscriptionCompleted(
                _str(ev, "item_id", where),
                _str(ev, "transcript", where),
                _int(ev, "content_index", where),
            )
        ]

    def _transcription_failed(self, ev: dict[str, Any]) -> _Decoded:
        where = "transcription failure"
        item_id = _str(ev, "item_id", where)
        err = _obj(ev, "error", where)
        message = _opt_str(err, "message", where) or "the transcription failed"
        code = _opt_str(err, "code", where) or _opt_str(err, "type", where)
        return [InputTranscriptionFailed(item_id, excerpt(message), code)]

    def _response_created(self, ev: dict[str, Any]) -> _Decoded:
        response = _obj(ev, "response", "response.created")
        return [ReplyStarted(_str(response, "id", "response"))]

    def _audio_delta(self, ev: dict[str, Any]) -> _Decoded:
        where = "audio delta"
        response_id = _str(ev, "response_id", where)
        item_id = _str(ev, "item_id", where)
        pcm = _decode_pcm(_str(ev, "delta", where))
        if not pcm.shape[0]:
            return []
        return [ReplyAudio(pcm, OPENAI_RATE, response_id, item_id)]

    def _audio_done(self, ev: dict[str, Any]) -> _Decoded:
        where = "audio done"
        return [ReplyAudioDone(_str(ev, "response_id", where), _str(ev, "item_id", where))]

    def _text_delta(self, ev: dict[str, Any]) -> _Decoded:
        where = ev["type"]
        delta = _str(ev, "delta", where)
        response_id = _str(ev, "response_id", where)
        item_id = _str(ev, "item_id", where)
        return [ReplyTextDelta(delta, response_id, item_id)] if delta else []

    def _transcript_done(self, ev: dict[str, Any]) -> _Decoded:
        where = ev["type"]
        return [
            ReplyTextDone(
                _str(ev, "transcript", where),
                _str(ev, "response_id", where),
                _str(ev, "item_id", where),
            )
        ]

    def _text_done(self, ev: dict[str, Any]) -> _Decoded:
        where = ev["type"]
        return [
            ReplyTextDone(
                _str(ev, "text", where), _str(ev, "response_id", where), _str(ev, "item_id", where)
            )
        ]

    def _item_done(self, ev: dict[str, Any]) -> _Decoded:
        where = "response.output_item.done"
        item = _obj(ev, "item", where)
        if item.get("type") != "function_call":
            return []
        if _opt_str(item, "status", "item") not in (None, "completed"):
            return []  # cut short (e.g. cancelled): its arguments are incomplete
        return [
            ToolCall(
                _str(item, "call_id", "function_call"),
                _str(item, "name", "function_call"),
                _str(item, "arguments", "function_call"),
            )
        ]

    def _response_done(self, ev: dict[str, Any]) -> _Decoded:
        response = _obj(ev, "response", "response.done")
        response_id = _opt_str(response, "id", "response")
        status = _opt_str(response, "status", "response") or "completed"
        details: dict[str, Any] = _opt(response, "status_details", dict, "response") or {}
        out: _Decoded = []
        if status == "cancelled" and details.get("reason") == "turn_detected":
            out.append(ReplyInterrupted(response_id))
        elif status == "failed":
            err: dict[str, Any] = _opt(details, "error", dict, "status_details") or {}
            message = _opt_str(err, "message", "status_details.error") or "the reply failed"
            code = _opt_str(err, "code", "status_details.error") or "response_failed"
            out.append(ErrorEvent(excerpt(message), code=code, source="provider"))
        out.append(ReplyDone(response_id, status))
        return out


def _cuts(size: int, step: int) -> Iterator[int]:
    return iter(range(0, size, step))


def _decode_pcm(text: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Malformed(f"audio is not valid base64 ({len(text)} chars)") from None
    if len(raw) % 2:
        raise _Malformed(f"audio of {len(raw)} bytes is not whole 16-bit samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False).reshape(-1, 1)


def _protocol_error(message: str) -> ErrorEvent:
    return ErrorEvent(message, code="protocol_error", source="link")
