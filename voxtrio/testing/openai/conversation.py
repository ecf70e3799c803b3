"""The fake service's default conversation, kept from the events it sends.

:class:`Conversation` sees every event the service sends (:meth:`Conversation.outgoing`)
and adds what the real GA service adds around them, in its order, so that neither the
replies nor the tool calls need to know about it:

* after ``response.output_item.added``: ``conversation.item.added`` (the item in
  progress); after ``response.output_item.done``: ``conversation.item.done`` (the final
  item) -- unless the response is out of band (``conversation: "none"``);
* in ``response.created`` / ``response.done``: the response's ``conversation_id`` and
  ``metadata``, and in ``response.done`` its ``usage``;
* a held input transcription (``ConnectionScript.transcript_timing``) right after the
  event of its reply that releases it: the reply's first words (text, transcript or
  tool arguments delta) for ``during_reply``, its ``response.done`` for
  ``after_reply``.

Committed audio and created items enter through :meth:`Conversation.add`. Retrieval
(:meth:`Conversation.retrieve`) answers with the item as it stands, with the turn's
audio and, once sent, its transcript.

Usage is synthetic, only plausible: 10 tokens per second of input audio (user audio,
and earlier reply audio as context), 20 per second of reply audio, a text token per 4
characters; a response's input is its instructions plus every item of the
conversation; the cached part is what the previous in-conversation response saw and
said (the conversation only grows, so that prefix is reused).
"""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import attrs
import numpy as np

from .events import SAMPLES_PER_MS
from .scripts import TranscriptTiming

__all__ = [
    "AUDIO_IN_TOKENS_PER_S",
    "AUDIO_OUT_TOKENS_PER_S",
    "CHARS_PER_TEXT_TOKEN",
    "Conversation",
]

AUDIO_IN_TOKENS_PER_S: Final = 10
AUDIO_OUT_TOKENS_PER_S: Final = 20
CHARS_PER_TEXT_TOKEN: Final = 4

_Event: TypeAlias = dict[str, Any]

_WORDS: Final = frozenset(
    {
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
    }
)


def _text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TEXT_TOKEN)


def _audio_tokens(samples: int, per_s: int) -> int:
    return math.ceil(samples * per_s / (1000 * SAMPLES_PER_MS))


@attrs.define
class _Response:
    """What the conversation keeps about one response until its ``response.done``."""

    in_conversation: bool
    metadata: Mapping[str, str] | None
    instructions: str
    input_text: int = 0
    input_audio: int = 0
    cached: int = 0
    audio_samples: int = 0  # reply audio sent so far
    started: bool = False


@attrs.define
class _Held:
    events: list[_Event]
    timing: TranscriptTiming


