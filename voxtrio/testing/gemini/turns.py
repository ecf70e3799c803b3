"""Automatic turns of the fake Gemini Live service: it hears the user and answers.

Pure state, no I/O (the fake service owns one :class:`AutoTurns` per connection and
turns its messages into frames). As on the real service:

* under automatic activity detection (the default), the shared energy VAD
  (:class:`~voxtrio.testing.vad.EnergyVad`, at 16 kHz) finds the user's turns; with
  ``realtimeInputConfig.automaticActivityDetection.disabled: true`` the client's
  ``activityStart`` / ``activityEnd`` bracket them instead. ``audioStreamEnd`` ends
  a turn in progress either way;
* at a turn's end the service sends the user's transcript in pieces
  (``serverContent.inputTranscription``), then a model turn: 24 kHz reply audio
  (``modelTurn.parts[].inlineData``) with its ``outputTranscription`` in pieces, one
  piece after each chunk, then ``generationComplete`` and ``turnComplete``;
* the user starting to speak (or an ``activityStart``) while a model turn is still
  being sent interrupts it: ``interrupted``, then ``turnComplete`` (the service's
  order: no ``generationComplete`` in an interrupted turn), and nothing more of it.
  With ``activityHandling: NO_INTERRUPTION`` nothing is interrupted: a turn that ends
  during a model turn is answered after it.

After each ``turnComplete`` it sends a resumable ``sessionResumptionUpdate`` (when
the setup asked for resumption), as the service does once the session is resumable
again: the client learns what was consumed, and stops keeping it for a resume (the
link pushes back once 5 s of audio wait unconfirmed).

Paced (:attr:`GeminiTurns.pace_replies`), a model turn goes out in real time: one
chunk per chunk's length of audio, ``generationComplete`` with the last chunk and
``turnComplete`` once the last chunk would have played (the real service waits for
playback too); the owner calls :meth:`AutoTurns.advance_to` at
:attr:`AutoTurns.next_wakeup`. Unpaced, everything is returned at once.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs
import numpy as np

from ..canned import reply_tone, split_text
from ..vad import EnergyVad

__all__ = ["RESUMPTION_UPDATE", "AutoTurns", "GeminiTurns", "TurnEnd", "UserTurn"]

INPUT_RATE: Final = 16_000
REPLY_RATE: Final = 24_000
REPLY_MIME: Final = f"audio/pcm;rate={REPLY_RATE}"

#: Stands for a ``sessionResumptionUpdate`` among the messages :class:`AutoTurns`
#: returns (compared by identity): the owner, which knows what was consumed, makes it.
RESUMPTION_UPDATE: Final[dict[str, Any]] = {"sessionResumptionUpdate": {}}

#: What ended a user turn: the VAD heard enough silence, the client's
#: ``activityEnd``, or its ``audioStreamEnd``.
TurnEnd: TypeAlias = Literal["vad", "activityEnd", "audioStreamEnd"]


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be > 0, got {value!r}")


def _at_least(n: int) -> Callable[[object, attrs.Attribute[Any], int], None]:
    def check(_inst: object, attr: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < n:
            raise ValueError(f"{attr.name} must be an int >= {n}, got {value!r}")

    return check


@attrs.frozen
class GeminiTurns:
    """How the fake service takes turns by itself (``GeminiScript(turns=...)``).

    Attributes:
        vad: under automatic activity detection, find turns with the energy VAD;
            else a turn is the audio up to each ``audioStreamEnd`` (and the user's
            audio never interrupts). Manual activity (``activityStart`` /
            ``activityEnd``) works either way.
        vad_rms_threshold: int16 RMS that counts as speech.
        silence_duration_ms, prefix_padding_ms: the VAD's, unless the client's
            ``automaticActivityDetection`` names its own (``silenceDurationMs``,
            ``prefixPaddingMs``).
        transcripts: the user's canned transcripts, taken in turn across the server;
            by default ``"loopback utterance N"``, N counting turns across the server.
        transcript_pieces: how many ``inputTranscription`` messages carry one
            transcript (fewer when it is shorter than that).
        reply_text: what the model says (its ``outputTranscription``, in one piece
            per audio chunk).
        reply_ms: the length of the reply audio (a tone at ``reply_tone_hz``).
        reply_chunk_ms: audio per ``modelTurn`` message.
        pace_replies: send reply audio in real time, so a user can barge in.
        resumption_updates: a ``sessionResumptionUpdate`` after each
            ``turnComplete`` (when the client's setup has ``sessionResumption``).
    """

    vad: bool = True
    vad_rms_threshold: float = attrs.field(default=500.0, validator=_positive)
    silence_duration_ms: int = attrs.field(default=500, validator=_at_least(0))
    prefix_padding_ms: int = attrs.field(default=300, validator=_at_least(0))
    transcripts: tuple[str, ...] = ()
    transcript_pieces: int = attrs.field(default=3, validator=_at_least(1))
    reply_text: str = "Hello from the loopback provider."
    reply_ms: int = attrs.field(default=400, validator=_at_least(0))
    reply_tone_hz: float = attrs.field(default=440.0, validator=_positive)
    reply_chunk_ms: int = attrs.field(default=100, validator=_at_least(1))
    pace_replies: bool = False
    resumption_updates: bool = True

    def reply_audio(self) -> np.ndarray:
        """The reply audio: int16 mono at 24 kHz, ``reply_ms * 24`` samples."""
        return reply_tone(self.reply_ms, self.reply_tone_hz, rate=REPLY_RATE)


@attrs.frozen
class UserTurn:
    """One user turn the service heard and answered.

    Attributes:
        transcript: the text it was transcribed as.
        ended_by: what ended it (:data:`TurnEnd`).
        end_ms: where it ended, in ms of this connection's input audio.
    """

    transcript: str
    ended_by: TurnEnd
    end_ms: int


@attrs.define
class _Step:
    due: float
    messages: list[dict[str, Any]]
    model: bool  # part of a model turn (the user's transcript is not)


class AutoTurns:
    """One connection's automatic turns (see the module docstring).

    Args:
        script: the turn script.
        setup: the client's ``setup`` (its ``realtimeInputConfig`` decides manual or
            automatic activity, the VAD's timings and barge-in).
        next_transcript: gives the next canned transcript (shared across the
            server's connections, so the numbering goes on across reconnects).

    Every method returns the server messages due, as JSON objects, in order.
    """

    def __init__(
        self,
        script: GeminiTurns,
        setup: Mapping[str, Any],
        next_transcript: Callable[[GeminiTurns], str],
    ) -> None:
        self.script = script
        self._next_transcript = next_transcript
        realtime = setup.get("realtimeInputConfig")
        realtime = realtime if isinstance(realtime, dict) else {}
        auto = realtime.get("automaticActivityDetection")
        auto = auto if isinstance(auto, dict) else {}
        #: the client marks turns itself (``activityStart``/``activityEnd``)
        self.manual = auto.get("disabled") is True
        self.barge_in = realtime.get("activityHandling") != "NO_INTERRUPTION"
        self._updates = script.resumption_updates and "sessionResumption" in setup
        self.vad: EnergyVad | None = None
        if not self.manual and script.vad:
            self.vad = EnergyVad(
                rms_threshold=script.vad_rms_threshold,
                prefix_padding_ms=_ms(auto.get("prefixPaddingMs"), script.prefix_padding_ms),
                silence_duration_ms=_ms(auto.get("silenceDurationMs"), script.silence_duration_ms),
                rate=INPUT_RATE,
            )
        self.samples = 0  # input audio received on the connection
        self._open = False  # a user turn in progress
        self._steps: list[_Step] = []  # what is still to be sent, in order
        #: every user turn answered, in order
        self.turns: list[UserTurn] = []
        #: model turns cut short by the user
        self.interruptions = 0

    # ------------------------------------------------------------- state

    @property
    def speaking(self) -> bool:
        """A user turn is in progress."""
        return self._open

    @property
    def model_turn_in_progress(self) -> bool:
        """A model turn is under way (partly sent, or waiting behind another under
        ``NO_INTERRUPTION``) and its ``turnComplete`` has not gone out."""
        return any(s.model for s in self._steps)

    @property
    def next_wakeup(self) -> float | None:
        """When the next paced message is due (None: nothing waits)."""
        return self._steps[0].due if self._steps else None

    def advance_to(self, now: float) -> list[dict[str, Any]]:
        """Every message due by ``now``, in order."""
        out: list[dict[str, Any]] = []
        while self._steps and self._steps[0].due <= now:
            out += self._steps.pop(0).messages
        return out

    # ------------------------------------------------------------- input

    def audio(self, pcm: np.ndarray, now: float) -> list[dict[str, Any]]:
        """16 kHz mono int16 input audio arrived."""
        self.samples += len(pcm)
        out: list[dict[str, Any]] = []
        if self.vad is None:
            if not self.manual and len(pcm):
                self._open = True  # a turn is whatever comes before the stream's end
            return out
        for kind, at_ms in self.vad.push(pcm):
            out += self._start(now) if kind == "start" else self._end("vad", at_ms, now)
        return out

    def activity_start(self, now: float) -> list[dict[str, Any]]:
        """The client's ``activityStart`` (manual activity only)."""
        return self._start(now) if self.manual else []

    def activity_end(self, now: float) -> list[dict[str, Any]]:
        """The client's ``activityEnd`` (manual activity only)."""
        if not self.manual:
            return []
        return self._end("activityEnd", self._input_ms(), now)

    def stream_end(self, now: float) -> list[dict[str, Any]]:
        """The client's ``audioStreamEnd``: a turn in progress ends here."""
        if self.vad is not None:
            self.vad.reset()
        return self._end("audioStreamEnd", self._input_ms(), now)

    # ------------------------------------------------------------- turns

    def _input_ms(self) -> int:
        return self.samples * 1000 // INPUT_RATE

    def _start(self, now: float) -> list[dict[str, Any]]:
        if self._open:
            return []
        self._open = True
        return self._interrupt() if self.barge_in else []

    def _interrupt(self) -> list[dict[str, Any]]:
        if not self.model_turn_in_progress:
            return []
        self._steps.clear()
        self.interruptions += 1
        return [
            {"serverContent": {"interrupted": True}},
            {"serverContent": {"turnComplete": True}},
            *self._update(),
        ]

    def _update(self) -> list[dict[str, Any]]:
        return [RESUMPTION_UPDATE] if self._updates else []

    def _end(self, why: TurnEnd, end_ms: int, now: float) -> list[dict[str, Any]]:
        if not self._open:
            return []
        self._open = False
        out = self._interrupt() if self.barge_in else []
        transcript = self._next_transcript(self.script)
        self.turns.append(UserTurn(transcript, why, end_ms))
        start = max([now, *(s.due for s in self._steps)])
        heard = [
            {"serverContent": {"inputTranscription": {"text": piece}}}
            for piece in split_text(transcript, self.script.transcript_pieces)
        ]
        if heard:
            self._steps.append(_Step(start, heard, model=False))
        self._steps += self._model_turn(start)
        return out + self.advance_to(now)

    def _model_turn(self, start: float) -> list[_Step]:
        s = self.script
        pcm = s.reply_audio()
        chunk = s.reply_chunk_ms * REPLY_RATE // 1000
        chunks = [pcm[i : i + chunk] for i in range(0, len(pcm), chunk)]
        said = split_text(s.reply_text, max(1, len(chunks)))
        steps: list[_Step] = []
        due = start
        for i in range(max(len(chunks), 1)):
            msgs: list[dict[str, Any]] = []
            if i < len(chunks):
                data = base64.b64encode(chunks[i].astype("<i2").tobytes()).decode("ascii")
                part = {"inlineData": {"mimeType": REPLY_MIME, "data": data}}
                msgs.append({"serverContent": {"modelTurn": {"parts": [part]}}})
            if i < len(said):
                msgs.append({"serverContent": {"outputTranscription": {"text": said[i]}}})
            steps.append(_Step(due, msgs, model=True))
            if i < len(chunks) and s.pace_replies:
                due += len(chunks[i]) / REPLY_RATE
        steps[-1].messages.append({"serverContent": {"generationComplete": True}})
        done = {
            "serverContent": {"turnComplete": True},
            "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 20},
        }
        if s.pace_replies:  # after the last chunk has played
            steps.append(_Step(due, [done, *self._update()], model=True))
        else:
            steps[-1].messages += [done, *self._update()]
        return steps


def _ms(value: object, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default
