"""A sans-IO codec for the Gemini Live (``BidiGenerateContent``) websocket protocol.

:class:`GeminiLiveCodec` implements :class:`~voxtrio.codecs.wire.WireCodec`: the
first message on a connection is ``setup`` (see
:meth:`~voxtrio.codecs.gemini_live.config.GeminiLiveConfig.setup_message`); the
service answers ``setupComplete`` (:class:`~voxtrio.codecs.wire.Ready`) and the link
holds input back until then (``wait_for_ready``).

Wire facts this module relies on (``PROTOCOLS.md``):

* input audio is ``realtimeInput.audio`` with ``mimeType: "audio/pcm;rate=16000"``:
  the codec takes 16 kHz mono frames only, so the declared rate is the real one;
* a segment end (:class:`~voxtrio.messages.EndOfInput`) is ``audioStreamEnd`` under
  automatic activity detection; with it off, the codec brackets each segment in
  ``activityStart`` / ``activityEnd`` itself;
* server JSON arrives in text *and* binary frames;
* there is no commit, clear, cancel or truncate on the wire: the capabilities say so
  and the session refuses them before they reach the codec.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any, Final

from ...audio import AudioFormat, AudioFrame
from ...messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    Event,
    FrameBatch,
    LinkInput,
    SendText,
    ToolResult,
    TruncateItem,
    UpdateSession,
)
from ..wire import (
    Capabilities,
    LinkSignal,
    Verdict,
    default_close_verdict,
    default_rejection_verdict,
)
from .config import GEMINI_INPUT_RATE, GEMINI_OUTPUT_RATE, GeminiLiveConfig
from .decode import ServerDecoder

__all__ = ["INPUT_MIME", "MAX_AUDIO_MESSAGE_BYTES", "GeminiLiveCodec"]

log = logging.getLogger("voxtrio.gemini")

#: The ``mimeType`` of every input audio message: the declared rate is the real one.
INPUT_MIME: Final = f"audio/pcm;rate={GEMINI_INPUT_RATE}"
#: Raw PCM per ``realtimeInput`` message at most (about 16 s at 16 kHz); a larger
#: batch becomes several messages.
MAX_AUDIO_MESSAGE_BYTES: Final = 512 * 1024

_INPUT_FORMAT: Final = AudioFormat(GEMINI_INPUT_RATE, 1)
_OUTPUT_FORMAT: Final = AudioFormat(GEMINI_OUTPUT_RATE, 1)

#: Close codes no retry mends: a malformed ``setup`` or argument (1007), a policy
#: violation such as a rejected key or an unknown model (1008).
_FATAL_CLOSE_CODES: Final = frozenset({1007, 1008})
#: Words in a close reason that say the session cannot work as configured, whatever
#: the code (the service closes a quota failure with 1011, like an internal error).
_FATAL_REASONS: Final = (
    "api key",
    "api_key",
    "unauthenticated",
    "permission",
    "quota",
    "billing",
    "resource_exhausted",
    "not found",
    "not supported",
    "invalid argument",
)
#: Handshake statuses no retry mends: Gemini answers a bad key with 400/401/403, an
#: unknown path with 404, an exhausted quota with 429.
_FATAL_STATUSES: Final = frozenset({429})

# UpdateSession: the Live API takes its setup (instructions, tools) once, as the
# first message of a connection, and has no message that changes it later.
_UNSUPPORTED: Final = (CommitInput, ClearInput, CancelReply, TruncateItem, UpdateSession)


class GeminiLiveCodec:
    """Encode link inputs as Gemini Live client messages; decode server messages.

    Args:
        config: the session configuration (:class:`GeminiLiveConfig`).
        id_prefix: starts the item and response ids the codec assigns (Gemini names
            none); random by default, so ids never repeat across connections.

    A codec instance serves one connection: it follows the activity bracket of
    manual turns, the user turn and the reply in progress, and the tool names of
    this connection's calls (a :class:`ToolResult` without a name gets the name of
    the call it answers).
    """

    provider: Final = "gemini"
    wait_for_ready: Final = True  # no input before setupComplete

    def __init__(self, config: GeminiLiveConfig, *, id_prefix: str | None = None) -> None:
        if not isinstance(config, GeminiLiveConfig):
            raise ValueError(f"config must be a GeminiLiveConfig, got {config!r}")
        if id_prefix is not None and (not isinstance(id_prefix, str) or not id_prefix):
            raise ValueError(f"id_prefix must be a non-empty string or None, got {id_prefix!r}")
        self.config = config
        self._prefix = id_prefix or f"gl-{secrets.token_hex(4)}"
        self._decoder = ServerDecoder(
            id_prefix=self._prefix,
            text_replies=config.response_modalities == ("TEXT",),
            setup_messages=1,
            handle=None,
        )
        self._in_activity = False  # manual turns: activityStart sent, no activityEnd yet
        self._audio_since_end = False  # audio sent since the last segment end

    def __repr__(self) -> str:
        return f"GeminiLiveCodec(model={self.config.model!r}, prefix={self._prefix!r})"

    # ------------------------------------------------------------- contract

    @property
    def input_format(self) -> AudioFormat:
        """16 kHz mono int16: the service's native input."""
        return _INPUT_FORMAT

    @property
    def output_format(self) -> AudioFormat:
        """24 kHz mono int16 reply audio."""
        return _OUTPUT_FORMAT

    @property
    def capabilities(self) -> Capabilities:
        """Resumption, tool calls and their cancellation; server VAD and input
        transcription as configured; no commit, clear, cancel or truncation."""
        return Capabilities(
            manual_commit=False,
            clear_input=False,
            server_vad=self.config.turn_detection is not None,
            cancel_reply=False,
            truncation=False,
            resumption=True,
            tool_calls=True,
            tool_cancellation=True,
            input_transcription=self.config.input_transcription,
            replies_after_tool_result=True,
            session_update=False,  # the Live API takes its setup once, on connect
        )

    def classify_close(self, code: int | None, reason: str | None) -> Verdict:
        """Final for 1007/1008 and for any reason naming the key, permissions, quota,
        billing, an unknown or unsupported model, or an invalid argument; anything
        else (1000 at the session's time limit, 1001, 1011, no code) is retried."""
        if code in _FATAL_CLOSE_CODES:
            return Verdict.FATAL
        if reason:
            low = reason.lower()
            if any(word in low for word in _FATAL_REASONS):
                return Verdict.FATAL
        return default_close_verdict(code)

    def classify_rejection(self, status: int) -> Verdict:
        """400/401/403/404 and 429 (quota) are final, others retried."""
        if status in _FATAL_STATUSES:
            return Verdict.FATAL
        return default_rejection_verdict(status)

    @property
    def session_id(self) -> str | None:
        """The service's id for this session, once ``setupComplete`` named one."""
        return self._decoder.session_id

    @property
    def resumption_handle(self) -> str | None:
        """The handle to resume this session with (the latest resumable one)."""
        return self._decoder.handle

    # ------------------------------------------------------------- encoding

    def connect_messages(
        self, instructions: str, *, resumption_handle: str | None = None
    ) -> list[str]:
        """One ``setup`` message: the configuration, ``instructions`` as the system
        instruction, and ``resumption_handle`` (when given) to resume a session.

        Raises:
            TypeError: ``instructions`` or ``resumption_handle`` is not a string.
        """
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
        if resumption_handle is not None and not isinstance(resumption_handle, str):
            raise TypeError("resumption_handle must be a str or None")
        self._decoder.handle = resumption_handle or None
        return [_dumps(self.config.setup_message(instructions, resumption_handle or None))]

    def encode(self, msg: LinkInput) -> list[str]:
        """Client messages for one link input.

        * ``AudioFrame`` / ``FrameBatch`` -> ``realtimeInput.audio`` (16 kHz mono
          only; with manual turns an ``activityStart`` first when a segment begins);
        * ``EndOfInput`` -> ``audioStreamEnd`` (automatic detection) or
          ``activityEnd`` (manual turns), when audio was sent since the last one;
        * ``SendText`` -> ``realtimeInput.text``;
        * ``ToolResult`` -> ``toolResponse`` (a JSON object output is the response
          itself, anything else is wrapped as ``{"output": ...}``);
        * ``CreateReply`` -> ``clientContent`` with ``turnComplete`` (per-reply
          instructions go in as a user text turn).

        Raises:
            ValueError: audio that is not 16 kHz mono, or a control Gemini Live has
                no message for (commit, clear, cancel, truncate: the session checks
                :attr:`capabilities` before sending them).
            TypeError: ``msg`` is not a link input.
        """
        if isinstance(msg, FrameBatch):
            return self._encode_audio(msg.frames)
        if isinstance(msg, AudioFrame):
            return self._encode_audio((msg,))
        if isinstance(msg, EndOfInput):
            return self._end_segment()
        if isinstance(msg, SendText):
            return [_dumps({"realtimeInput": {"text": msg.text}})]
        if isinstance(msg, ToolResult):
            return [self._tool_response(msg)]
        if isinstance(msg, CreateReply):
            content: dict[str, Any] = {"turnComplete": True}
            if msg.instructions is not None:
                content["turns"] = [{"role": "user", "parts": [{"text": msg.instructions}]}]
            return [_dumps({"clientContent": content})]
        if isinstance(msg, _UNSUPPORTED):
            raise ValueError(f"Gemini Live has no {type(msg).__name__}: see capabilities")
        raise TypeError(f"not a link input the Gemini codec can encode: {type(msg).__name__}")

    def _encode_audio(self, frames: Sequence[AudioFrame]) -> list[str]:
        for frame in frames:  # check everything before changing any state
            if not isinstance(frame, AudioFrame):
                raise TypeError(f"a FrameBatch holds AudioFrames, got {type(frame).__name__}")
            if (
                frame.sample_rate != GEMINI_INPUT_RATE
                or frame.channels != 1
                or frame.encoding != "pcm16"  # G.711 must be decoded first
            ):
                raise ValueError(
                    f"Gemini Live takes {GEMINI_INPUT_RATE} Hz mono audio; got "
                    f"{frame.sample_rate} Hz, {frame.channels} channel(s)"
                    + ("" if frame.encoding == "pcm16" else f", {frame.encoding}")
                    + ": convert it first"
                )
        raw = b"".join(frame.to_bytes() for frame in frames if frame.samples)
        if not raw:
            return []
        out: list[str] = []
        if self.config.turn_detection is None and not self._in_activity:
            self._in_activity = True
            out.append(_dumps({"realtimeInput": {"activityStart": {}}}))
        self._audio_since_end = True
        step = MAX_AUDIO_MESSAGE_BYTES
        out.extend(_audio_message(raw[i : i + step]) for i in range(0, len(raw), step))
        return out

    def _end_segment(self) -> list[str]:
        if self.config.turn_detection is None:
            if not self._in_activity:
                return []
            self._in_activity = False
            self._audio_since_end = False
            return [_dumps({"realtimeInput": {"activityEnd": {}}})]
        if not self._audio_since_end:
            return []
        self._audio_since_end = False
        return [_dumps({"realtimeInput": {"audioStreamEnd": True}})]

    def _tool_response(self, msg: ToolResult) -> str:
        name = msg.name or self._decoder.tool_names.get(msg.call_id)
        try:
            parsed = json.loads(msg.output)
        except ValueError:
            parsed = msg.output
        response = parsed if isinstance(parsed, dict) else {"output": parsed}
        reply: dict[str, Any] = {"id": msg.call_id, "response": response}
        if name is not None:
            reply["name"] = name
        else:
            log.warning("tool result for an unknown call sent without the tool's name")
        return _dumps({"toolResponse": {"functionResponses": [reply]}})

    # ------------------------------------------------------------- decoding

    def decode(self, data: str | bytes) -> list[Event | LinkSignal]:
        """Events and link signals for one server message (JSON in a text or a
        binary frame). Never raises: malformed input becomes
        ``ErrorEvent(code="protocol_error")``. See :mod:`.decode` for the turns."""
        return self._decoder.decode(data)


def _audio_message(pcm: bytes) -> str:
    data = base64.b64encode(pcm).decode("ascii")
    # Built by hand: json.dumps would scan the base64 for characters to escape.
    return f'{{"realtimeInput":{{"audio":{{"data":"{data}","mimeType":"{INPUT_MIME}"}}}}}}'


def _dumps(obj: Any) -> str:
    """Compact JSON that is always valid UTF-8 (lone surrogates become U+FFFD)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
