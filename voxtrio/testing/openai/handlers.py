"""How the fake OpenAI Realtime service answers each client event, and runs its
replies: the half of :class:`~.service.FakeRealtimeService` that is the service's
behaviour (the other half, in :mod:`.service`, is its driving and bookkeeping)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .conversation import Conversation
from .events import (
    MIN_COMMIT_MS,
    SAMPLES_PER_MS,
    error_event,
    merge_session,
    session_event,
    transcription_events,
    truncated_event,
    user_audio_item,
)
from .replies import Reply, reply_tone
from .scripts import ConnectionScript, Outgoing, Send, ServiceOutput, SharedCounters
from .tool_calls import function_call_events, tool_reply_text
from .vad import InputAudio


class _ClientEventHandlers:
    """The service's answers to client events (a mixin of FakeRealtimeService, which
    sets these attributes and gives :meth:`serialize`)."""

    script: ConnectionScript
    shared: SharedCounters
    now: float
    session: dict[str, Any]
    instructions: list[str]
    response_instructions: list[str]
    tool_outputs: list[tuple[str, str]]
    _out: list[ServiceOutput]
    _input: InputAudio
    _speech_item: str | None
    _transcription: list[dict[str, Any]]  # a turn's, held for the next reply
    _conversation: Conversation
    _assistant_audio_ms: dict[str, int]
    _active: Reply | None
    _replies: list[Reply]
    _calls: list[Any]
    _call_names: dict[str, str]

    def serialize(self, out: Outgoing) -> str | bytes:
        raise NotImplementedError

    def _send(self, out: Outgoing) -> None:
        """Send what the service says; the conversation adds what goes with it."""
        if not isinstance(out, Mapping):
            self._out.append(Send(self.serialize(out)))
            return
        event, after = self._conversation.outgoing(out)
        self._out.append(Send(self.serialize(event)))
        for follow in after:
            self._send(follow)

    def _error(self, message: str, code: str, client_id: object) -> None:
        event_id = client_id if isinstance(client_id, str) else None
        self._send(error_event(message, code, "invalid_request_error", event_id))

    def _handle(self, event: dict[str, Any]) -> None:
        # output_audio_buffer.clear (WebRTC/SIP only): nothing to say
        kind = event["type"]
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, event, event.get("event_id"))

    @property
    def _transcribing_only(self) -> bool:
        return bool(self.session.get("type") == "transcription")

    # ------------------------------------------------------------- one per event type

    def _on_session_update(self, event: dict[str, Any], client_id: object) -> None:
        session = event["session"]
        if session.get("type") != self.session["type"]:
            message = (
                f"Passing a {session.get('type')} session update event to a "
                f"{self.session['type']} session is not allowed."
            )
            self._error(message, "invalid_value", client_id)
            return
        merge_session(self.session, session)
        for side in ("input", "output"):  # a format is replaced whole, never merged
            fmt = ((session.get("audio") or {}).get(side) or {}).get("format")
            if isinstance(fmt, dict):
                self.session["audio"][side]["format"] = dict(fmt)
        if "instructions" in session:
            self.instructions.append(str(session["instructions"]))
        self._configure_vad()
        self._send(session_event("session.updated", self.session))

    def _on_append(self, event: dict[str, Any], client_id: object) -> None:
        self._append(base64.b64decode(event["audio"]))

    def _audio_encoding(self, direction: str) -> str:
        """``pcm16``, ``mulaw`` or ``alaw``: the session's input or output format."""
        audio = self.session.get("audio") or {}
        fmt = (audio.get(direction) or {}).get("format") or {}
        return _ENCODINGS.get(fmt.get("type"), "pcm16")

    def _on_commit(self, event: dict[str, Any], client_id: object) -> None:
        self._commit(client_id)

    def _on_clear(self, event: dict[str, Any], client_id: object) -> None:
        self._input.cleared()
        self._input.forget_speech()
        self._speech_item = None
        self._send({"type": "input_audio_buffer.cleared"})

    def _on_item_create(self, event: dict[str, Any], client_id: object) -> None:
        item = dict(event["item"])
        if not isinstance(item.get("id"), str):
            item["id"] = self.shared.new_id("item")
        item["object"] = "realtime.item"
        item["status"] = "completed"
        if item.get("type") == "function_call_output":
            name = self._call_names.get(str(item.get("call_id")), "unknown")
            self.tool_outputs.append((name, str(item.get("output"))))
        for done in self._conversation.add(item):
            self._send(done)

    def _on_item_delete(self, event: dict[str, Any], client_id: object) -> None:
        if not self._conversation.delete(event["item_id"]):
            message = f"no item {event['item_id']!r}"
            self._error(message, "item_delete_invalid_item_id", client_id)
        else:
            self._send({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    def _on_item_retrieve(self, event: dict[str, Any], client_id: object) -> None:
        item = self._conversation.retrieve(event["item_id"])
        if item is None:
            message = f"no item {event['item_id']!r} in the conversation"
            self._error(message, "item_retrieve_invalid_item_id", client_id)
        else:
            self._send({"type": "conversation.item.retrieved", "item": item})

    def _on_response_create(self, event: dict[str, Any], client_id: object) -> None:
        options = event.get("response") or {}
        if self._transcribing_only:
            message = "A transcription session does not create responses."
            self._error(message, "invalid_request", client_id)
            return
        if options.get("conversation") != "none" and self._active is not None:
            self._error(
                "Conversation already has an active response in progress.",
                "conversation_already_has_active_response",
                client_id,
            )
            return
        self._start_reply(options)

    def _on_response_cancel(self, event: dict[str, Any], client_id: object) -> None:
        wanted = event.get("response_id")
        target = self._active
        if wanted is not None:
            target = next((r for r in self._replies if r.response_id == wanted), None)
        if target is None:
            message = "Cancellation failed: no active response found"
            self._error(message, "response_cancel_not_active", client_id)
            return
        self._run(target, target.cancel("client_cancelled"))

    # ------------------------------------------------------------- input audio and turns

    def _append(self, raw: bytes) -> None:
        for what, ms in self._input.append(raw, self._audio_encoding("input")):
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
        reply = bool(detection.get("create_response", True)) and not self._transcribing_only
        self._commit_turn(item_id, reply=reply, end=ms * SAMPLES_PER_MS)

    def _commit_turn(self, item_id: str, *, reply: bool, end: int | None = None) -> None:
        """The turn's audio becomes a user item; its transcription (if the session
        asks for one) goes out when the script's ``transcript_timing`` says: with
        the next reply (this turn's, or the one the client asks for), or, if no
        reply starts before the next turn is committed, just before that turn."""
        self._release_transcription()
        audio = self._input.committed(end)
        self._speech_item = None
        previous = self._conversation.last
        self._send(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        for event in self._conversation.add(user_audio_item(item_id), audio=audio):
            self._send(event)
        audio_config = self.session.get("audio") or {}
        if (audio_config.get("input") or {}).get("transcription"):
            transcript = self.shared.next_transcript(self.script)
            deltas = self.script.transcript_deltas
            self._transcription = transcription_events(item_id, transcript, deltas=deltas)
            if self.script.transcript_timing == "before_reply" or self._transcribing_only:
                self._release_transcription()
        if reply and self._active is None:
            self._start_reply()

    def _release_transcription(self) -> None:
        """Send the held input transcription now (if any)."""
        held, self._transcription = self._transcription, []
        for event in held:
            self._send(event)

    def _on_item_truncate(self, event: dict[str, Any], client_id: object) -> None:
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

    def _open_response(self, options: Mapping[str, Any] | None = None) -> str:
        """A new response id, its options (``response.create``'s ``response``:
        ``conversation``, ``metadata``, ``instructions``) noted by the conversation."""
        options = options or {}
        response_id = self.shared.new_id("resp")
        instructions = options.get("instructions")
        if isinstance(instructions, str):
            self.response_instructions.append(instructions)
        else:
            instructions = str(self.session.get("instructions") or "")
        self._conversation.expect(
            response_id,
            instructions=instructions,
            in_conversation=options.get("conversation") != "none",
            metadata=options.get("metadata"),
        )
        return response_id

    def _new_reply(
        self, text: str, pcm: np.ndarray, response_id: str, modalities: list[str] | None = None
    ) -> Reply:
        reply = Reply(
            response_id=response_id,
            item_id=self.shared.new_id("item"),
            text=text,
            pcm=pcm,
            modalities=modalities or list(self.session.get("output_modalities") or ["audio"]),
            chunk_ms=self.script.reply_chunk_ms,
            paced=self.script.pace_replies,
            encoding=self._audio_encoding("output"),
        )
        self._replies.append(reply)
        return reply

    def _call_tool(self, call: Any, response_id: str | None = None) -> None:
        call_id = call.call_id or self.shared.new_id("call")
        self._call_names[call_id] = call.name
        for event in function_call_events(
            response_id=response_id or self._open_response(),
            item_id=self.shared.new_id("item"),
            call_id=call_id,
            name=call.name,
            arguments=call.arguments,
        ):
            self._send(event)

    def _start_reply(self, options: Mapping[str, Any] | None = None) -> None:
        """Start the next reply (or scripted tool call) with ``response.create``'s
        options; a held input transcription goes out in it when the script says."""
        options = options or {}
        response_id = self._open_response(options)
        if self._transcription and options.get("conversation") != "none":
            held, self._transcription = self._transcription, []
            self._conversation.hold(response_id, held, self.script.transcript_timing)
        if self._calls:
            self._call_tool(self._calls.pop(0), response_id)
            return
        text = self.script.reply_text
        if self.tool_outputs:
            text, self.tool_outputs = tool_reply_text(self.tool_outputs), []
        modalities = options.get("output_modalities")
        reply = self._new_reply(text, self._tone(), response_id, modalities)
        if options.get("conversation") != "none":
            self._active = reply
        self._run(reply, reply.begin(self.now))

    def _run(self, reply: Reply, events: list[dict[str, Any]]) -> None:
        """Send a reply's events and keep the books on it."""
        for event in events:
            self._send(event)
        if reply.audio_out and reply.item_id in self._conversation.items:
            self._assistant_audio_ms[reply.item_id] = reply.audio_ms
        if reply.finished:
            self._replies.remove(reply)
            if self._active is reply:
                self._active = None


#: The wire's audio format types, as encodings.
_ENCODINGS: dict[object, str] = {"audio/pcmu": "mulaw", "audio/pcma": "alaw"}

_Handler = Callable[[_ClientEventHandlers, dict[str, Any], object], None]

#: The client event types the service answers, and how.
_HANDLERS: dict[str, _Handler] = {
    "session.update": _ClientEventHandlers._on_session_update,
    "input_audio_buffer.append": _ClientEventHandlers._on_append,
    "input_audio_buffer.commit": _ClientEventHandlers._on_commit,
    "input_audio_buffer.clear": _ClientEventHandlers._on_clear,
    "conversation.item.create": _ClientEventHandlers._on_item_create,
    "conversation.item.truncate": _ClientEventHandlers._on_item_truncate,
    "conversation.item.delete": _ClientEventHandlers._on_item_delete,
    "conversation.item.retrieve": _ClientEventHandlers._on_item_retrieve,
    "response.create": _ClientEventHandlers._on_response_create,
    "response.cancel": _ClientEventHandlers._on_response_cancel,
}