class Conversation:
    """The default conversation of one connection (see the module docstring)."""

    def __init__(self, conversation_id: str) -> None:
        self.id = conversation_id
        self.items: dict[str, _Event] = {}  # in conversation order
        self.last: str | None = None  # the newest item
        self._previous: dict[str, str | None] = {}
        self._input_audio: dict[str, np.ndarray] = {}  # a user turn's audio
        self._output_samples: dict[str, int] = {}  # an assistant item's audio
        self._responses: dict[str, _Response] = {}
        self._held: dict[str, _Held] = {}
        self._seen = 0  # tokens the previous in-conversation response saw and said

    # ------------------------------------------------------------- items

    def add(self, item: _Event, *, audio: np.ndarray | None = None) -> list[_Event]:
        """A finished item joins the conversation: its ``added`` and ``done`` events."""
        self._append(item)
        if audio is not None:
            self._input_audio[item["id"]] = audio
        return [self._item_event("conversation.item.added", item), self._done(item)]

    def delete(self, item_id: str) -> bool:
        """Take an item out; False if there is none with that id."""
        if self.items.pop(item_id, None) is None:
            return False
        if self.last == item_id:
            self.last = next(reversed(self.items), None)
        return True

    def retrieve(self, item_id: str) -> _Event | None:
        """The item as the service knows it (user audio included), or None."""
        item = self.items.get(item_id)
        if item is None:
            return None
        found = copy.deepcopy(item)
        audio = self._input_audio.get(item_id)
        if audio is not None:
            for part in found.get("content", []):
                if part.get("type") == "input_audio":
                    part["audio"] = base64.b64encode(audio.astype("<i2").tobytes()).decode()
        return found

    # ------------------------------------------------------------- responses

    def expect(
        self,
        response_id: str,
        *,
        instructions: str,
        in_conversation: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """A response is about to start with these options."""
        self._responses[response_id] = _Response(in_conversation, metadata, instructions)

    def in_conversation(self, response_id: str) -> bool:
        """Whether a response still running goes to the default conversation."""
        books = self._responses.get(response_id)
        return books is None or books.in_conversation

    def hold(self, response_id: str, events: Sequence[_Event], timing: TranscriptTiming) -> None:
        """Send ``events`` at the moment ``timing`` names in response ``response_id``."""
        self._held[response_id] = _Held(list(events), timing)

    def outgoing(self, event: Mapping[str, Any]) -> tuple[_Event, list[_Event]]:
        """An event the service is sending: the event as it goes out, and what must
        follow it."""
        out = dict(event)
        after: list[_Event] = []
        kind = out.get("type")
        response = out.get("response")
        rid = out.get("response_id")
        if isinstance(response, Mapping):
            rid = response.get("id")
        books = self._responses.get(rid) if isinstance(rid, str) else None
        if kind == "response.created" and isinstance(rid, str):
            books = self._start(rid)
            out["response"] = self._annotate(dict(response or {}), books)
        elif kind == "response.done" and books is not None:
            out["response"] = self._annotate(dict(response or {}), books, finished=True)
            del self._responses[str(rid)]
        elif kind == "response.output_audio.delta" and books is not None:
            books.audio_samples += len(base64.b64decode(str(out.get("delta", "")))) // 2
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._transcribed(str(out.get("item_id")), str(out.get("transcript", "")))
        in_conversation = books is None or books.in_conversation
        if kind == "response.output_item.added" and in_conversation:
            self._append(out["item"])
            after.append(self._item_event("conversation.item.added", out["item"]))
        elif kind == "response.output_item.done" and in_conversation:
            item = out["item"]
            if books is not None and item.get("type") == "message":
                self._output_samples[item["id"]] = books.audio_samples
            if item["id"] in self.items:
                self.items[item["id"]] = item
                after.append(self._done(item))
        if isinstance(rid, str) and isinstance(kind, str) and self._releases(rid, kind):
            after += self._held.pop(rid).events
        return out, after

    # ------------------------------------------------------------- internals

    def _append(self, item: _Event) -> None:
        self._previous[item["id"]] = self.last
        self.items[item["id"]] = item
        self.last = item["id"]

    def _item_event(self, kind: str, item: _Event) -> _Event:
        previous = self._previous.get(item["id"])
        return {"type": kind, "previous_item_id": previous, "item": copy.deepcopy(item)}

    def _done(self, item: _Event) -> _Event:
        return self._item_event("conversation.item.done", item)

    def _transcribed(self, item_id: str, transcript: str) -> None:
        for part in self.items.get(item_id, {}).get("content", []):
            if part.get("type") == "input_audio":
                part["transcript"] = transcript

    def _releases(self, response_id: str, kind: str) -> bool:
        held = self._held.get(response_id)
        if held is None:
            return False
        if kind == "response.done":
            return True
        # during: once the reply's words have begun (its first text, transcript or
        # arguments delta), the hardest moment for a client to place the turn
        return held.timing == "during_reply" and kind in _WORDS

    def _start(self, response_id: str) -> _Response:
        books = self._responses.setdefault(response_id, _Response(True, None, ""))
        if books.started:
            return books
        books.started = True
        text, audio = _text_tokens(books.instructions), 0
        for item in self.items.values():
            t, a = self._item_tokens(item)
            text, audio = text + t, audio + a
        books.input_text, books.input_audio = text, audio
        books.cached = min(self._seen, text + audio)
        return books

    def _item_tokens(self, item: Mapping[str, Any]) -> tuple[int, int]:
        """(text, audio) tokens an item adds to a response's input."""
        text = audio = 0
        for key in ("name", "arguments", "output"):
            if isinstance(item.get(key), str):
                text += _text_tokens(item[key])
        for part in item.get("content") or []:
            for key in ("text", "transcript"):
                if isinstance(part.get(key), str) and part.get("type") != "input_audio":
                    text += _text_tokens(part[key])
        samples = self._output_samples.get(item["id"], 0)
        if item["id"] in self._input_audio:
            samples += len(self._input_audio[item["id"]])
        audio += _audio_tokens(samples, AUDIO_IN_TOKENS_PER_S)
        return text, audio

    def _annotate(self, response: _Event, books: _Response, *, finished: bool = False) -> _Event:
        response["conversation_id"] = self.id if books.in_conversation else None
        response["metadata"] = dict(books.metadata) if books.metadata is not None else None
        if finished:
            response["usage"] = self._usage(response, books)
        return response

    def _usage(self, response: Mapping[str, Any], books: _Response) -> _Event:
        out_text = 0
        for item in response.get("output") or []:
            out_text += self._item_tokens({**item, "id": ""})[0]
        out_audio = _audio_tokens(books.audio_samples, AUDIO_OUT_TOKENS_PER_S)
        inputs = books.input_text + books.input_audio
        outputs = out_text + out_audio
        if books.in_conversation:
            self._seen = inputs + outputs
        cached_text = min(books.cached, books.input_text)
        return {
            "input_tokens": inputs,
            "output_tokens": outputs,
            "total_tokens": inputs + outputs,
            "input_token_details": {
                "text_tokens": books.input_text,
                "audio_tokens": books.input_audio,
                "image_tokens": 0,
                "cached_tokens": books.cached,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": books.cached - cached_text,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
