"""An energy-threshold voice activity detector: the turn detection of both loopback
servers (OpenAI Realtime input is 24 kHz, Gemini Live input 16 kHz).

Pure numpy, no protocol: each server turns its ``("start", ms)`` / ``("stop", ms)``
events into its own wire messages.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["EnergyVad", "VadEvent"]

#: A change the detector saw: speech started or stopped, at this many ms of audio.
VadEvent = tuple[Literal["start", "stop"], int]


class EnergyVad:
    """A simple voice activity detector: RMS energy over ``block_ms`` blocks.

    Speech starts at the first block at or above ``rms_threshold`` (reported
    ``prefix_padding_ms`` earlier, not before 0) and stops once
    ``silence_duration_ms`` of blocks below it followed (reported at the end of that
    silence, as the services do). Pure and chunking-invariant: the events do not
    depend on how the audio is split across :meth:`push` calls.

    Args:
        rms_threshold: int16 RMS that counts as speech.
        prefix_padding_ms, silence_duration_ms: as above.
        block_ms: the analysis block.
        rate: the sample rate of the audio pushed (24 kHz by default, OpenAI's
            input; Gemini's is 16 kHz); ``block_ms`` must be a whole number of
            samples at it.

    Raises:
        ValueError: a threshold that is not a positive finite number, a negative
            duration, or a block that is not a whole number of samples.
    """

    def __init__(
        self,
        *,
        rms_threshold: float = 500.0,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        block_ms: int = 10,
        rate: int = 24_000,
    ) -> None:
        if not rms_threshold > 0 or not math.isfinite(rms_threshold):
            raise ValueError(f"rms_threshold must be > 0, got {rms_threshold!r}")
        if prefix_padding_ms < 0 or silence_duration_ms < 0 or block_ms < 1:
            raise ValueError("padding and silence must be >= 0 ms, blocks >= 1 ms")
        if rate < 1000 or rate * block_ms % 1000:
            raise ValueError(f"a {block_ms} ms block is not whole samples at {rate} Hz")
        self.rms_threshold = float(rms_threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.rate = rate
        self._block = block_ms * rate // 1000
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed in whole blocks
        self.speaking = False
        self._silence = 0

    def reset(self) -> None:
        """Forget speech in progress (after a clear or a manual commit); time goes on."""
        self.speaking = False
        self._silence = 0

    def ms(self, samples: int) -> int:
        """``samples`` at this detector's rate, in whole ms (rounded down)."""
        return samples * 1000 // self.rate

    def push(self, pcm: np.ndarray) -> list[VadEvent]:
        """Feed mono int16 samples; returns ``("start", audio_start_ms)`` and
        ``("stop", audio_end_ms)`` events, in order."""
        data = np.concatenate((self._pending, np.asarray(pcm, dtype=np.int16).reshape(-1)))
        whole = len(data) - len(data) % self._block
        self._pending = data[whole:]
        out: list[VadEvent] = []
        if not whole:
            return out
        blocks = data[:whole].reshape(-1, self._block).astype(np.float64)
        loud = np.sqrt(np.mean(blocks * blocks, axis=1)) >= self.rms_threshold
        silence_needed = self.silence_duration_ms * self.rate // 1000
        for is_loud in loud.tolist():
            start = self.position
            self.position += self._block
            if not self.speaking:
                if is_loud:
                    self.speaking = True
                    self._silence = 0
                    out.append(("start", max(0, self.ms(start) - self.prefix_padding_ms)))
            elif is_loud:
                self._silence = 0
            else:
                self._silence += self._block
                if self._silence >= silence_needed:
                    self.speaking = False
                    out.append(("stop", self.ms(self.position)))
        return out
