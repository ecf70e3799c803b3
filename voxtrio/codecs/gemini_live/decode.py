"""Server messages of Gemini Live (BidiGenerateContent) to voxtrio events.

:class:`ServerDecoder` is the stateful half of the codec that reads: Gemini names
neither user turns nor replies, so the decoder gives each an id of its own and keeps
the turn boundaries the events need:

* input transcription arrives in pieces with no id. The pieces of one user turn share
  one codec-assigned item id (``InputTranscriptionDelta`` for each); the turn ends
  when the model's turn starts (its first audio, text, transcript or tool call), when
  the server marks the transcription finished, or at ``turnComplete`` -- then exactly
  one ``InputTranscriptionCompleted`` carries the joined text. Pieces that arrive
  after that start a new user turn (a barge-in, or a transcript that trails the
  reply): nothing is dropped, nothing is reported twice;
* Gemini sends no speech-stopped signal, so the decoder reports the end of the
  user's turn when it first learns of it: ``SpeechStopped(item_id)`` just before that
  turn's ``InputTranscriptionCompleted``, if no reply is in progress yet (at the
  transcription's ``finished``, at the model turn's first content, at a tool call,
  at a ``turnComplete`` with no reply). Pieces that trail a reply already started get
  none: their speech ended before that reply, at a moment nobody was told, and a
  late ``SpeechStopped`` would date the *next* reply's wait from the wrong moment.
  It is the client's earliest knowledge, not the server VAD's moment (which comes
  ``silenceDurationMs`` and the model's think time earlier); see docs/turn-taking.md;
* a reply starts with the model's first content (``ReplyStarted``), its audio ends at
  ``generationComplete`` (``ReplyAudioDone``), and it ends at ``turnComplete``
  (``ReplyTextDone`` with the joined transcript, ``ReplyDone``) or at ``interrupted``
  (``ReplyInterrupted``, then ``ReplyDone(status="cancelled")``).

Every key of a message is read (the service puts ``usageMetadata`` beside
``serverContent``); keys voxtrio has no use for are ignored quietly.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, TypeAlias

import attrs
import numpy as np

from ...messages import (
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SpeechStopped,
    ToolCall,
    ToolCallCancelled,
)
from ..wire import GoAway, LinkSignal, Ready, ResumptionHandle, excerpt
from .config import GEMINI_OUTPUT_RATE

__all__ = ["ServerDecoder", "ToolCallCancelled", "parse_duration_s"]

log = logging.getLogger("voxtrio.gemini")

Decoded: TypeAlias = list[Event | LinkSignal]

#: Top-level keys with nothing to report (usage is counted by the service's billing;
#: the VAD signals need ``explicitVadSignal``, which voxtrio does not ask for).
_QUIET_KEYS: Final = frozenset({"usageMetadata", "voiceActivityDetectionSignal", "voiceActivity"})

_RATE = re.compile(r"(?:^|;)\s*rate=(\d{3,6})\s*(?:;|$)")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")


class _Malformed(Exception):
    """A known field is missing or of the wrong type."""


def _as(value: object, kind: type, where: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise _Malformed(f"{where} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise _Malformed(f"{where} has the wrong type ({type(value).__name__})")
    return value


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``obj[key]`` checked against ``kind``; None when absent or null."""
    value = obj.get(key)
    return None if value is None else _as(value, kind, f"{where}.{key}")


