"""One canned reply of the fake service, as a pure state machine.

A reply is the run of server events from ``response.created`` to ``response.done``.
Unpaced, :meth:`Reply.begin` returns all of it at once. Paced, it returns the head
and the first audio chunk, and each later chunk falls due one chunk's length of
audio later (:attr:`Reply.due`); the owner calls :meth:`Reply.advance_to` with the
current time. :meth:`Reply.cancel` ends it at once: the events that close the reply
(``...done``, ``response.done`` with ``status: cancelled``) come back from the call.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from ...codecs.g711 import alaw_encode, mulaw_encode
from ..canned import reply_tone
from .events import RATE, SAMPLES_PER_MS, words

__all__ = ["Reply", "reply_tone"]  # reply_tone: shared, from voxtrio.testing.canned


def _wire_audio(piece: np.ndarray, encoding: str) -> bytes:
    """24 kHz int16 as the session's output format: PCM, or 8 kHz G.711 (every third
    sample: the reply is a low tone, so nothing folds over)."""
    if encoding == "pcm16":
        return piece.astype("<i2").tobytes()
    low = np.ascontiguousarray(piece.reshape(-1)[:: RATE // 8000])
    return mulaw_encode(low) if encoding == "mulaw" else alaw_encode(low)


class Reply:
    """A reply in progress (see the module docstring)."""

    def __init__(
        self,
        *,
        response_id: str,
        item_id: str,
        text: str,
        pcm: np.ndarray,
        modalities: list[str],
        chunk_ms: int,
        paced: bool,
        encoding: str = "pcm16",
    ) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.paced = paced
        self.encoding = encoding  # of the audio deltas: pcm16, or 8 kHz mulaw / alaw
        self.modalities = modalities
        self.audio_out = "audio" in modalities
        self.cancelled: str | None = None
        self.finished = False
        #: when the next step is due (seconds, the owner's clock); None once finished
        self.due: float | None = None
        #: the audio sent so far, in ms
        self.audio_ms = 0
        #: the assistant item, final once :attr:`finished`
        self.item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        chunk = chunk_ms * SAMPLES_PER_MS
        self._chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)] or [pcm[:0]]
        self._words = words(text)
        self._per_chunk = max(1, math.ceil(len(self._words) / len(self._chunks)))
        self._next_chunk = 0
        self._said: list[str] = []
        self._samples = 0
        self._base = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def begin(self, now: float) -> list[dict[str, Any]]:
        """The reply's first events: all of them unless it is paced audio."""
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""} if self.audio_out else {"type": "text", "text": ""}
        )
        out: list[dict[str, Any]] = [
            {
                "type": "response.created",
                "response": {
                    "id": self.response_id,
                    "object": "realtime.response",
                    "status": "in_progress",
                    "output": [],
                    "output_modalities": self.modalities,
                },
            },
            {
                "type": "response.output_item.added",
                "response_id": self.response_id,
                "output_index": 0,
                "item": dict(self.item),
            },
            {"type": "response.content_part.added", **self._base, "part": part},
        ]
        if not self.audio_out:
            for word in self._words:
                self._said.append(word)
                out.append({"type": "response.output_text.delta", **self._base, "delta": word})
            return out + self._tail()
        self.due = now
        return out + self.advance_to(now if self.paced else math.inf)

    def advance_to(self, now: float) -> list[dict[str, Any]]:
        """Every step due by ``now``, in order."""
        out: list[dict[str, Any]] = []
        while self.due is not None and self.due <= now:
            if self._next_chunk < len(self._chunks):
                out += self._chunk(self._next_chunk)
                self._next_chunk += 1
            else:
                for word in self._words[len(self._said) :]:
                    self._said.append(word)
                    out.append(self._transcript_delta(word))
                out += self._tail()
        return out

    def cancel(self, reason: str) -> list[dict[str, Any]]:
        """End the reply now; returns its closing events (none if it had finished)."""
        if self.finished:
            return []
        self.cancelled = reason
        return self._tail()

    def _transcript_delta(self, word: str) -> dict[str, Any]:
        return {"type": "response.output_audio_transcript.delta", **self._base, "delta": word}

    def _chunk(self, i: int) -> list[dict[str, Any]]:
        piece = self._chunks[i]
        out: list[dict[str, Any]] = []
        if len(piece):
            data = base64.b64encode(_wire_audio(piece, self.encoding)).decode("ascii")
            out.append({"type": "response.output_audio.delta", **self._base, "delta": data})
            self._samples += len(piece)
            self.audio_ms = self._samples // SAMPLES_PER_MS
        for word in self._words[i * self._per_chunk : (i + 1) * self._per_chunk]:
            self._said.append(word)
            out.append(self._transcript_delta(word))
        assert self.due is not None
        self.due += len(piece) / RATE
        return out

    def _tail(self) -> list[dict[str, Any]]:
        said = "".join(self._said)
        base = self._base
        out: list[dict[str, Any]] = []
        if self.audio_out:
            out.append({"type": "response.output_audio.done", **base})
            done = {"type": "response.output_audio_transcript.done", **base, "transcript": said}
            out.append(done)
            content = {"type": "output_audio", "transcript": said}
            part = {"type": "audio", "transcript": said}
        else:
            out.append({"type": "response.output_text.done", **base, "text": said})
            content = {"type": "output_text", "text": said}
            part = {"type": "text", "text": said}
        out.append({"type": "response.content_part.done", **base, "part": part})
        status = "completed" if self.cancelled is None else "incomplete"
        self.item = {**self.item, "status": status, "content": [content]}
        out.append(
            {
                "type": "response.output_item.done",
                "response_id": self.response_id,
                "output_index": 0,
                "item": self.item,
            }
        )
        response: dict[str, Any] = {
            "id": self.response_id,
            "object": "realtime.response",
            "status": "completed" if self.cancelled is None else "cancelled",
            "output": [self.item],
            "output_modalities": self.modalities,
        }
        if self.cancelled is not None:
            response["status_details"] = {"type": "cancelled", "reason": self.cancelled}
        out.append({"type": "response.done", "response": response})
        self.finished = True
        self.due = None
        return out
