"""What the loopback servers say when no test scripts the words: canned reply audio
and text cut into pieces, shared by the OpenAI and the Gemini loopback.

Pure numpy, no protocol.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["reply_tone", "split_text"]


def reply_tone(ms: int, hz: float, *, rate: int = 24_000) -> np.ndarray:
    """A quarter-scale sine of ``ms`` ms at ``hz``: int16 mono at ``rate`` (both
    services send replies at 24 kHz), ``ms * rate // 1000`` samples."""
    t = np.arange(ms * rate // 1000, dtype=np.float64) / rate
    return np.round(0.25 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` cut into at most ``pieces`` non-empty pieces that concatenate back to
    it exactly, as a service streams a transcript: cuts fall before a word where
    there are enough words, else anywhere; fewer pieces than asked only when the
    text is shorter than that (no pieces for ``""``).

    Raises:
        ValueError: ``pieces`` < 1.
    """
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces!r}")
    if not text:
        return []
    starts = [i for i in range(1, len(text)) if text[i] != " " and text[i - 1] == " "]
    if len(starts) < pieces - 1:
        starts = list(range(1, len(text)))  # too few words: cut between characters
    n = min(pieces, len(starts) + 1)
    # n - 1 cuts spread evenly over the candidates
    cuts = [starts[(k * len(starts)) // n] for k in range(1, n)] if n > 1 else []
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]