def parse_duration_s(text: object) -> float | None:
    """A protobuf JSON duration (``"10s"``, ``"1.5s"``) in seconds, or None."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    return float(match.group(1)) if match else None


def protocol_error(message: str) -> ErrorEvent:
    return ErrorEvent(message, code="protocol_error", source="link")


@attrs.define
class _Reply:
    response_id: str
    text: list[str] = attrs.field(factory=list)
    audio: bool = False
    audio_done: bool = False


@attrs.define
class _UserTurn:
    item_id: str
    pieces: list[str] = attrs.field(factory=list)


class ServerDecoder:
    """Gemini Live server messages to events and link signals, for one connection.

    Args:
        id_prefix: starts every item and response id this decoder assigns (make it
            unique per connection so ids never repeat across a reconnect).
        text_replies: the session asked for TEXT replies (model text parts are the
            reply); else text parts are ignored and the output transcription is the
            reply text.
        setup_messages: how many client messages precede the link's own (the
            ``setup``): ``lastConsumedClientMessageIndex`` counts them, the link's
            numbering does not.
        handle: the resumption handle this connection was opened with.
    """

    def __init__(
        self, *, id_prefix: str, text_replies: bool, setup_messages: int, handle: str | None
    ) -> None:
        self._prefix = id_prefix
        self._text_replies = text_replies
        self._setup_messages = setup_messages
        self.handle = handle
        self.session_id: str | None = None
        self._turns = 0
        self._replies = 0
        self._user: _UserTurn | None = None
        self._reply: _Reply | None = None
        self.tool_names: dict[str, str] = {}

    @property
    def reply_in_progress(self) -> bool:
        return self._reply is not None

    def decode(self, data: str | bytes) -> Decoded:
        """Events and signals for one server message (text or binary). Never raises."""
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                return [protocol_error(f"Gemini sent a binary frame that is not UTF-8 JSON: "
                                       f"{excerpt(bytes(data))}")]
        else:
            text = data
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return [protocol_error(f"malformed JSON from Gemini: {excerpt(text, quote=True)}")]
        if not isinstance(obj, dict):
            return [protocol_error(f"Gemini sent JSON that is not an object: "
                                   f"{excerpt(text, quote=True)}")]
        out: Decoded = []
        for key, value in obj.items():
            handler = self._handlers.get(key)
            if handler is None:
                if key not in _QUIET_KEYS:
                    log.debug("ignoring unknown Gemini message field %r", excerpt(key, 80))
                continue
            try:
                handler(self, _as(value, dict, key), out)
            except _Malformed as exc:
                out.append(protocol_error(f"malformed {key} message from Gemini: {exc}"))
        return out

    # ------------------------------------------------------------- turn bookkeeping

    def _end_user_turn(self) -> Decoded:
        """The user's turn in progress is over: its transcript, and, when no reply has
        started since it began, ``SpeechStopped`` first (the end of the user's turn,
        as far as the client can know it; see the module docstring)."""
        turn, self._user = self._user, None
        if turn is None:
            return []
        done = InputTranscriptionCompleted(turn.item_id, "".join(turn.pieces))
        if self._reply is not None:
            return [done]  # its speech trailed a reply already under way
        return [SpeechStopped(turn.item_id), done]

    def _start_reply(self) -> tuple[_Reply, Decoded]:
        if self._reply is not None:
            return self._reply, []
        out = self._end_user_turn()
        self._replies += 1
        self._reply = _Reply(f"{self._prefix}-r{self._replies}")
        out.append(ReplyStarted(self._reply.response_id))
        return self._reply, out

    def _finish_reply(self, status: str) -> Decoded:
        reply, self._reply = self._reply, None
        if reply is None:
            return []
        rid = reply.response_id
        out: Decoded = []
        if status == "cancelled":
            out.append(ReplyInterrupted(rid))
        elif reply.audio and not reply.audio_done:
            out.append(ReplyAudioDone(rid, rid))
        if reply.text:
            out.append(ReplyTextDone("".join(reply.text), rid, rid))
        out.append(ReplyDone(rid, status))
        return out

    # ------------------------------------------------------------- message kinds

    def _setup_complete(self, body: dict[str, Any], out: Decoded) -> None:
        session_id = _get(body, "sessionId", str, "setupComplete")
        if session_id:
            self.session_id = session_id
        out.append(Ready(session_id=self.session_id))

    def _server_content(self, body: dict[str, Any], out: Decoded) -> None:
        where = "serverContent"
        heard = _get(body, "inputTranscription", dict, where)
        if heard is not None:
            out.extend(self._input_piece(heard))
        turn = _get(body, "modelTurn", dict, where)
        if turn is not None:
            self._model_turn(turn, out)
        said = _get(body, "outputTranscription", dict, where)
        if said is not None:
            piece = _get(said, "text", str, "outputTranscription")
            if piece:
                reply, started = self._start_reply()
                out.extend(started)
                reply.text.append(piece)
                out.append(ReplyTextDelta(piece, reply.response_id, reply.response_id))
        if _get(body, "interrupted", bool, where):
            out.extend(self._finish_reply("cancelled"))
        if _get(body, "generationComplete", bool, where) and self._reply is not None:
            reply = self._reply
            if reply.audio and not reply.audio_done:
                reply.audio_done = True
                out.append(ReplyAudioDone(reply.response_id, reply.response_id))
        if _get(body, "turnComplete", bool, where):
            out.extend(self._end_user_turn())
            out.extend(self._finish_reply("completed"))

    def _input_piece(self, heard: dict[str, Any]) -> Decoded:
        piece = _get(heard, "text", str, "inputTranscription")
        out: Decoded = []
        if piece:
            if self._user is None:
                self._turns += 1
                self._user = _UserTurn(f"{self._prefix}-u{self._turns}")
            self._user.pieces.append(piece)
            out.append(InputTranscriptionDelta(piece, self._user.item_id))
        if _get(heard, "finished", bool, "inputTranscription"):
            out.extend(self._end_user_turn())
        return out

    def _model_turn(self, turn: dict[str, Any], out: Decoded) -> None:
        parts = _get(turn, "parts", list, "modelTurn") or []
        for i, part in enumerate(parts):
            part = _as(part, dict, f"modelTurn.parts[{i}]")
            if part.get("thought"):
                continue  # the model's reasoning, not its reply
            blob = _get(part, "inlineData", dict, f"modelTurn.parts[{i}]")
            if blob is not None:
                mime = _get(blob, "mimeType", str, "inlineData") or ""
                if not mime.startswith("audio/pcm"):
                    continue
                match = _RATE.search(mime[len("audio/pcm") :])
                rate = int(match.group(1)) if match else GEMINI_OUTPUT_RATE
                pcm = _decode_pcm(_get(blob, "data", str, "inlineData") or "")
                if not pcm.shape[0]:
                    continue
                reply, started = self._start_reply()
                out.extend(started)
                reply.audio = True
                out.append(ReplyAudio(pcm, rate, reply.response_id, reply.response_id))
                continue
            text = _get(part, "text", str, f"modelTurn.parts[{i}]")
            if text and self._text_replies:
                reply, started = self._start_reply()
                out.extend(started)
                reply.text.append(text)
                out.append(ReplyTextDelta(text, reply.response_id, reply.response_id))

    def _tool_call(self, body: dict[str, Any], out: Decoded) -> None:
        calls = _get(body, "functionCalls", list, "toolCall") or []
        out.extend(self._end_user_turn())
        for i, call in enumerate(calls):
            where = f"toolCall.functionCalls[{i}]"
            call = _as(call, dict, where)
            call_id = _get(call, "id", str, where)
            name = _get(call, "name", str, where)
            if not call_id or not name:
                raise _Malformed(f"{where} needs an id and a name")
            args = _get(call, "args", dict, where) or {}
            self.tool_names[call_id] = name
            out.append(ToolCall(call_id, name, json.dumps(args, separators=(",", ":"))))

    def _tool_cancel(self, body: dict[str, Any], out: Decoded) -> None:
        ids = _get(body, "ids", list, "toolCallCancellation") or []
        call_ids = tuple(_as(i, str, "toolCallCancellation.ids[]") for i in ids)
        if call_ids:
            out.append(ToolCallCancelled(call_ids))

    def _go_away(self, body: dict[str, Any], out: Decoded) -> None:
        out.append(GoAway(time_left_s=parse_duration_s(body.get("timeLeft"))))

    def _resumption(self, body: dict[str, Any], out: Decoded) -> None:
        where = "sessionResumptionUpdate"
        new = _get(body, "newHandle", str, where) or None
        resumable = bool(_get(body, "resumable", bool, where))
        index = body.get("lastConsumedClientMessageIndex")
        if isinstance(index, str) and index.isdigit():  # int64 as JSON may be a string
            index = int(index)
        if index is not None:
            index = _as(index, int, f"{where}.lastConsumedClientMessageIndex")
            index = max(-1, index - self._setup_messages)
        if resumable and new is not None:
            self.handle = new
            out.append(ResumptionHandle(new, True, index))
        else:
            # Not resumable right now (the model is generating or calling a tool):
            # the handle held so far stays the one to resume with.
            out.append(ResumptionHandle(self.handle, False, index))

    _handlers: ClassVar[dict[str, Callable[[ServerDecoder, dict[str, Any], Decoded], None]]] = {
        "setupComplete": _setup_complete,
        "serverContent": _server_content,
        "toolCall": _tool_call,
        "toolCallCancellation": _tool_cancel,
        "goAway": _go_away,
        "sessionResumptionUpdate": _resumption,
    }


def _decode_pcm(text: str) -> np.ndarray:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Malformed(f"audio is not valid base64 ({len(text)} chars)") from None
    if len(raw) % 2:
        raise _Malformed(f"audio of {len(raw)} bytes is not whole 16-bit samples")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False).reshape(-1, 1)
