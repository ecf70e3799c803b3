"""A sans-IO fake of the Gemini Live service: one connection's protocol, no I/O.

:class:`GeminiService` reads client messages (:meth:`~GeminiService.receive`) and
returns the server messages to send; a test (or the loopback server) scripts what
the model does with the other methods -- a transcript in pieces, a reply, an
interruption, a goAway, a resumption update, a tool call -- each returning the
messages to send. Given a :class:`~voxtrio.testing.gemini.turns.GeminiTurns`, it
also takes turns by itself, as the real service does (:mod:`.turns`): it hears the
user's turns (energy VAD, or the client's activity marks), transcribes them and
answers with canned reply audio; paced replies fall due over time
(:attr:`~GeminiService.next_wakeup`, :meth:`~GeminiService.advance_to`).

It never raises on client input: a bad message is recorded with its problem and
answered with a :class:`CloseConnection`, as the service closes a connection on an
invalid message.

Sessions outlive connections through a shared :class:`GeminiSessions`: a
``sessionResumptionUpdate`` stores the session's state (the audio consumed so far)
under a new handle, and a connection whose ``setup`` names that handle continues
from it -- so the audio of a resumed session is exact only if the client resends
precisely the messages after ``lastConsumedClientMessageIndex``.

Numbering: client messages are counted per connection from 0, the ``setup``
included (so the first message after it is 1). This is the convention
:class:`~voxtrio.codecs.gemini_live.GeminiLiveCodec` assumes.

Pure Python and numpy: no trio, no sockets (the loopback server wraps it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import attrs
import numpy as np

from .turns import RESUMPTION_UPDATE, AutoTurns, GeminiTurns, UserTurn

__all__ = [
    "CloseConnection",
    "ClientRecord",
    "GeminiService",
    "GeminiSessions",
    "Outgoing",
    "SessionState",
]

_MIME: Final = "audio/pcm;rate=16000"
_REPLY_MIME: Final = "audio/pcm;rate=24000"


@attrs.frozen
class CloseConnection:
    """The service ends the connection with this websocket close code and reason."""

    code: int
    reason: str = ""


#: What the service sends: a JSON message (bytes for a binary frame, as the real
#: service sends them; str for a text frame), or a close.
Outgoing: TypeAlias = str | bytes | CloseConnection


@attrs.frozen
class ClientRecord:
    """One client message as received: its index on the connection, the decoded
    JSON object (None if it was not one), and what was wrong with it (None: valid
    as far as the fake checks; the tests also check it against ``google-genai``)."""

    index: int
    message: dict[str, Any] | None
    problem: str | None = None


@attrs.frozen
class SessionState:
    """What a resumption handle restores: the input audio consumed so far (16 kHz
    mono int16 bytes) and the setup the session was opened with."""

    audio: bytes
    setup: Mapping[str, Any]


@attrs.define
class GeminiSessions:
    """The sessions resumption handles point at, shared by all connections."""

    by_handle: dict[str, SessionState] = attrs.field(factory=dict)
    issued: int = 0
    #: user turns transcribed so far, across the connections
    utterances: int = 0

    def next_transcript(self, turns: GeminiTurns) -> str:
        """The canned transcript of the next user turn (see
        :attr:`~voxtrio.testing.gemini.turns.GeminiTurns.transcripts`)."""
        self.utterances += 1
        if turns.transcripts:
            return turns.transcripts[(self.utterances - 1) % len(turns.transcripts)]
        return f"loopback utterance {self.utterances}"

    def new_handle(self, state: SessionState) -> str:
        self.issued += 1
        handle = f"fake-handle-{self.issued}"
        self.by_handle[handle] = state
        return handle


class GeminiService:
    """One connection to a fake Gemini Live service.

    Args:
        sessions: where resumption handles live (shared across connections).
        binary: send JSON in binary frames (the real service does); else text.
        refuse_resumption: close a ``setup`` that names a handle (1011), as the
            service does with a handle it no longer holds.
        turns: take turns by itself (:mod:`.turns`); None (default): only what the
            scripting methods send.
    """

    def __init__(
        self,
        *,
        sessions: GeminiSessions | None = None,
        binary: bool = True,
        refuse_resumption: bool = False,
        turns: GeminiTurns | None = None,
    ) -> None:
        self.sessions = sessions if sessions is not None else GeminiSessions()
        self.turns = turns
        #: the automatic turns, once the setup arrived (None without ``turns``)
        self.auto: AutoTurns | None = None
        self._now = 0.0
        self._turn_out: list[dict[str, Any]] = []  # turn messages the message caused
        self.binary = binary
        self.refuse_resumption = refuse_resumption
        self.records: list[ClientRecord] = []
        self.setup: dict[str, Any] | None = None
        #: The handle the setup resumed (None: a new session).
        self.resumed_from: str | None = None
        self.closed: CloseConnection | None = None
        self._base_audio = b""  # what the resumed session had consumed
        self._audio: list[bytes] = []  # input audio received on this connection
        self.audio_stream_ends = 0
        self.activity: list[str] = []  # "start" / "end", in order
        self.texts: list[str] = []
        self.tool_responses: list[dict[str, Any]] = []
        self.client_contents: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # every server message, decoded

    # ------------------------------------------------------------- reading

    @property
    def connection_audio(self) -> np.ndarray:
        """The input audio received on this connection, int16 ``(samples, 1)``."""
        return _pcm(b"".join(self._audio))

    @property
    def session_audio(self) -> np.ndarray:
        """The session's whole input audio: what a resumed session had consumed,
        then this connection's."""
        return _pcm(self._base_audio + b"".join(self._audio))

    @property
    def user_turns(self) -> list[UserTurn]:
        """The user turns the service took by itself, in order."""
        return [] if self.auto is None else list(self.auto.turns)

    @property
    def next_wakeup(self) -> float | None:
        """When a paced message falls due (None: nothing waits)."""
        return None if self.auto is None or self.closed is not None else self.auto.next_wakeup

    def advance_to(self, now: float) -> list[Outgoing]:
        """The paced messages due by ``now`` (the owner's clock, as given to
        :meth:`receive`)."""
        if self.auto is None or self.closed is not None:
            return []
        return self._turn_messages(self.auto.advance_to(now))

    def _turn_messages(self, messages: list[dict[str, Any]]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for m in messages:
            out += self.resumption_update() if m is RESUMPTION_UPDATE else self._encode(m)
        return out

    def receive(self, data: str | bytes, *, now: float = 0.0) -> list[Outgoing]:
        """Read one client message; returns what the service sends in answer.

        ``now`` is the owner's clock (seconds), for paced turns."""
        if self.closed is not None:
            return []
        self._now = now
        self._turn_out = []
        index = len(self.records)
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return self._reject(index, None, "not JSON")
        if not isinstance(obj, dict) or len(obj) != 1:
            return self._reject(index, None, "not an object with exactly one message field")
        ((kind, body),) = obj.items()
        if self.setup is None and kind != "setup":
            return self._reject(index, obj, f"the first message must be setup, got {kind}")
        if not isinstance(body, dict):
            return self._reject(index, obj, f"{kind} is not an object")
        handler = {
            "setup": self._on_setup,
            "realtimeInput": self._on_realtime,
            "toolResponse": self._on_tool_response,
            "clientContent": self._on_client_content,
        }.get(kind)
        if handler is None:
            return self._reject(index, obj, f"unknown client message {kind}")
        problem = handler(body)
        if problem is not None:
            return self._reject(index, obj, problem)
        self.records.append(ClientRecord(index, obj))
        if kind != "setup":
            return self._turn_messages(self._turn_out)
        if self.refuse_resumption and (body.get("sessionResumption") or {}).get("handle"):
            self.closed = CloseConnection(1011, "The session could not be resumed.")
            return [self.closed]
        if self.turns is not None:
            self.auto = AutoTurns(self.turns, body, self.sessions.next_transcript)
        return self._encode(self._setup_complete())

    def _reject(self, index: int, obj: dict[str, Any] | None, problem: str) -> list[Outgoing]:
        self.records.append(ClientRecord(index, obj, problem))
        self.closed = CloseConnection(1007, f"Request contains an invalid argument: {problem}")
        return [self.closed]

    def _on_setup(self, body: dict[str, Any]) -> str | None:
        if self.setup is not None:
            return "a second setup"
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith("models/"):
            return "setup.model must be models/NAME"
        self.setup = body
        handle = (body.get("sessionResumption") or {}).get("handle")
        if isinstance(handle, str) and handle in self.sessions.by_handle:
            self.resumed_from = handle
            self._base_audio = self.sessions.by_handle[handle].audio
        return None

    def _setup_complete(self) -> dict[str, Any]:
        return {"setupComplete": {}}

    def _on_realtime(self, body: dict[str, Any]) -> str | None:
        if len(body) != 1:
            return "realtimeInput carries exactly one of audio, text, activity, streamEnd"
        ((kind, value),) = body.items()
        if kind == "audio":
            if not isinstance(value, dict) or value.get("mimeType") != _MIME:
                return f"audio must be {_MIME}"
            try:
                raw = base64.b64decode(value.get("data", ""), validate=True)
            except (binascii.Error, ValueError, TypeError):
                return "audio data is not base64"
            if len(raw) % 2:
                return "audio is not whole 16-bit samples"
            self._audio.append(raw)
            if self.auto is not None:
                self._turn_out += self.auto.audio(_pcm(raw).reshape(-1), self._now)
        elif kind == "audioStreamEnd" and value is True:
            self.audio_stream_ends += 1
            if self.auto is not None:
                self._turn_out += self.auto.stream_end(self._now)
        elif kind in ("activityStart", "activityEnd") and value == {}:
            manual = ((self.setup or {}).get("realtimeInputConfig") or {}).get(
                "automaticActivityDetection", {}
            ).get("disabled") is True
            if not manual:
                return f"{kind} needs automatic activity detection disabled"
            self.activity.append(kind[len("activity") :].lower())
            if self.auto is not None:
                auto = self.auto
                marked = auto.activity_start if kind == "activityStart" else auto.activity_end
                self._turn_out += marked(self._now)
        elif kind == "text" and isinstance(value, str):
            self.texts.append(value)
        else:
            return f"bad realtimeInput.{kind}"
        return None

    def _on_tool_response(self, body: dict[str, Any]) -> str | None:
        responses = body.get("functionResponses")
        if not isinstance(responses, list) or not responses:
            return "toolResponse needs functionResponses"
        for r in responses:
            if not isinstance(r, dict) or not isinstance(r.get("id"), str):
                return "a function response needs an id"
            self.tool_responses.append(r)
        return None

    def _on_client_content(self, body: dict[str, Any]) -> str | None:
        self.client_contents.append(body)
        return None

    # ------------------------------------------------------------- scripting

    def _encode(self, *messages: dict[str, Any]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for m in messages:
            self.sent.append(m)
            text = json.dumps(m, separators=(",", ":"))
            out.append(text.encode("utf-8") if self.binary else text)
        return out

    def send(self, *messages: dict[str, Any]) -> list[Outgoing]:
        """Any server messages, as given."""
        return self._encode(*messages)

    def transcribe(self, pieces: Sequence[str], *, finished: bool = False) -> list[Outgoing]:
        """The user's speech transcribed, one ``inputTranscription`` per piece."""
        msgs: list[dict[str, Any]] = [
            {"serverContent": {"inputTranscription": {"text": p}}} for p in pieces
        ]
        if finished and msgs:
            msgs[-1]["serverContent"]["inputTranscription"]["finished"] = True
        return self._encode(*msgs)

    def reply(
        self,
        audio: np.ndarray | None = None,
        transcript: Sequence[str] = (),
        *,
        chunk_samples: int = 2400,
        complete: bool = True,
    ) -> list[Outgoing]:
        """A model turn: 24 kHz ``audio`` in chunks interleaved with the transcript
        pieces, then (``complete``) ``generationComplete`` and ``turnComplete``."""
        msgs: list[dict[str, Any]] = []
        chunks = [] if audio is None else _chunks(audio, chunk_samples)
        for i in range(max(len(chunks), len(transcript))):
            content: dict[str, Any] = {}
            if i < len(chunks):
                data = base64.b64encode(chunks[i]).decode("ascii")
                content["modelTurn"] = {
                    "parts": [{"inlineData": {"mimeType": _REPLY_MIME, "data": data}}]
                }
            if i < len(transcript):
                content["outputTranscription"] = {"text": transcript[i]}
            msgs.append({"serverContent": content})
        if complete:
            msgs.append({"serverContent": {"generationComplete": True}})
            msgs.append(
                {
                    "serverContent": {"turnComplete": True},
                    "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 20},
                }
            )
        return self._encode(*msgs)

    def interrupt(self) -> list[Outgoing]:
        """The user barged in: ``interrupted``."""
        return self._encode({"serverContent": {"interrupted": True}})

    def turn_complete(self) -> list[Outgoing]:
        return self._encode({"serverContent": {"turnComplete": True}})

    def go_away(self, time_left_s: float) -> list[Outgoing]:
        """``goAway`` with ``timeLeft`` as a protobuf duration."""
        return self._encode({"goAway": {"timeLeft": f"{time_left_s:g}s"}})

    def resumption_update(self, *, resumable: bool = True) -> list[Outgoing]:
        """A ``sessionResumptionUpdate``: when resumable, the session so far (every
        message received is consumed) under a new handle, with the index of the last
        client message; else an empty handle, as while the model is generating."""
        last = len(self.records) - 1
        if not resumable:
            update: dict[str, Any] = {"resumable": False, "newHandle": ""}
        else:
            state = SessionState(bytes(self.session_audio.tobytes()), self.setup or {})
            update = {"newHandle": self.sessions.new_handle(state), "resumable": True}
        if (self.setup or {}).get("sessionResumption", {}).get("transparent"):
            update["lastConsumedClientMessageIndex"] = last
        return self._encode({"sessionResumptionUpdate": update})

    def tool_call(self, name: str, args: Mapping[str, Any], call_id: str) -> list[Outgoing]:
        return self._encode(
            {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": dict(args)}]}}
        )

    def cancel_tool_calls(self, call_ids: Sequence[str]) -> list[Outgoing]:
        return self._encode({"toolCallCancellation": {"ids": list(call_ids)}})


def _pcm(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i2").astype(np.int16).reshape(-1, 1)


def _chunks(audio: np.ndarray, n: int) -> list[bytes]:
    pcm = np.ascontiguousarray(audio, dtype="<i2").reshape(-1)
    return [pcm[i : i + n].tobytes() for i in range(0, pcm.shape[0], n)]
