"""Link inputs as OpenAI Realtime GA client events (JSON text)."""

from __future__ import annotations

import binascii
import sys
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from ...audio import AudioFrame
from ...messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    FrameBatch,
    LinkInput,
    SendText,
    ToolResult,
    TruncateItem,
    UpdateSession,
)
from ._json import dumps
from .config import OPENAI_RATE, OpenAIRealtimeConfig, ServerVad
from .state import ConnectionState

__all__ = ["Encoder"]

#: Silence beyond the VAD's silence duration sent at the end of the input.
_SILENCE_MARGIN_MS: Final = 200

_PCM_FORMAT: Final[dict[str, Any]] = {"type": "audio/pcm", "rate": OPENAI_RATE}
#: The code of silence in each G.711 law (what the end-of-input silence is made of).
_SILENCE_CODE: Final = {"mulaw": 0xFF, "alaw": 0xD5}


def _wire_format(name: str) -> dict[str, Any]:
    """A ``format`` object: PCM names its rate; G.711 (8 kHz by definition) does not."""
    return dict(_PCM_FORMAT) if name == "audio/pcm" else {"type": name}

# The constant parts of an input_audio_buffer.append (the event id and audio go between).
_APPEND_HEAD: Final = '{"type":"input_audio_buffer.append","event_id":"'
_APPEND_MID: Final = '","audio":"'
_APPEND_TAIL: Final = '"}'
#: int16 arrays are little-endian in memory: tobytes() is the wire order already.
_NATIVE_LE: Final = sys.byteorder == "little"


