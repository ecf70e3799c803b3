"""A sans-IO fake of the OpenAI Realtime (GA) service, one connection at a time.

:class:`FakeRealtimeService` is a synchronous state machine with no socket, task or
clock. The driver hands it each whole client message (``receive``) and the time when
a paced reply has a step due (``next_wakeup``, ``advance_to``); every call returns the
outputs to carry out in order (:data:`~.scripts.ServiceOutput`: send, close, drop,
stall). It answers ``session.update``, input audio (an energy VAD makes turns with
canned transcripts and replies), commit, clear, item create/truncate/delete and
response create/cancel as the service does, and invalid events with ``error``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .conversation import Conversation
from .events import default_session, error_event, session_event, transcription_events
from .handlers import _ClientEventHandlers
from .oracle import record_client_message
from .replies import Reply
from .scripts import (
    ClientEventRecord,
    Close,
    ConnectionScript,
    Drop,
    Outgoing,
    Send,
    ServiceOutput,
    SharedCounters,
    Stall,
)
from .vad import InputAudio

__all__ = ["FakeRealtimeService", "SharedCounters"]


class FakeRealtimeService(_ClientEventHandlers):
    """One connection to the fake service (see the module docstring).

    Args:
        intent: ``"transcription"`` (the ``?intent=`` of the URL): a transcription
            session (``session.type: "transcription"``), which transcribes turns and
            never replies; else a realtime session.
        created_at: the session's creation time in Unix seconds, for its
            ``expires_at`` (``created_at + script.session_lifetime_s``); default: the
            wall clock, read once here.

    Attributes:
        script: how this connection behaves.
        index: the connection's index on its server (it goes into event ids).
        events: every client message, in order.
        session: the effective session configuration (with ``id``, ``object`` and
            ``expires_at``, as the service reports it).
        instructions: the ``instructions`` of each ``session.update`` that set them.
        response_instructions: the ``instructions`` of each ``response.create`` that
            gave its own (they replace the session's for that response).
        now: the latest time the driver gave (seconds, any origin).
    """

    def __init__(
        self,
        script: ConnectionScript | None = None,
        *,
        model: str | None = "gpt-realtime",
        index: int = 0,
        shared: SharedCounters | None = None,
        now: float = 0.0,
        intent: str | None = None,
        created_at: float | None = None,
    ) -> None:
        self.script = script or ConnectionScript()
        self.index = index
        self.shared = shared or SharedCounters()
        self.now = now
        self.events: list[ClientEventRecord] = []
        self.created_at = time.time() if created_at is None else created_at
        self.session: dict[str, Any] = default_session(
            model,
            session_type="transcription" if intent == "transcription" else "realtime",
            session_id=self.shared.new_id("sess"),
            expires_at=int(self.created_at + self.script.session_lifetime_s),
        )
        self.instructions: list[str] = []
        self.response_instructions: list[str] = []
        self._out: list[ServiceOutput] = []
        self._event_ids = itertools.count(1)
        self._input = InputAudio()
        self._speech_item: str | None = None
        self._transcription: list[dict[str, Any]] = []
        self._conversation = Conversation(self.shared.new_id("conv"))
        self._assistant_audio_ms: dict[str, int] = {}
        self._active: Reply | None = None  # the reply response.cancel would cancel
        self._replies: list[Reply] = []  # every reply still running (paced)
        self._calls = [c for c in self.script.tool_calls if c.after is None]
        self.tool_outputs: list[tuple[str, str]] = []  # (name, output) not yet answered
        self._call_names: dict[str, str] = {}
        self._configure_vad()

    def __repr__(self) -> str:
        return (
            f"FakeRealtimeService(index={self.index}, events={len(self.events)}, "
            f"audio_samples={self._input.samples})"
        )

    # ------------------------------------------------------------- reading state

    @property
    def audio(self) -> np.ndarray:
        """All input audio received: int16 ``(samples, 1)``."""
        return self._input.pcm

    @property
    def wire_audio(self) -> bytes:
        """Every appended byte exactly as it arrived (PCM, or G.711 codes for an
        ``audio/pcmu``/``audio/pcma`` session), in order."""
        return b"".join(self._input.wire)

    @property
    def audio_samples(self) -> int:
        return self._input.samples

    @property
    def invalid_events(self) -> list[ClientEventRecord]:
        return [r for r in self.events if not r.valid]

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The parsed client events of type ``kind``, in order."""
        return [r.event for r in self.events if r.type == kind and r.event is not None]

    @property
    def next_wakeup(self) -> float | None:
        """When :meth:`advance_to` has something to send (a paced reply's next step)."""
        dues = [r.due for r in self._replies if r.due is not None]
        return min(dues) if dues else None

    def reply_finished(self, response_id: str) -> bool:
        """Whether the reply ``response_id`` has sent its ``response.done``."""
        return all(r.response_id != response_id for r in self._replies)

    # ------------------------------------------------------------- driving

    def start(self) -> list[ServiceOutput]:
        """The handshake is done: ``session.created``, then what the script sends first."""
        self._send(session_event("session.created", self.session))
        self._after_message(0)
        return self._take()

    def receive(self, data: str | bytes, *, now: float | None = None) -> list[ServiceOutput]:
        """One whole client message (text or a binary frame), at ``now`` if given
        (what falls due by then is sent first)."""
        if now is not None:
            self._advance(now)
        self._on_message(data)
        return self._take()

    def receive_event(
        self, event: Mapping[str, Any], *, now: float | None = None
    ) -> list[ServiceOutput]:
        """:meth:`receive` for an event given as a mapping."""
        return self.receive(json.dumps(dict(event)), now=now)

    def advance_to(self, now: float) -> list[ServiceOutput]:
        """Time is ``now``: the paced reply steps due by then."""
        self._advance(now)
        return self._take()

    def serialize(self, out: Outgoing) -> str | bytes:
        """What goes on the wire for ``out`` (an event gets an ``event_id`` if it has none)."""
        if isinstance(out, Mapping):
            event = dict(out)
            event.setdefault("event_id", f"event_{self.index}_{next(self._event_ids)}")
            return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        if isinstance(out, str | bytes):
            return out
        raise TypeError(f"cannot send a {type(out).__name__}")

    def send_transcript(
        self, transcript: str, *, item_id: str | None = None, deltas: bool = False
    ) -> tuple[str, list[ServiceOutput]]:
        """A completed input transcription (its deltas first if asked) for ``item_id``
        (a new id when None): the item id and the outputs."""
        item_id = item_id or self.shared.new_id("item")
        for event in transcription_events(item_id, transcript, deltas=deltas):
            self._send(event)
        return item_id, self._take()

    def send_reply(
        self, text: str | None = None, *, audio: np.ndarray | None = None
    ) -> tuple[str, list[ServiceOutput]]:
        """A whole reply outside any turn (``response.cancel`` does not reach it), paced
        as the script says: the response id and the first outputs."""
        pcm = self._tone() if audio is None else np.asarray(audio, dtype=np.int16).reshape(-1)
        text = self.script.reply_text if text is None else text
        reply = self._new_reply(text, pcm, self._open_response())
        self._run(reply, reply.begin(self.now))
        return reply.response_id, self._take()

    # ------------------------------------------------------------- internals

    def _take(self) -> list[ServiceOutput]:
        out, self._out = self._out, []
        return out

    def _advance(self, now: float) -> None:
        self.now = max(self.now, now)
        while (due := self.next_wakeup) is not None and due <= self.now:
            reply = next(r for r in self._replies if r.due == due)
            self._run(reply, reply.advance_to(due))

    def _on_message(self, data: str | bytes) -> None:
        index = len(self.events)
        g711 = self._audio_encoding("input") != "pcm16"
        record = record_client_message(index, data, sample_bytes=1 if g711 else 2)
        event = record.event
        self.events.append(record)
        if not record.valid:
            client_id = event.get("event_id") if event is not None else None
            self._error(f"Invalid client event: {record.problem}", "invalid_event", client_id)
        elif event is not None:
            try:
                self._handle(event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # Only reachable for odd events the checks let through (e.g. without
                # the openai oracle): report, never crash.
                self.shared.internal_errors.append(f"{record.type}: {exc!r}")
                message = f"The loopback server could not process this event: {exc!r}"
                self._send(error_event(message, "server_error", "server_error", None))
        self._after_message(index + 1)

    def _after_message(self, count: int) -> None:
        script = self.script
        for n, out in script.send_after:
            if n == count:  # as scripted: the conversation does not see it
                self._out.append(Send(self.serialize(out)))
        if script.stall_after == count:
            self._out.append(Stall())
        if script.close_after == count:
            self._out.append(Close(script.close_code, "scripted close"))
        if script.drop_after == count:
            self._out.append(Drop())
        for call in script.tool_calls:
            if call.after == count:
                self._call_tool(call)
