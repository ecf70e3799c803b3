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

import base64
import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from .events import (
    MIN_COMMIT_MS,
    SAMPLES_PER_MS,
    default_session,
    error_event,
    merge_session,
    session_event,
    transcription_events,
    truncated_event,
    user_audio_item,
)
from .oracle import record_client_message
from .replies import Reply, reply_tone
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
from .tool_calls import function_call_events, tool_reply_text
from .vad import InputAudio

__all__ = ["FakeRealtimeService", "SharedCounters"]


class FakeRealtimeService:
    """One connection to the fake service (see the module docstring).

    Attributes:
        script: how this connection behaves.
        index: the connection's index on its server (it goes into event ids).
        events: every client message, in order.
        session: the effective session configuration.
        instructions: the ``instructions`` of each ``session.update`` that set them.
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
    ) -> None:
        self.script = script or ConnectionScript()
        self.index = index
        self.shared = shared or SharedCounters()
        self.now = now
        self.events: list[ClientEventRecord] = []
        self.session: dict[str, Any] = default_session(model)
        self.instructions: list[str] = []
        self._out: list[ServiceOutput] = []
        self._event_ids = itertools.count(1)
        self._input = InputAudio()
        self._speech_item: str | None = None
        self._last_item: str | None = None
        self._items: dict[str, dict[str, Any]] = {}
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
        reply = self._new_reply(self.script.reply_text if text is None else text, pcm)
        self._run(reply, reply.begin(self.now))
        return reply.response_id, self._take()

    # ------------------------------------------------------------- internals

    def _take(self) -> list[ServiceOutput]:
        out, self._out = self._out, []
        return out

    def _send(self, out: Outgoing) -> None:
        self._out.append(Send(self.serialize(out)))

    def _error(self, message: str, code: str, client_id: object) -> None:
        event_id = client_id if isinstance(client_id, str) else None
        self._send(error_event(message, code, "invalid_request_error", event_id))

    def _advance(self, now: float) -> None:
        self.now = max(self.now, now)
        while (due := self.next_wakeup) is not None and due <= self.now:
            reply = next(r for r in self._replies if r.due == due)
            self._run(reply, reply.advance_to(due))

    def _on_message(self, data: str | bytes) -> None:
        index = len(self.events)
        record = record_client_message(index, data)
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
            if n == count:
                self._send(out)
        if script.stall_after == count:
            self._out.append(Stall())
        if script.close_after == count:
            self._out.append(Close(script.close_code, "scripted close"))
        if script.drop_after == count:
            self._out.append(Drop())
        for call in script.tool_calls:
            if call.after == count:
                self._call_tool(call)

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        client_id = event.get("event_id")
        if kind == "session.update":
            session = event["session"]
            if session.get("type") != "realtime":
                self._error("the loopback serves realtime sessions only", "unsupported", client_id)
                return
            merge_session(self.session, session)
            if "instructions" in session:
                self.instructions.append(str(session["instructions"]))
            self._configure_vad()
            self._send(session_event("session.updated", self.session))
        elif kind == "input_audio_buffer.append":
            self._append(base64.b64decode(event["audio"]))
        elif kind == "input_audio_buffer.commit":
            self._commit(client_id)
        elif kind == "input_audio_buffer.clear":
            self._input.committed()
            self._input.forget_speech()
            self._speech_item = None
            self._send({"type": "input_audio_buffer.cleared"})
        elif kind == "conversation.item.create":
            item = dict(event["item"])
            if not isinstance(item.get("id"), str):
                item["id"] = self.shared.new_id("item")
            item["object"] = "realtime.item"
            item["status"] = "completed"
            self._items[item["id"]] = item
            if item.get("type") == "function_call_output":
                name = self._call_names.get(str(item.get("call_id")), "unknown")
                self.tool_outputs.append((name, str(item.get("output"))))
            previous, self._last_item = self._last_item, item["id"]
            for done in ("conversation.item.added", "conversation.item.done"):
                self._send({"type": done, "previous_item_id": previous, "item": item})
        elif kind == "conversation.item.truncate":
            self._truncate(event, client_id)
        elif kind == "conversation.item.delete":
            if self._items.pop(event["item_id"], None) is None:
                message = f"no item {event['item_id']!r}"
                self._error(message, "item_delete_invalid_item_id", client_id)
            else:
                self._send({"type": "conversation.item.deleted", "item_id": event["item_id"]})
        elif kind == "response.create":
            if self._active is not None:
                self._error(
                    "Conversation already has an active response in progress.",
                    "conversation_already_has_active_response",
                    client_id,
                )
                return
            self._start_reply()
        elif kind == "response.cancel":
            active = self._active
            wanted = event.get("response_id")
            if active is None or (wanted is not None and wanted != active.response_id):
                message = "Cancellation failed: no active response found"
                self._error(message, "response_cancel_not_active", client_id)
                return
            self._run(active, active.cancel("client_cancelled"))
        # conversation.item.retrieve, output_audio_buffer.clear: nothing to say

    def _append(self, raw: bytes) -> None:
        for what, ms in self._input.append(raw):
            if what == "start":
                self._speech_started(ms)
            else:
                self._speech_stopped(ms)

    def _commit(self, client_id: object) -> None:
        if self._input.uncommitted < MIN_COMMIT_MS * SAMPLES_PER_MS:
            ms = self._input.uncommitted // SAMPLES_PER_MS
            message = (
                "Error committing input audio buffer: buffer too small. Expected at "
                f"least {MIN_COMMIT_MS}ms of audio, but buffer only has {ms}ms of audio."
            )
            self._error(message, "input_audio_buffer_commit_empty", client_id)
            return
        item_id = self._speech_item
        if item_id is not None and self._input.speaking:
            self._input.forget_speech()
            self._send(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": self._input.samples // SAMPLES_PER_MS,
                    "item_id": item_id,
                }
            )
        self._commit_turn(item_id or self.shared.new_id("item"), reply=False)

    def _turn_detection(self) -> dict[str, Any] | None:
        audio = self.session.get("audio") or {}
        detection = (audio.get("input") or {}).get("turn_detection")
        return detection if isinstance(detection, dict) else None

    def _configure_vad(self) -> None:
        threshold = self.script.vad_rms_threshold if self.script.vad else None
        self._input.configure(self._turn_detection(), threshold=threshold)

    def _speech_started(self, ms: int) -> None:
        self._speech_item = self.shared.new_id("item")
        self._send(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": ms,
                "item_id": self._speech_item,
            }
        )
        detection = self._turn_detection() or {}
        if self._active is not None and detection.get("interrupt_response", True):
            self._run(self._active, self._active.cancel("turn_detected"))

    def _speech_stopped(self, ms: int) -> None:
        item_id = self._speech_item or self.shared.new_id("item")
        self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms, "item_id": item_id}
        )
        detection = self._turn_detection() or {}
        self._commit_turn(item_id, reply=bool(detection.get("create_response", True)))

    def _commit_turn(self, item_id: str, *, reply: bool) -> None:
        self._input.committed()
        self._speech_item = None
        previous, self._last_item = self._last_item, item_id
        self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = user_audio_item(item_id)
        self._items[item_id] = item
        self._send({"type": "conversation.item.added", "previous_item_id": previous, "item": item})
        audio = self.session.get("audio") or {}
        if (audio.get("input") or {}).get("transcription"):
            transcript = self.shared.next_transcript(self.script)
            deltas = self.script.transcript_deltas
            for event in transcription_events(item_id, transcript, deltas=deltas):
                self._send(event)
        if reply and self._active is None:
            self._start_reply()

    def _truncate(self, event: dict[str, Any], client_id: object) -> None:
        item_id = event["item_id"]
        played = self._assistant_audio_ms.get(item_id)
        if played is None:
            self._error(f"no assistant audio item {item_id!r}", "item_truncate_invalid_item_id",
                        client_id)  # fmt: skip
        elif event["audio_end_ms"] > played:
            message = (
                f"audio_end_ms {event['audio_end_ms']} is past the end of the item's "
                f"audio ({played} ms)"
            )
            self._error(message, "invalid_value", client_id)
        else:
            self._send(truncated_event(event))

    # ------------------------------------------------------------- replies

    def _tone(self) -> np.ndarray:
        return reply_tone(self.script.reply_ms, self.script.reply_tone_hz)

    def _new_reply(self, text: str, pcm: np.ndarray) -> Reply:
        reply = Reply(
            response_id=self.shared.new_id("resp"),
            item_id=self.shared.new_id("item"),
            text=text,
            pcm=pcm,
            modalities=list(self.session.get("output_modalities") or ["audio"]),
            chunk_ms=self.script.reply_chunk_ms,
            paced=self.script.pace_replies,
        )
        self._replies.append(reply)
        return reply

    def _call_tool(self, call: Any) -> None:
        call_id = call.call_id or self.shared.new_id("call")
        self._call_names[call_id] = call.name
        for event in function_call_events(
            response_id=self.shared.new_id("resp"),
            item_id=self.shared.new_id("item"),
            call_id=call_id,
            name=call.name,
            arguments=call.arguments,
        ):
            self._send(event)

    def _start_reply(self) -> None:
        if self._calls:
            self._call_tool(self._calls.pop(0))
            return
        text = self.script.reply_text
        if self.tool_outputs:
            text, self.tool_outputs = tool_reply_text(self.tool_outputs), []
        reply = self._new_reply(text, self._tone())
        self._active = reply
        self._run(reply, reply.begin(self.now))

    def _run(self, reply: Reply, events: list[dict[str, Any]]) -> None:
        """Send a reply's events and keep the conversation's books on it."""
        for event in events:
            self._send(event)
        if reply.audio_out:
            self._assistant_audio_ms[reply.item_id] = reply.audio_ms
        if reply.finished:
            self._items[reply.item_id] = reply.item
            self._last_item = reply.item_id
            self._replies.remove(reply)
            if self._active is reply:
                self._active = None
