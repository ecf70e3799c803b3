"""A loopback OpenAI Realtime (GA) server on 127.0.0.1, for tests and demos.

It speaks the real websocket protocol, so a session (or any websocket client) talks
to it exactly as it would to the service::

    async with open_openai_loopback() as server:
        provider = OpenAIRealtime(model="gpt-realtime", api_key="test",
                                  base_url=server.url)
        ...
        assert all(record.valid for record in server.connections[0].events)

What it does for every connection:

* answers the handshake (or rejects it: a scripted status, a wrong API key, a wrong
  path, no ``?model=``, or the retired ``OpenAI-Beta`` header), then sends
  ``session.created``;
* records every client event in order (:class:`ClientEventRecord`) and validates it:
  with the ``openai`` package's own models when it is installed (unknown fields are
  rejected too), and always with voxtrio's structural checks (e.g. the audio of an
  append must be base64 of whole 16-bit samples). An invalid event is recorded as
  such and answered with an ``error`` event; the server never crashes on input;
* keeps the decoded input audio per connection (:attr:`LoopbackConnection.audio`);
* acts like a small provider: ``session.update`` -> ``session.updated``; a built-in
  energy-threshold VAD (when the session's turn detection is on) turns speech in the
  audio into ``speech_started``/``speech_stopped``, a commit, a canned input
  transcription and, when the session asks for it, a canned reply (a 24 kHz tone
  plus its transcript); ``commit``, ``clear``, ``conversation.item.create``,
  ``.truncate``, ``response.create`` and ``response.cancel`` are answered as the
  service would;
* can be scripted (:class:`ConnectionScript`, one per connection in order): send
  events (or malformed JSON, binary frames, unknown types) after the N-th client
  message, drop the TCP connection or close it after N client messages, stall
  (stop reading), reject the handshake; and at any moment from the test with
  :meth:`LoopbackConnection.send_event`, :meth:`~LoopbackConnection.drop`,
  :meth:`~LoopbackConnection.close`, :meth:`~LoopbackConnection.stall`.

Every event the server sends validates against the ``openai`` server-event models.

Two ways to end a connection, with different guarantees:

* :meth:`LoopbackConnection.drop` closes the TCP stream at once, like a network
  failure: whatever the client had already sent but the server had not read is lost.
* :meth:`LoopbackConnection.close` sends a websocket close frame and goes on reading
  (and recording) until the client's close reply, so every message the client sent
  before it saw the close is recorded: nothing is lost.

The websocket layer is wsproto driven directly over a trio TCP listener (rather
than trio-websocket's server) so that the server owns the TCP stream: that is what
makes a true drop, a stall at the socket, and a close that loses nothing possible.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import math
import typing
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import attrs
import numpy as np
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = [
    "ClientEventRecord",
    "ConnectionScript",
    "EnergyVad",
    "LoopbackClosedError",
    "LoopbackConnection",
    "OpenAILoopback",
    "Outgoing",
    "open_openai_loopback",
    "openai_oracle_available",
    "transcription_completed_event",
    "validate_client_event",
    "validate_server_event",
]

RATE: Final = 24_000
_SAMPLES_PER_MS: Final = RATE // 1000
_MIN_COMMIT_MS: Final = 100

#: Something the server can be told to send: an event (a mapping; ``event_id`` is
#: filled in when missing), raw text (sent as is: malformed JSON, say), or bytes
#: (a binary frame).
Outgoing: TypeAlias = Mapping[str, Any] | str | bytes

_DEFAULT_TURN_DETECTION: Final[dict[str, Any]] = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "create_response": True,
    "interrupt_response": True,
}


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# =========================================================================== validation


class _Oracle:
    """The ``openai`` package's client and server event models, by event type."""

    def __init__(self) -> None:
        from openai.types.realtime import realtime_client_event, realtime_server_event

        self.client = self._by_type(realtime_client_event.RealtimeClientEvent)
        self.server = self._by_type(realtime_server_event.RealtimeServerEvent)

    @staticmethod
    def _by_type(union: Any) -> dict[str, Any]:
        # RealtimeXEvent = Annotated[Union[...], discriminator]; map each member's
        # literal ``type`` to the member, so errors name one model, not eleven.
        members = typing.get_args(typing.get_args(union)[0])
        out: dict[str, Any] = {}
        for model in members:
            for name in typing.get_args(model.model_fields["type"].annotation):
                out[name] = model
        return out

    def check(self, models: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
        from pydantic import ValidationError

        model = models.get(event["type"])
        if model is None:
            return f"unknown event type {event['type']!r}"
        try:
            parsed = model.model_validate(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return f"{where}: {first['msg']}"
        return _extra_fields(parsed, event["type"])


def _extra_fields(value: Any, path: str) -> str | None:
    """The first field the models do not define (they accept extras silently)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        if value.model_extra:
            return f"unexpected field {path}.{next(iter(value.model_extra))}"
        for name in value.model_fields_set:
            found = _extra_fields(getattr(value, name), f"{path}.{name}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _extra_fields(item, f"{path}[{i}]")
            if found:
                return found
    return None


_oracle: _Oracle | None = None
_oracle_missing = False


def _get_oracle() -> _Oracle | None:
    global _oracle, _oracle_missing
    if _oracle is None and not _oracle_missing:
        try:
            _oracle = _Oracle()
        except ImportError:
            _oracle_missing = True
    return _oracle


def openai_oracle_available() -> bool:
    """Whether the ``openai`` package's models are there to validate against."""
    return _get_oracle() is not None


_CLIENT_TYPES: Final = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "output_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
    }
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ms_or(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def _structural_problem(event: object) -> str | None:
    """voxtrio's own checks of a client event: the shape the codec must produce and
    the rules the ``openai`` models do not state (valid base64 of whole samples)."""
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    kind = event.get("type")
    if not isinstance(kind, str):
        return "the event has no string 'type'"
    if kind not in _CLIENT_TYPES:
        return f"unknown event type {_excerpt(kind, 80)!r}"
    if "event_id" in event and not isinstance(event["event_id"], str):
        return "event_id must be a string"
    if kind == "session.update":
        session = event.get("session")
        if not isinstance(session, dict):
            return "session.update needs a 'session' object"
        if session.get("type") not in ("realtime", "transcription"):
            return "session.type must be 'realtime' or 'transcription'"
        audio = session.get("audio")
        if audio is not None:
            if not isinstance(audio, dict):
                return "session.audio must be an object"
            for side in ("input", "output"):
                part = audio.get(side)
                if part is None:
                    continue
                if not isinstance(part, dict):
                    return f"session.audio.{side} must be an object"
                fmt = part.get("format")
                if (
                    isinstance(fmt, dict)
                    and fmt.get("type") == "audio/pcm"
                    and fmt.get("rate", RATE) != RATE
                ):
                    return f"session.audio.{side}.format.rate must be {RATE}"
    elif kind == "input_audio_buffer.append":
        audio = event.get("audio")
        if not isinstance(audio, str):
            return "input_audio_buffer.append needs an 'audio' string"
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            return "audio is not valid base64"
        if len(raw) % 2:
            return f"audio of {len(raw)} bytes is not whole 16-bit samples"
    elif kind == "conversation.item.create":
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            return "conversation.item.create needs an 'item' object with a type"
    elif kind == "conversation.item.truncate":
        if not isinstance(event.get("item_id"), str):
            return "truncate needs an item_id string"
        for key in ("content_index", "audio_end_ms"):
            if not _is_int(event.get(key)) or event[key] < 0:
                return f"truncate needs {key} as an int >= 0"
    elif kind in ("conversation.item.delete", "conversation.item.retrieve"):
        if not isinstance(event.get("item_id"), str):
            return f"{kind} needs an item_id string"
    elif kind == "response.create":
        if event.get("response") is not None and not isinstance(event["response"], dict):
            return "response.create's 'response' must be an object"
    elif (
        kind == "response.cancel"
        and event.get("response_id") is not None
        and not isinstance(event["response_id"], str)
    ):
        return "response_id must be a string"
    return None


def validate_client_event(event: object) -> str | None:
    """Why ``event`` (a parsed client event) is invalid, or None if it is valid.

    Always applies voxtrio's structural checks; also validates against the
    ``openai`` package's models when it is installed, rejecting unknown fields.
    """
    problem = _structural_problem(event)
    if problem is None:
        oracle = _get_oracle()
        if oracle is not None:
            assert isinstance(event, dict)
            problem = oracle.check(oracle.client, event)
    return problem


def validate_server_event(event: object) -> str | None:
    """Why ``event`` (a parsed server event) does not match the ``openai`` server
    event models, or None. Without the ``openai`` package only the envelope
    (an object with a string ``type`` and ``event_id``) is checked."""
    if not isinstance(event, dict):
        return "an event must be a JSON object"
    if not isinstance(event.get("type"), str) or not isinstance(event.get("event_id"), str):
        return "a server event needs string 'type' and 'event_id'"
    oracle = _get_oracle()
    return None if oracle is None else oracle.check(oracle.server, event)


# =========================================================================== the VAD


class EnergyVad:
    """A simple voice activity detector: RMS energy over 10 ms blocks.

    Speech starts at the first block at or above ``rms_threshold`` (reported
    ``prefix_padding_ms`` earlier, not before 0) and stops once
    ``silence_duration_ms`` of blocks below it followed (reported at the end of that
    silence, as the service does). Pure and chunking-invariant: the events do not
    depend on how the audio is split across :meth:`push` calls.
    """

    def __init__(
        self,
        *,
        rms_threshold: float = 500.0,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        block_ms: int = 10,
    ) -> None:
        if not rms_threshold > 0 or not math.isfinite(rms_threshold):
            raise ValueError(f"rms_threshold must be > 0, got {rms_threshold!r}")
        if prefix_padding_ms < 0 or silence_duration_ms < 0 or block_ms < 1:
            raise ValueError("padding and silence must be >= 0 ms, blocks >= 1 ms")
        self.rms_threshold = float(rms_threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self._block = block_ms * _SAMPLES_PER_MS
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed in whole blocks
        self.speaking = False
        self._silence = 0

    def reset(self) -> None:
        """Forget speech in progress (after a clear or a manual commit); time goes on."""
        self.speaking = False
        self._silence = 0

    def push(self, pcm: np.ndarray) -> list[tuple[Literal["start", "stop"], int]]:
        """Feed mono int16 samples; returns ``("start", audio_start_ms)`` and
        ``("stop", audio_end_ms)`` events, in order."""
        data = np.concatenate((self._pending, np.asarray(pcm, dtype=np.int16).reshape(-1)))
        whole = len(data) - len(data) % self._block
        self._pending = data[whole:]
        out: list[tuple[Literal["start", "stop"], int]] = []
        if not whole:
            return out
        blocks = data[:whole].reshape(-1, self._block).astype(np.float64)
        loud = np.sqrt(np.mean(blocks * blocks, axis=1)) >= self.rms_threshold
        silence_needed = self.silence_duration_ms * _SAMPLES_PER_MS
        for is_loud in loud.tolist():
            start = self.position
            self.position += self._block
            if not self.speaking:
                if is_loud:
                    self.speaking = True
                    self._silence = 0
                    ms = max(0, start // _SAMPLES_PER_MS - self.prefix_padding_ms)
                    out.append(("start", ms))
            elif is_loud:
                self._silence = 0
            else:
                self._silence += self._block
                if self._silence >= silence_needed:
                    self.speaking = False
                    out.append(("stop", self.position // _SAMPLES_PER_MS))
        return out


# =========================================================================== scripting


@attrs.frozen
class ConnectionScript:
    """How the server treats one connection (connections take scripts in order).

    Attributes:
        reject_status: reject the handshake with this HTTP status (e.g. 401, 403).
        send_after: ``(n, outgoing)`` pairs: send ``outgoing`` right after the n-th
            client message has been handled (n = 0: right after ``session.created``).
        drop_after: drop the TCP connection (no close frame) after this many client
            messages.
        close_after: send a close frame with ``close_code`` after this many client
            messages (nothing the client sent before it saw the close is lost).
        close_code: the close code for ``close_after``.
        stall_after: stop reading after this many client messages (until
            :meth:`LoopbackConnection.resume`).
        vad: run the energy VAD when the session's turn detection is on.
        vad_rms_threshold: int16 RMS that counts as speech.
        transcripts: canned input transcripts, used in turn across the server
            (default ``"loopback utterance N"``).
        transcript_deltas: send transcription deltas (one per word) before
            ``completed``.
        reply_text: the transcript (or text) of canned replies.
        reply_ms: length of the reply tone.
        reply_tone_hz: its pitch.
        reply_chunk_ms: audio per ``response.output_audio.delta``.
        pace_replies: send reply audio in real time (``trio.sleep`` per chunk), so
            a reply can be cancelled or interrupted while it plays.
    """

    reject_status: int | None = None
    send_after: tuple[tuple[int, Outgoing], ...] = ()
    drop_after: int | None = None
    close_after: int | None = None
    close_code: int = 1011
    stall_after: int | None = None
    vad: bool = True
    vad_rms_threshold: float = 500.0
    transcripts: tuple[str, ...] = ()
    transcript_deltas: bool = True
    reply_text: str = "Hello from the loopback provider."
    reply_ms: int = 400
    reply_tone_hz: float = 440.0
    reply_chunk_ms: int = 100
    pace_replies: bool = False

    def __attrs_post_init__(self) -> None:
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            raise ValueError(f"reject_status must be a 4xx/5xx status, got {self.reject_status}")
        for name in ("drop_after", "close_after", "stall_after"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.reply_ms < 0 or self.reply_chunk_ms < 1:
            raise ValueError("reply_ms must be >= 0 and reply_chunk_ms >= 1")
        for n, _ in self.send_after:
            if not _is_int(n) or n < 0:
                raise ValueError(f"send_after counts must be ints >= 0, got {n!r}")


@attrs.frozen
class ClientEventRecord:
    """One message a client sent, as the server saw it.

    Attributes:
        index: its position on the connection (0-based).
        type: the event type, when it had one.
        event: the parsed JSON object (None for non-JSON, non-object or binary).
        valid: whether it validated (see :func:`validate_client_event`).
        problem: why it is invalid.
        size: its size in characters (text) or bytes (binary).
        binary: it came in a binary frame.
    """

    index: int
    type: str | None
    event: dict[str, Any] | None = attrs.field(repr=False)
    valid: bool
    problem: str | None
    size: int
    binary: bool = False


class LoopbackClosedError(RuntimeError):
    """The connection is closed: nothing can be sent on it."""


_CloseKind: TypeAlias = Literal["client", "server", "dropped", "network", "shutdown"]


class LoopbackConnection:
    """One client connection to the loopback server, and the handle to script it.

    Attributes:
        index: 0-based, in handshake order (rejected handshakes count).
        path: the request path, query included.
        model: the ``model`` query parameter.
        rejected_status: the HTTP status the handshake was rejected with, if it was.
        events: every client message, in order.
        sent: every message the server sent, in order (text or bytes).
        session: the effective session configuration.
        instructions: the ``instructions`` of each ``session.update`` that set them.
        close_code: the websocket close code, once closed (1006: no close frame).
        closed_by: ``client``, ``server``, ``dropped``, ``network`` or ``shutdown``.
        closed: set once the connection is over.
    """

    def __init__(
        self,
        server: OpenAILoopback,
        index: int,
        script: ConnectionScript,
        request: Request | None,
    ) -> None:
        self.server = server
        self.index = index
        self.script = script
        self.path = request.target if request is not None else ""
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.model: str | None = query.get("model", [None])[0]
        self._headers: list[tuple[bytes, bytes]] = (
            list(request.extra_headers) if request is not None else []
        )
        self.rejected_status: int | None = None
        self.events: list[ClientEventRecord] = []
        self.sent: list[str | bytes] = []
        self.session: dict[str, Any] = _default_session(self.model)
        self.instructions: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed_by: _CloseKind | None = None
        self.closed = trio.Event()
        self._done = trio.Event()  # the TCP stream is closed
        self._audio: list[np.ndarray] = []
        self._audio_samples = 0
        self._ws: wsproto.WSConnection | None = None
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._readable = trio.Event()
        self._readable.set()
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        # the simulated provider
        self._event_ids = itertools.count(1)
        self._vad: EnergyVad | None = None
        self._buffer_samples = 0  # appended since the last commit / clear / turn
        self._speech_item: str | None = None
        self._last_item: str | None = None
        self._items: dict[str, dict[str, Any]] = {}
        self._assistant_audio_ms: dict[str, int] = {}
        self._active: _ActiveReply | None = None
        self._configure_vad()

    def __repr__(self) -> str:
        return (
            f"LoopbackConnection(index={self.index}, events={len(self.events)}, "
            f"audio_samples={self._audio_samples}, closed_by={self.closed_by!r})"
        )

    # ------------------------------------------------------------- reading state

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header the client sent (it holds a key: never log it)."""
        return self.header("authorization")

    def header(self, name: str) -> str | None:
        """A request header by case-insensitive name."""
        wanted = name.lower().encode("ascii")
        for key, value in self._headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    @property
    def audio(self) -> np.ndarray:
        """All input audio received on this connection: int16 ``(samples, 1)``."""
        if not self._audio:
            return np.zeros((0, 1), dtype=np.int16)
        return np.concatenate(self._audio).reshape(-1, 1)

    @property
    def audio_samples(self) -> int:
        return self._audio_samples

    @property
    def invalid_events(self) -> list[ClientEventRecord]:
        return [r for r in self.events if not r.valid]

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The parsed client events of type ``kind``, in order."""
        return [r.event for r in self.events if r.type == kind and r.event is not None]

    @property
    def is_open(self) -> bool:
        return self._ws is not None and self._ws.state is ConnectionState.OPEN

    async def wait_for_messages(self, n: int) -> None:
        """Wait until ``n`` client messages were received (or the connection ended)."""
        await self.server.wait_until(lambda: len(self.events) >= n or self.closed.is_set())

    async def wait_for_event(self, kind: str, count: int = 1) -> dict[str, Any]:
        """Wait for the ``count``-th client event of type ``kind`` and return it.

        Raises:
            LoopbackClosedError: the connection ended first.
        """
        await self.server.wait_until(
            lambda: len(self.events_of(kind)) >= count or self.closed.is_set()
        )
        found = self.events_of(kind)
        if len(found) < count:
            raise LoopbackClosedError(
                f"connection {self.index} closed after {len(found)} {kind} event(s)"
            )
        return found[count - 1]

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # ------------------------------------------------------------- scripting

    async def send_event(self, event: Outgoing) -> None:
        """Send an event (``event_id`` filled in if missing), raw text, or bytes.

        Raises:
            LoopbackClosedError: the connection is not open.
        """
        if not await self._send(event):
            raise LoopbackClosedError(f"connection {self.index} is not open")

    async def send_error(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        event_id: str | None = None,
    ) -> None:
        """Send an ``error`` event."""
        await self.send_event(_error_event(message, code, error_type, event_id))

    async def send_transcript(
        self, transcript: str, *, item_id: str | None = None, deltas: bool = False
    ) -> str:
        """Send a completed input transcription (optionally its deltas first) for
        ``item_id`` (a new item id when None); returns the item id."""
        item_id = item_id or self.server._new_id("item")
        if deltas:
            for piece in _words(transcript):
                await self.send_event(
                    {
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id,
                        "content_index": 0,
                        "delta": piece,
                    }
                )
        await self.send_event(transcription_completed_event(item_id, transcript))
        return item_id

    async def send_reply(self, text: str | None = None, *, audio: np.ndarray | None = None) -> str:
        """Send a whole reply: ``response.created`` ... ``response.done``, with
        ``audio`` (int16 mono at 24 kHz; default: the script's tone) and ``text``
        as its transcript. Returns the response id."""
        response_id = self.server._new_id("resp")
        pcm = self._reply_audio() if audio is None else np.asarray(audio, dtype=np.int16)
        reply = _ActiveReply(
            response_id, self.server._new_id("item"), paced=self.script.pace_replies
        )
        await self._run_reply(reply, self.script.reply_text if text is None else text, pcm)
        return response_id

    async def drop(self) -> None:
        """Close the TCP connection now, without a close frame (like a network
        failure). Whatever the client sent that was not read yet is lost."""
        if self.closed.is_set():
            return
        self._finish("dropped", 1006, "dropped by the loopback server")
        self._scope.cancel()
        await self._done.wait()

    async def close(
        self, code: int = 1011, reason: str = "loopback close", *, timeout_s: float = 5.0
    ) -> None:
        """Send a close frame and record everything the client sends until its close
        reply (nothing is lost); returns once the connection is over. A client that
        does not reply within ``timeout_s`` is dropped."""
        await self._start_close(code, reason)
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        if not self._done.is_set():
            self._finish("dropped", 1006, "no close reply: dropped")
            self._scope.cancel()
            await self._done.wait()

    def stall(self) -> None:
        """Stop reading: the client's messages pile up in the socket buffers."""
        if self._readable.is_set():
            self._readable = trio.Event()

    def resume(self) -> None:
        """Read again after :meth:`stall`."""
        self._readable.set()

    # ------------------------------------------------------------- transport

    async def _send(self, out: Outgoing) -> bool:
        if isinstance(out, Mapping):
            event = dict(out)
            event.setdefault("event_id", f"event_{self.index}_{next(self._event_ids)}")
            data: str | bytes = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        elif isinstance(out, str | bytes):
            data = out
        else:
            raise TypeError(f"cannot send a {type(out).__name__}")
        async with self._send_lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return False
            frame = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
            payload = ws.send(frame)
            self.sent.append(data)
            try:
                await stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._finish("network", 1006, "send failed")
                return False
        return True

    async def _start_close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return
            payload = ws.send(CloseConnection(code=code, reason=reason))
            self.close_code, self.close_reason = code, reason
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(payload)
        self.server._changed()

    def _finish(self, by: _CloseKind, code: int | None, reason: str | None) -> None:
        if self.closed.is_set():
            return
        self.closed_by = by
        if self.close_code is None or by in ("dropped", "network"):
            self.close_code, self.close_reason = code, reason
        self.closed.set()
        self.server._changed()

    async def _serve(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        """Run the accepted connection until it closes, is dropped or cancelled."""
        self._ws, self._stream = ws, stream
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await self._send(_session_event("session.created", self.session))
                    await self._after_message(0)
                    await self._read_loop(ws, stream)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                if self.server._shutting_down and ws.state is ConnectionState.OPEN:
                    with trio.move_on_after(0.5):
                        await self._start_close(1001, "loopback server shutting down")
                    self._finish("shutdown", 1001, "loopback server shutting down")
                await trio.aclose_forcefully(stream)
                self._finish("network", 1006, "connection ended")
                self._done.set()

    async def _read_loop(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        parts: list[str | bytes] = []
        size = 0
        limit = self.server.max_message_bytes
        while True:
            await self._readable.wait()
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._finish("network", 1006, "connection lost")
                return
            if not data:
                self._finish("network", 1006, "the client closed TCP without a close frame")
                return
            try:
                ws.receive_data(data)
            except wsproto.utilities.RemoteProtocolError as exc:
                self._finish("network", 1002, f"websocket protocol error: {exc}")
                return
            for event in ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    piece = event.data if isinstance(event.data, str) else bytes(event.data)
                    parts.append(piece)
                    size += len(piece)
                    if size > limit:
                        await self._start_close(1009, f"message over {limit} bytes")
                        self._finish("server", 1009, "message too big")
                        return
                    if event.message_finished:
                        joined: str | bytes = (
                            "".join(typing.cast("list[str]", parts))
                            if isinstance(event, TextMessage)
                            else b"".join(typing.cast("list[bytes]", parts))
                        )
                        parts, size = [], 0
                        await self._readable.wait()  # a stall takes effect between messages
                        await self._on_message(joined)
                        if self._scope.cancel_called:
                            return
                elif isinstance(event, Ping):
                    async with self._send_lock:
                        with contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError
                        ):
                            await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:  # the client closed
                        async with self._send_lock:
                            with contextlib.suppress(
                                trio.BrokenResourceError, trio.ClosedResourceError
                            ):
                                await stream.send_all(ws.send(event.response()))
                        self.close_code, self.close_reason = event.code, event.reason
                        self._finish("client", event.code, event.reason)
                    else:  # the reply to our close
                        self._finish("server", self.close_code, self.close_reason)
                    return

    # ------------------------------------------------------------- the provider

    async def _on_message(self, data: str | bytes) -> None:
        index = len(self.events)
        if isinstance(data, bytes):
            record = ClientEventRecord(
                index,
                None,
                None,
                False,
                "binary frames are not part of the protocol",
                len(data),
                binary=True,
            )
            event: dict[str, Any] | None = None
        else:
            try:
                parsed = json.loads(data)
            except (ValueError, RecursionError):
                parsed = _NOT_JSON
            if parsed is _NOT_JSON:
                problem: str | None = "not valid JSON"
                event = None
            else:
                event = parsed if isinstance(parsed, dict) else None
                problem = validate_client_event(parsed)
            kind = event.get("type") if event is not None else None
            record = ClientEventRecord(
                index,
                kind if isinstance(kind, str) else None,
                event,
                problem is None,
                problem,
                len(data),
            )
        self.events.append(record)
        self.server._changed()
        if not record.valid:
            client_id = event.get("event_id") if event is not None else None
            await self._send(
                _error_event(
                    f"Invalid client event: {record.problem}",
                    "invalid_event",
                    "invalid_request_error",
                    client_id if isinstance(client_id, str) else None,
                )
            )
        elif event is not None:
            try:
                await self._handle(event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Only reachable for odd events the checks let through (e.g. without
                # the openai oracle): report, never crash.
                self.server.internal_errors.append(f"{record.type}: {exc!r}")
                await self._send(
                    _error_event(
                        f"The loopback server could not process this event: {exc!r}",
                        "server_error",
                        "server_error",
                        None,
                    )
                )
        await self._after_message(index + 1)

    async def _after_message(self, count: int) -> None:
        script = self.script
        for n, out in script.send_after:
            if n == count:
                await self._send(out)
        if script.stall_after == count:
            self.stall()
        if script.close_after == count:
            await self._start_close(script.close_code, "scripted close")
        if script.drop_after == count:
            self._finish("dropped", 1006, "dropped by the loopback server")
            self._scope.cancel()

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        client_id = event.get("event_id")
        if kind == "session.update":
            session = event["session"]
            if session.get("type") != "realtime":
                await self._send(
                    _error_event(
                        "the loopback serves realtime sessions only",
                        "unsupported",
                        "invalid_request_error",
                        client_id,
                    )
                )
                return
            _merge(self.session, session)
            if "instructions" in session:
                self.instructions.append(str(session["instructions"]))
            self._configure_vad()
            await self._send(_session_event("session.updated", self.session))
        elif kind == "input_audio_buffer.append":
            raw = base64.b64decode(event["audio"])
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
            self._audio.append(pcm)
            self._audio_samples += len(pcm)
            self._buffer_samples += len(pcm)
            if self._vad is not None:
                for what, ms in self._vad.push(pcm):
                    if what == "start":
                        await self._speech_started(ms)
                    else:
                        await self._speech_stopped(ms)
        elif kind == "input_audio_buffer.commit":
            if self._buffer_samples < _MIN_COMMIT_MS * _SAMPLES_PER_MS:
                ms = self._buffer_samples // _SAMPLES_PER_MS
                await self._send(
                    _error_event(
                        "Error committing input audio buffer: buffer too small. Expected at "
                        f"least {_MIN_COMMIT_MS}ms of audio, but buffer only has {ms}ms of audio.",
                        "input_audio_buffer_commit_empty",
                        "invalid_request_error",
                        client_id,
                    )
                )
                return
            item_id = self._speech_item
            if item_id is not None and self._vad is not None and self._vad.speaking:
                self._vad.reset()
                await self._send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": self._audio_samples // _SAMPLES_PER_MS,
                        "item_id": item_id,
                    }
                )
            await self._commit_turn(item_id or self.server._new_id("item"), reply=False)
        elif kind == "input_audio_buffer.clear":
            self._buffer_samples = 0
            self._speech_item = None
            if self._vad is not None:
                self._vad.reset()
            await self._send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            item = dict(event["item"])
            if not isinstance(item.get("id"), str):
                item["id"] = self.server._new_id("item")
            item["object"] = "realtime.item"
            item["status"] = "completed"
            self._items[item["id"]] = item
            previous, self._last_item = self._last_item, item["id"]
            for done in ("conversation.item.added", "conversation.item.done"):
                await self._send({"type": done, "previous_item_id": previous, "item": item})
        elif kind == "conversation.item.truncate":
            await self._truncate(event, client_id)
        elif kind == "conversation.item.delete":
            if self._items.pop(event["item_id"], None) is None:
                await self._send(
                    _error_event(
                        f"no item {event['item_id']!r}",
                        "item_delete_invalid_item_id",
                        "invalid_request_error",
                        client_id,
                    )
                )
            else:
                await self._send({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        elif kind == "response.create":
            if self._active is not None and self._active.cancelled is None:
                await self._send(
                    _error_event(
                        "Conversation already has an active response in progress.",
                        "conversation_already_has_active_response",
                        "invalid_request_error",
                        client_id,
                    )
                )
                return
            await self._start_reply()
        elif kind == "response.cancel":
            active = self._active
            wanted = event.get("response_id")
            if active is None or (wanted is not None and wanted != active.response_id):
                await self._send(
                    _error_event(
                        "Cancellation failed: no active response found",
                        "response_cancel_not_active",
                        "invalid_request_error",
                        client_id,
                    )
                )
                return
            active.cancel("client_cancelled")
        # conversation.item.retrieve, output_audio_buffer.clear: nothing to say

    def _configure_vad(self) -> None:
        audio = self.session.get("audio") or {}
        detection = (audio.get("input") or {}).get("turn_detection")
        if not self.script.vad or not isinstance(detection, dict):
            self._vad = None
            return
        padding = _ms_or(detection.get("prefix_padding_ms"), 300)
        silence = _ms_or(detection.get("silence_duration_ms"), 500)
        vad = self._vad
        if vad is None or vad.prefix_padding_ms != padding or vad.silence_duration_ms != silence:
            new = EnergyVad(
                rms_threshold=self.script.vad_rms_threshold,
                prefix_padding_ms=padding,
                silence_duration_ms=silence,
            )
            if vad is not None:  # keep the clock: audio_ms counts the whole connection
                new.position = vad.position
            elif self._audio_samples:
                new.position = self._audio_samples
            self._vad = new

    def _turn_detection(self) -> dict[str, Any] | None:
        audio = self.session.get("audio") or {}
        detection = (audio.get("input") or {}).get("turn_detection")
        return detection if isinstance(detection, dict) else None

    async def _speech_started(self, ms: int) -> None:
        detection = self._turn_detection() or {}
        if self._active is not None and detection.get("interrupt_response", True):
            self._active.cancel("turn_detected")
        self._speech_item = self.server._new_id("item")
        await self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": ms,
                "item_id": self._speech_item,
            }
        )

    async def _speech_stopped(self, ms: int) -> None:
        item_id = self._speech_item or self.server._new_id("item")
        await self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": item_id}
        )
        detection = self._turn_detection() or {}
        await self._commit_turn(item_id, reply=bool(detection.get("create_response", True)))

    async def _commit_turn(self, item_id: str, *, reply: bool) -> None:
        self._buffer_samples = 0
        self._speech_item = None
        previous, self._last_item = self._last_item, item_id
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._items[item_id] = item
        await self._send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        audio = self.session.get("audio") or {}
        if (audio.get("input") or {}).get("transcription"):
            transcript = self.server._next_transcript(self.script)
            if self.script.transcript_deltas:
                for piece in _words(transcript):
                    await self._send(
                        {
                            "type": "conversation.item.input_audio_transcription.delta",
                            "item_id": item_id,
                            "content_index": 0,
                            "delta": piece,
                        }
                    )
            await self._send(transcription_completed_event(item_id, transcript))
        if reply and (self._active is None or self._active.cancelled is not None):
            await self._start_reply()

    async def _truncate(self, event: dict[str, Any], client_id: Any) -> None:
        item_id = event["item_id"]
        played = self._assistant_audio_ms.get(item_id)
        if played is None:
            await self._send(
                _error_event(
                    f"no assistant audio item {item_id!r}",
                    "item_truncate_invalid_item_id",
                    "invalid_request_error",
                    client_id,
                )
            )
        elif event["audio_end_ms"] > played:
            await self._send(
                _error_event(
                    f"audio_end_ms {event['audio_end_ms']} is past the end of the item's "
                    f"audio ({played} ms)",
                    "invalid_value",
                    "invalid_request_error",
                    client_id,
                )
            )
        else:
            await self._send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": item_id,
                    "content_index": event["content_index"],
                    "audio_end_ms": event["audio_end_ms"],
                }
            )

    # ------------------------------------------------------------- replies

    def _reply_audio(self) -> np.ndarray:
        script = self.script
        n = script.reply_ms * _SAMPLES_PER_MS
        t = np.arange(n, dtype=np.float64) / RATE
        tone = 0.25 * 32767 * np.sin(2 * np.pi * script.reply_tone_hz * t)
        return np.round(tone).astype(np.int16)

    async def _start_reply(self) -> None:
        previous = self._active
        if previous is not None and previous.cancelled is not None:
            await previous.finished.wait()  # its response.done goes out first
        reply = _ActiveReply(
            self.server._new_id("resp"),
            self.server._new_id("item"),
            paced=self.script.pace_replies,
        )
        self._active = reply
        if reply.paced and self._nursery is not None:
            self._nursery.start_soon(self._reply_task, reply)
        else:
            await self._reply_task(reply)

    async def _reply_task(self, reply: _ActiveReply) -> None:
        try:
            await self._run_reply(reply, self.script.reply_text, self._reply_audio())
        finally:
            reply.finished.set()
            if self._active is reply:
                self._active = None

    async def _run_reply(self, reply: _ActiveReply, text: str, pcm: np.ndarray) -> None:
        rid, item_id = reply.response_id, reply.item_id
        modalities = list(self.session.get("output_modalities") or ["audio"])
        audio_out = "audio" in modalities
        base = {"response_id": rid, "item_id": item_id, "output_index": 0, "content_index": 0}
        await self._send(
            {
                "type": "response.created",
                "response": {
                    "id": rid,
                    "object": "realtime.response",
                    "status": "in_progress",
                    "output": [],
                    "output_modalities": modalities,
                },
            }
        )
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": rid,
                "output_index": 0,
                "item": item,
            }
        )
        part_type = "audio" if audio_out else "text"
        await self._send(
            {
                "type": "response.content_part.added",
                **base,
                "part": {"type": part_type, **({"transcript": ""} if audio_out else {"text": ""})},
            }
        )
        words = _words(text)
        sent_words: list[str] = []
        sent_samples = 0
        chunk = self.script.reply_chunk_ms * _SAMPLES_PER_MS
        if audio_out:
            self._assistant_audio_ms[item_id] = 0
            chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [pcm[:0]]
            per_chunk = max(1, math.ceil(len(words) / len(chunks)))
            for i, piece in enumerate(chunks):
                if reply.cancelled is not None:
                    break
                if len(piece):
                    data = base64.b64encode(piece.astype("<i2").tobytes()).decode("ascii")
                    await self._send({"type": "response.output_audio.delta", **base, "delta": data})
                    sent_samples += len(piece)
                    self._assistant_audio_ms[item_id] = sent_samples // _SAMPLES_PER_MS
                for word in words[i * per_chunk : (i + 1) * per_chunk]:
                    sent_words.append(word)
                    await self._send(
                        {"type": "response.output_audio_transcript.delta", **base, "delta": word}
                    )
                if reply.paced:
                    await reply.sleep(len(piece) / RATE)
            if reply.cancelled is None:
                for word in words[len(sent_words) :]:
                    sent_words.append(word)
                    await self._send(
                        {"type": "response.output_audio_transcript.delta", **base, "delta": word}
                    )
        else:
            for word in words:
                sent_words.append(word)
                await self._send({"type": "response.output_text.delta", **base, "delta": word})
        said = "".join(sent_words)
        done_status = "completed" if reply.cancelled is None else "incomplete"
        if audio_out:
            await self._send({"type": "response.output_audio.done", **base})
            await self._send(
                {"type": "response.output_audio_transcript.done", **base, "transcript": said}
            )
            content = {"type": "output_audio", "transcript": said}
            part = {"type": "audio", "transcript": said}
        else:
            await self._send({"type": "response.output_text.done", **base, "text": said})
            content = {"type": "output_text", "text": said}
            part = {"type": "text", "text": said}
        await self._send({"type": "response.content_part.done", **base, "part": part})
        item = {**item, "status": done_status, "content": [content]}
        self._items[item_id] = item
        self._last_item = item_id
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": rid,
                "output_index": 0,
                "item": item,
            }
        )
        response: dict[str, Any] = {
            "id": rid,
            "object": "realtime.response",
            "status": "completed" if reply.cancelled is None else "cancelled",
            "output": [item],
            "output_modalities": modalities,
        }
        if reply.cancelled is not None:
            response["status_details"] = {"type": "cancelled", "reason": reply.cancelled}
        await self._send({"type": "response.done", "response": response})


_NOT_JSON: Final = object()


class _ActiveReply:
    """A reply in progress: sent at once, or paced (a task that sleeps per chunk)."""

    def __init__(self, response_id: str, item_id: str, *, paced: bool) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.paced = paced
        self.cancelled: str | None = None
        self.finished = trio.Event()
        self._wake = trio.Event()

    def cancel(self, reason: str) -> None:
        if self.cancelled is None:
            self.cancelled = reason
            self._wake.set()

    async def sleep(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._wake.wait()


# =========================================================================== the server


class OpenAILoopback:
    """The running loopback server (see :func:`open_openai_loopback`).

    Attributes:
        url: ``ws://127.0.0.1:PORT/v1/realtime`` -- pass it as the provider's base URL.
        port: the port the kernel chose.
        connections: every connection, in handshake order (rejected ones included).
        scripts: the script of each connection by index; later connections use
            ``default_script``. Both may be changed while the server runs.
        api_key: when set, a handshake without ``Authorization: Bearer <api_key>``
            is rejected with 401.
        max_message_bytes: larger client messages close the connection (1009).
        internal_errors: events the server could not process (a bug, or an odd event
            the checks let through); tests should find it empty.
    """

    PATH: Final = "/v1/realtime"

    def __init__(
        self,
        *,
        scripts: Sequence[ConnectionScript] = (),
        default_script: ConnectionScript | None = None,
        api_key: str | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        self.scripts: list[ConnectionScript] = list(scripts)
        self.default_script = default_script or ConnectionScript()
        self.api_key = api_key
        self.max_message_bytes = max_message_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.connections: list[LoopbackConnection] = []
        self.internal_errors: list[str] = []
        self.port = 0
        self._ids = itertools.count(1)
        self._utterances = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._shutting_down = False

    def __repr__(self) -> str:
        return f"OpenAILoopback(url={self.url!r}, connections={len(self.connections)})"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.PATH}"

    @property
    def audio(self) -> list[np.ndarray]:
        """The input audio received, per connection: int16 ``(samples, 1)`` arrays."""
        return [c.audio for c in self.connections]

    def all_audio(self) -> np.ndarray:
        """All input audio received, across connections, in order."""
        return np.concatenate([np.zeros((0, 1), np.int16), *self.audio])

    @property
    def accepted(self) -> list[LoopbackConnection]:
        return [c for c in self.connections if c.rejected_status is None]

    @property
    def current(self) -> LoopbackConnection:
        """The latest accepted connection.

        Raises:
            LookupError: none yet.
        """
        accepted = self.accepted
        if not accepted:
            raise LookupError("no connection accepted yet")
        return accepted[-1]

    def all_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Client events across connections, in order (of type ``kind`` if given)."""
        return [
            r.event
            for c in self.connections
            for r in c.events
            if r.event is not None and (kind is None or r.type == kind)
        ]

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is re-checked on every change (a
        connection, a message, a close)."""
        while not predicate():
            await self._lot.park()

    async def wait_for_connection(self, n: int = 1) -> LoopbackConnection:
        """Wait for the ``n``-th accepted connection and return it."""
        await self.wait_until(lambda: len(self.accepted) >= n)
        return self.accepted[n - 1]

    async def drop(self) -> None:
        """Drop the latest connection (see :meth:`LoopbackConnection.drop`)."""
        await self.current.drop()

    def _changed(self) -> None:
        self._lot.unpark_all()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def _next_transcript(self, script: ConnectionScript) -> str:
        self._utterances += 1
        if script.transcripts:
            return script.transcripts[(self._utterances - 1) % len(script.transcripts)]
        return f"loopback utterance {self._utterances}"

    def _script_for(self, index: int) -> ConnectionScript:
        return self.scripts[index] if index < len(self.scripts) else self.default_script

    def _rejection(
        self, conn: LoopbackConnection, script: ConnectionScript
    ) -> tuple[int, str, str] | None:
        if script.reject_status is not None:
            return (
                script.reject_status,
                "scripted_rejection",
                "The loopback server rejected this connection.",
            )
        if urllib.parse.urlsplit(conn.path).path != self.PATH:
            return 404, "not_found", f"Unknown path; the Realtime API lives at {self.PATH}."
        if not conn.model:
            return 400, "missing_model", "Missing required parameter: 'model'."
        if conn.header("openai-beta") is not None:
            return (
                400,
                "beta_api_retired",
                "The OpenAI-Beta realtime API is retired; use the GA API.",
            )
        if self.api_key is not None and conn.authorization != f"Bearer {self.api_key}":
            return 401, "invalid_api_key", "Incorrect API key provided."
        return None

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        request: Request | None = None
        try:
            with trio.move_on_after(self.handshake_timeout_s):
                while request is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, Request):
                            request = event
                            break
            if request is None:
                return
            index = len(self.connections)
            script = self._script_for(index)
            conn = LoopbackConnection(self, index, script, request)
            self.connections.append(conn)
            self._changed()
            rejection = self._rejection(conn, script)
            if rejection is not None:
                status, code, message = rejection
                conn.rejected_status = status
                body = json.dumps(
                    {"error": {"type": "invalid_request_error", "code": code, "message": message}}
                ).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await stream.send_all(
                    ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
                    + ws.send(RejectData(data=body, body_finished=True))
                )
                conn._finish("server", None, f"handshake rejected with {status}")
                conn._done.set()
                return
            await stream.send_all(ws.send(AcceptConnection()))
            await conn._serve(ws, stream)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            wsproto.utilities.RemoteProtocolError,
        ):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


