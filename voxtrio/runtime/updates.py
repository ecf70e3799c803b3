"""Mid-session changes: ``Session.update_instructions`` and ``Session.update_tools``.

Each is one send down the input path (an :class:`~voxtrio.messages.UpdateSession`,
in order with the audio and the other controls), and the session's state changes only
once it is sent, with no checkpoint between: cancelled, nothing changed. The state is
what every later (re)connect is configured from: the base instructions the
instructions source folds the transcript into, and the :class:`SessionTools` the
link's codecs declare.

Providers: OpenAI applies a ``session.update`` at once. Gemini Live has no such
message (its setup, instructions and tools included, is the first message of a
connection and cannot change), so its capabilities say no ``session_update`` and the
session raises :class:`~voxtrio.errors.UnsupportedError`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..codecs.transcript import instructions_with_context
from ..messages import UpdateSession
from .pipeline import Pipeline
from .tools import check_tools

__all__ = ["update_instructions", "update_tools"]


async def update_instructions(pipeline: Pipeline, instructions: str) -> None:
    """The live connection gets ``instructions`` with the transcript its own
    instructions carried (so the model keeps that context); later connects fold the
    transcript into them as usual.

    Raises:
        TypeError: ``instructions`` is not a str.
    """
    if not isinstance(instructions, str):
        raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
    text = instructions_with_context(instructions, pipeline.connect_items)
    await pipeline.send_input(UpdateSession(instructions=text), "update the instructions")
    pipeline.base_instructions = instructions  # no checkpoint since the send


async def update_tools(pipeline: Pipeline, tools: Iterable[object]) -> None:
    """The whole list the model may call from now on: the provider's own tools and
    ``tools`` (taken as ``open_session``'s ``tools``). The runner runs the new
    functions from the next call on.

    Raises:
        TypeError, ValueError: as for ``open_session``'s ``tools``.
    """
    settings = pipeline.plan.tools
    new = check_tools(tools)
    declared = settings.declaring(new)
    await pipeline.send_input(UpdateSession(tools=declared), "update the tools")
    settings.set(new)  # no checkpoint since the send