class Encoder:
    """The client side of one connection: configuration in, JSON text out."""

    def __init__(self, config: OpenAIRealtimeConfig, state: ConnectionState) -> None:
        self.config = config
        self.state = state

    def session_config(self, instructions: str) -> dict[str, Any]:
        """The ``session`` object of the ``session.update`` sent on connect."""
        cfg = self.config
        audio_in: dict[str, Any] = {"format": _wire_format(cfg.audio_format)}
        if cfg.transcription_model is None:
            audio_in["transcription"] = None
        else:
            transcription: dict[str, Any] = {"model": cfg.transcription_model}
            if cfg.transcription_language is not None:
                transcription["language"] = cfg.transcription_language
            audio_in["transcription"] = transcription
        turn: dict[str, Any] | None = None
        if cfg.turn_detection is not None:
            turn = cfg.turn_detection.to_wire()
            # voxtrio decides barge-in itself (the session cuts playback, cancels
            # and truncates: once, and not for a reply the app made not
            # interruptible); a service cancelling too would make the cancel fail.
            turn["interrupt_response"] = False
        audio_in["turn_detection"] = turn
        if cfg.noise_reduction is not None:
            audio_in["noise_reduction"] = {"type": cfg.noise_reduction}
        audio_out: dict[str, Any] = {"format": _wire_format(cfg.audio_format)}
        if cfg.voice is not None:
            audio_out["voice"] = cfg.voice
        session: dict[str, Any] = {
            "type": "realtime",
            "instructions": instructions,
            "output_modalities": list(cfg.output_modalities),
            "audio": {"input": audio_in, "output": audio_out},
        }
        if cfg.tools:
            session["tools"] = [t.to_wire() for t in cfg.tools]
        if cfg.tool_choice is not None:
            session["tool_choice"] = cfg.tool_choice
        return session

    def connect_messages(self, instructions: str) -> list[str]:
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
        event_id = self.state.event_id()
        self.state.config_event_id = event_id
        update = {
            "type": "session.update",
            "event_id": event_id,
            "session": self.session_config(instructions),
        }
        return [dumps(update)]

    def encode(self, msg: LinkInput) -> list[str]:
        match msg:
            case FrameBatch():
                return self._audio(msg.frames)
            case AudioFrame():
                return self._audio((msg,))
            case CommitInput():
                return [self._commit()]
            case ClearInput():
                self.state.uncommitted = 0
                return [self._simple("input_audio_buffer.clear")]
            case EndOfInput():
                return self._end_of_input()
            case CreateReply():
                event: dict[str, Any] = {"type": "response.create"}
                if msg.instructions is not None:
                    event["response"] = {"instructions": msg.instructions}
                return [self._event(event)]
            case CancelReply():
                event = {"type": "response.cancel"}
                if msg.response_id is not None:
                    event["response_id"] = msg.response_id
                return [self._event(event)]
            case TruncateItem():
                return self._truncate(msg)
            case SendText():
                content = [{"type": "input_text", "text": msg.text}]
                message: dict[str, Any] = {"type": "message", "role": "user", "content": content}
                if msg.item_id is not None:  # the session's id is the item's id
                    message = {"id": msg.item_id, **message}
                return [self._item(message)]
            case UpdateSession():
                return [self._update(msg)]
            case ToolResult():
                item = {"type": "function_call_output", "call_id": msg.call_id}
                return [self._item({**item, "output": msg.output})]
            case _:
                raise TypeError(
                    f"not a link input the OpenAI codec can encode: {type(msg).__name__}"
                )

    def _update(self, msg: UpdateSession) -> str:
        """A ``session.update`` with only what changed (the service keeps the rest)."""
        session: dict[str, Any] = {"type": "realtime"}
        if msg.instructions is not None:
            session["instructions"] = msg.instructions
        if msg.tools is not None:
            session["tools"] = [t.to_wire() for t in msg.tools]
        return self._event({"type": "session.update", "session": session})

    def _end_of_input(self) -> list[str]:
        """Close the turn the service may hold, in one way only.

        Manual turns: commit what was appended (at least 100 ms). Server VAD: the
        service ends the turn itself -- trailing silence of its ``silence_duration_ms``
        (and a margin) makes its VAD close a turn still open, speech that ended just
        before the input did included; a commit as well would race the service's own
        end of speech and make a second, phantom turn. Semantic VAD (no silence
        length to rely on): commit if the service heard speech start and not stop.
        """
        turn = self.config.turn_detection
        state = self.state
        if turn is None:
            return [self._commit()] if state.uncommitted >= state.min_commit_samples else []
        if isinstance(turn, ServerVad):
            if state.uncommitted <= 0:
                return []
            fmt = self.config.audio
            n = (turn.silence_duration_ms + _SILENCE_MARGIN_MS) * (fmt.sample_rate // 1000)
            if fmt.is_pcm:
                zeros = np.zeros((n, 1), np.int16)
            else:
                zeros = np.full((n, 1), _SILENCE_CODE[fmt.encoding], np.uint8)
            pts = state.next_pts or 0
            silence = AudioFrame(zeros, fmt.sample_rate, pts, 0, fmt.encoding)
            wires = self._audio((silence,))
            state.uncommitted = 0  # the silence closes whatever turn was open
            return wires
        return [self._commit()] if state.speaking and state.uncommitted > 0 else []

    def _commit(self) -> str:
        self.state.uncommitted = 0
        return self._simple("input_audio_buffer.commit")

    def _truncate(self, msg: TruncateItem) -> list[str]:
        if isinstance(msg.audio_end_ms, bool) or not isinstance(msg.audio_end_ms, int):
            raise ValueError(f"audio_end_ms must be an int, got {msg.audio_end_ms!r}")
        if msg.audio_end_ms < 0 or msg.content_index < 0:
            raise ValueError(
                f"cannot truncate at {msg.audio_end_ms} ms / content {msg.content_index}"
            )
        if msg.audio_end_ms == 0:
            return []  # the service rejects a truncate before anything played
        event = {
            "type": "conversation.item.truncate",
            "item_id": msg.item_id,
            "content_index": msg.content_index,
            "audio_end_ms": msg.audio_end_ms,
        }
        return [self._event(event)]

    def _event(self, event: dict[str, Any]) -> str:
        """``event`` with a fresh ``event_id`` (second, as the service writes it)."""
        kind = event.pop("type")
        return dumps({"type": kind, "event_id": self.state.event_id(), **event})

    def _simple(self, kind: str) -> str:
        return self._event({"type": kind})

    def _item(self, item: dict[str, Any]) -> str:
        return self._event({"type": "conversation.item.create", "item": item})

    def _audio(self, frames: Sequence[AudioFrame]) -> list[str]:
        fmt = self.config.audio
        # One pass over the frames (this runs per live frame): check everything,
        # noting the runs of contiguous pts, before changing any state.
        chunks: list[bytes] = []
        starts: list[tuple[int, int]] = []  # (offset into the batch, pts) of each run
        offset = 0
        next_pts: int | None = self.state.next_pts
        end = 0
        # int16 is little-endian on the wire; G.711 codes are single bytes.
        swap = fmt.encoding == "pcm16" and not _NATIVE_LE
        for frame in frames:
            if not isinstance(frame, AudioFrame):
                raise TypeError(f"a FrameBatch holds AudioFrames, got {type(frame).__name__}")
            pcm = frame.pcm
            samples, channels = pcm.shape
            if (
                frame.sample_rate != fmt.sample_rate
                or channels != 1
                or frame.encoding != fmt.encoding
            ):
                raise ValueError(
                    f"this OpenAI Realtime session takes {fmt.sample_rate} Hz mono "
                    f"{fmt.encoding} audio ({self.config.audio_format}); got "
                    f"{frame.sample_rate} Hz {frame.encoding}, {channels} channel(s): "
                    "convert it first"
                )
            if samples:
                pts = frame.pts
                if pts != next_pts:
                    starts.append((offset, pts))
                next_pts = end = pts + samples
                offset += samples
                chunks.append(pcm.astype("<i2").tobytes() if swap else pcm.tobytes())
        if not chunks:
            return []
        self.state.note_run(starts, offset, end)
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        step = self.config.append_step
        if len(raw) <= step:
            return [self._append(raw)]
        return [self._append(raw[i : i + step]) for i in range(0, len(raw), step)]

    def _append(self, pcm: bytes) -> str:
        # Built by hand around the base64 (json.dumps would scan megabytes of it for
        # escapes), from the envelope's constant parts.
        audio = binascii.b2a_base64(pcm, newline=False).decode("ascii")
        return "".join((_APPEND_HEAD, self.state.event_id(), _APPEND_MID, audio, _APPEND_TAIL))