@contextlib.asynccontextmanager
async def open_openai_loopback(
    *,
    scripts: Sequence[ConnectionScript] = (),
    default_script: ConnectionScript | None = None,
    api_key: str | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
) -> AsyncIterator[OpenAILoopback]:
    """Run a loopback OpenAI Realtime server on 127.0.0.1 (a free port).

    Args:
        scripts: one :class:`ConnectionScript` per connection, in handshake order.
        default_script: for connections beyond ``scripts`` (default: plain).
        api_key: require ``Authorization: Bearer <api_key>`` (else 401).
        max_message_bytes: the largest client message accepted.

    On exit every open connection gets a close frame (1001) and its TCP stream is
    closed; no task outlives the block.
    """
    server = OpenAILoopback(
        scripts=scripts,
        default_script=default_script,
        api_key=api_key,
        max_message_bytes=max_message_bytes,
    )
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        server.port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, server._handle, listeners)
        try:
            yield server
        finally:
            server._shutting_down = True
            nursery.cancel_scope.cancel()


# =========================================================================== events


def _default_session(model: str | None) -> dict[str, Any]:
    session: dict[str, Any] = {
        "type": "realtime",
        "instructions": "",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": None,
                "turn_detection": dict(_DEFAULT_TURN_DETECTION),
            },
            "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin"},
        },
    }
    if model:
        session["model"] = model
    return session


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Apply a ``session.update``: present fields replace, objects merge."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = json.loads(json.dumps(value))  # a deep copy of plain JSON


def _session_event(kind: str, session: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, "session": json.loads(json.dumps(session))}


def _error_event(
    message: str, code: str | None, error_type: str, event_id: str | None
) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": None,
            "event_id": event_id,
        },
    }


def transcription_completed_event(item_id: str, transcript: str) -> dict[str, Any]:
    """A valid ``conversation.item.input_audio_transcription.completed`` server event
    (for ``ConnectionScript.send_after``)."""
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": 1.0},
    }


def _words(text: str) -> list[str]:
    """``text`` cut into word pieces that concatenate back to it exactly."""
    pieces: list[str] = []
    for i, word in enumerate(text.split(" ")):
        pieces.append(word if i == 0 else " " + word)
    return [p for p in pieces if p]
