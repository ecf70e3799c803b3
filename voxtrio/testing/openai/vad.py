"""The fake service's input audio buffer and its turn detection.

The energy VAD itself is shared with the Gemini loopback: it lives in
:mod:`voxtrio.testing.vad` and is re-exported here (the old import path).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ...codecs.g711 import alaw_decode, mulaw_decode
from ..vad import EnergyVad
from .events import RATE, ms_or

__all__ = ["EnergyVad", "InputAudio"]


class InputAudio:
    """One connection's input audio: all of it, the part not yet committed, and the
    VAD over it (when the session's turn detection is on)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        #: the appended audio exactly as it came off the wire, in order
        self.wire: list[bytes] = []
        self.samples = 0  # received on the connection
        self.uncommitted = 0  # appended since the last commit / clear / turn
        self.vad: EnergyVad | None = None
        self._turn_start = 0  # where the audio of the next turn begins (samples)
        self._turn: list[np.ndarray] = []  # the audio received since then

    @property
    def pcm(self) -> np.ndarray:
        """All input audio received: int16 ``(samples, 1)``."""
        if not self._chunks:
            return np.zeros((0, 1), dtype=np.int16)
        return np.concatenate(self._chunks).reshape(-1, 1)

    @property
    def speaking(self) -> bool:
        return self.vad is not None and self.vad.speaking

    def configure(self, detection: dict[str, Any] | None, *, threshold: float | None) -> None:
        """Follow the session's ``turn_detection`` (None, or ``threshold`` None: no VAD)."""
        if threshold is None or detection is None:
            self.vad = None
            return
        padding = ms_or(detection.get("prefix_padding_ms"), 300)
        silence = ms_or(detection.get("silence_duration_ms"), 500)
        vad = self.vad
        if vad is None or vad.prefix_padding_ms != padding or vad.silence_duration_ms != silence:
            new = EnergyVad(
                rms_threshold=threshold, prefix_padding_ms=padding, silence_duration_ms=silence
            )
            # keep the clock: audio_ms counts the whole connection
            new.position = vad.position if vad is not None else self.samples
            self.vad = new

    def append(
        self, raw: bytes, encoding: str = "pcm16"
    ) -> list[tuple[Literal["start", "stop"], int]]:
        """Little-endian int16 samples in (or 8 kHz G.711 codes, ``encoding``
        ``mulaw``/``alaw``); the VAD's events out.

        G.711 is decoded and held at 24 kHz (each sample three times: the VAD judges
        energy, not fidelity), so every millisecond count stays in one unit; the raw
        bytes are kept in :attr:`wire`.
        """
        self.wire.append(raw)
        if encoding == "pcm16":
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        else:
            decode = mulaw_decode if encoding == "mulaw" else alaw_decode
            pcm = np.repeat(decode(raw), RATE // 8000)
        self._chunks.append(pcm)
        self._turn.append(pcm)
        self.samples += len(pcm)
        self.uncommitted += len(pcm)
        return [] if self.vad is None else self.vad.push(pcm)

    def committed(self, end: int | None = None) -> np.ndarray:
        """A turn was committed, up to sample ``end`` (default: all received):
        nothing is uncommitted; returns the turn's audio (int16 mono). The VAD is
        left alone (it may already be past the turn's end, in the same append)."""
        self.uncommitted = 0
        end = self.samples if end is None else max(self._turn_start, min(end, self.samples))
        since = np.concatenate([np.zeros(0, np.int16), *self._turn])
        cut = end - self._turn_start
        turn, rest = since[:cut].copy(), since[cut:].copy()
        self._turn = [rest] if len(rest) else []
        self._turn_start = end
        return turn

    def cleared(self) -> None:
        """The buffer was cleared: the next turn's audio starts after what was sent."""
        self.uncommitted = 0
        self._turn = []
        self._turn_start = self.samples

    def forget_speech(self) -> None:
        """A clear, or a manual commit mid-speech: speech in progress is forgotten."""
        if self.vad is not None:
            self.vad.reset()
