"""Cancelling from outside at a chosen point, for the cancel-anywhere properties."""

from __future__ import annotations

import trio


async def cancel_later(scope: trio.CancelScope, steps: int | None, at_s: float) -> None:
    """Cancel ``scope`` after ``steps`` scheduler checkpoints, or (``steps`` None)
    after ``at_s`` seconds of trio time."""
    if steps is not None:
        for _ in range(steps):
            await trio.lowlevel.checkpoint()
    else:
        await trio.sleep(at_s)
    scope.cancel()
