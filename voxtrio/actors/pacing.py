"""Real-time pacing on trio's clock.

Deadlines are computed from an exact running total of media time since the schedule
started, never by adding rounded sleeps, so an hour of 20 ms frames ends within one
scheduler tick of one hour. Falling behind by more than ``max_lag_s`` (a stalled
consumer, a suspended laptop) restarts the schedule instead of bursting to catch up.
"""

from __future__ import annotations

from fractions import Fraction

import trio

__all__ = ["Pacer"]


class Pacer:
    """Sleep until each media chunk is due.

    Args:
        max_lag_s: how far behind schedule a caller may fall before the schedule
            restarts at "now" (bounded catch-up: at most this much audio goes out in
            a burst).
    """

    __slots__ = ("_elapsed", "_max_lag_s", "_restarts", "_start")

    def __init__(self, max_lag_s: float = 0.2) -> None:
        if not max_lag_s >= 0:
            raise ValueError(f"max_lag_s must be >= 0, got {max_lag_s!r}")
        self._max_lag_s = max_lag_s
        self._start: float | None = None
        self._elapsed = Fraction(0)
        self._restarts = 0

    @property
    def restarts(self) -> int:
        """How many times the schedule restarted after falling too far behind."""
        return self._restarts

    def reset(self) -> None:
        """Forget the schedule; the next chunk is due at once (after an idle gap)."""
        self._start = None
        self._elapsed = Fraction(0)

    async def wait(self, duration: Fraction) -> None:
        """Wait until a chunk of ``duration`` seconds is due, then book it.

        The first chunk after construction or :meth:`reset` is due immediately; each
        later chunk is due when the previous ones' total duration has elapsed.
        Always a checkpoint.
        """
        await self.wait_due()
        self.book(duration)

    async def wait_due(self) -> None:
        """Wait until the next chunk is due without booking it: a caller whose chunk
        went away meanwhile (a cancelled reply) sends another in the same slot.
        Follow with :meth:`book`. Always a checkpoint."""
        now = trio.current_time()
        if self._start is None:
            self._start = now
            self._elapsed = Fraction(0)
        due = self._start + float(self._elapsed)
        if now - due > self._max_lag_s:
            self._restarts += 1
            self._start = now
            self._elapsed = Fraction(0)
            due = now
        await trio.sleep_until(due)

    def book(self, duration: Fraction) -> None:
        """Book a chunk of ``duration`` seconds sent at its due time."""
        self._elapsed += duration
