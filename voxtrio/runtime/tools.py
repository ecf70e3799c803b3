"""The session's tool runner, and how the session's tools reach the provider.

:class:`ToolRunner` is told every event the hub routes (:meth:`ToolRunner.notice`,
never blocking the hub). For a :class:`~voxtrio.messages.ToolCall` of a tool with a
function it runs the function in its own nursery, with the tool's timeout and its
arguments checked first, and sends the :class:`~voxtrio.messages.ToolResult` down
the input path like ``Session.send_tool_result`` (so the link sends it once, and the
hub stores it once it is on the wire). Providers that do not go on by themselves
after a result (OpenAI) are then asked for a reply: once, when no tool of the batch
is still running and the reply that made the calls has ended.

A tool that raises, times out or gets arguments that do not fit sends the model an
error result it can read (``{"error": ...}``) and reports an
``ErrorEvent(source="tools")`` to the app. A call the provider cancels
(``ToolCallCancelled``), or an interrupted reply, cancels the running function
(a sync function's worker thread cannot be stopped: its result is dropped).

:class:`SessionTools` holds what the provider is told: the provider's own tools plus
the session's. :func:`link_provider` makes the copy of a websocket provider whose
codecs declare them on every (re)connect.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from typing import Any

import attrs
import trio

from ..codecs.openai_realtime.config import FunctionTool
from ..codecs.wire import WireCodec
from ..errors import SessionClosedError, UnsupportedError
from ..messages import (
    CreateReply,
    ErrorEvent,
    Event,
    LinkInput,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ToolCall,
    ToolCallCancelled,
    ToolResult,
)
from ..tools import Tool, ToolArgumentsError, as_tool
from .provider import Provider
from .websocket_provider import WebsocketProvider

__all__ = ["SessionTools", "ToolRunner", "check_tools", "link_provider"]


def check_tools(tools: Iterable[object] | None) -> tuple[Tool, ...]:
    """``open_session``'s ``tools`` as :class:`Tool` objects, names unique.

    Raises:
        TypeError: not a list of tools or functions.
        ValueError: a name twice.
    """
    if tools is None:
        return ()
    if isinstance(tools, str | bytes) or not isinstance(tools, Iterable):
        raise TypeError(f"tools must be a list of tools or functions, got {tools!r}")
    out = tuple(as_tool(t) for t in tools)
    names = [t.name for t in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"tool names must be unique; given twice: {', '.join(twice)}")
    return out


def _provider_tools(codec: WireCodec) -> tuple[FunctionTool, ...]:
    config = getattr(codec, "config", None)
    tools = getattr(config, "tools", ())
    return tuple(tools)


class SessionTools:
    """The tools of one session: the declarations the provider gets on every
    (re)connect, and the functions the runner calls (by name)."""

    def __init__(self, provider_tools: tuple[FunctionTool, ...], tools: tuple[Tool, ...]) -> None:
        self._provider_tools = provider_tools
        #: the link's codecs do not read :attr:`declared`: declare by UpdateSession
        self.in_band = False
        self.tools: tuple[Tool, ...] = ()
        self.set(tools)

    def declaring(self, tools: tuple[Tool, ...]) -> tuple[FunctionTool, ...]:
        """What the provider would be told with the session's tools ``tools``.

        Raises:
            ValueError: a session tool has the name of one of the provider's.
        """
        clash = sorted({t.name for t in tools} & {t.name for t in self._provider_tools})
        if clash:
            raise ValueError(
                f"tool {', '.join(clash)} is declared by the provider already; "
                "declare each tool in one place"
            )
        return self._provider_tools + tuple(t.declaration for t in tools)

    def set(self, tools: tuple[Tool, ...]) -> None:
        """Replace the session's tools (the provider's own stay); see :meth:`declaring`."""
        self.declaring(tools)
        self.tools = tools

    @property
    def declared(self) -> tuple[FunctionTool, ...]:
        return self.declaring(self.tools)

    def get(self, name: str) -> Tool | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None


def _retooled(codec: WireCodec, tools: tuple[FunctionTool, ...]) -> WireCodec:
    """``codec`` declaring ``tools``: a codec made from an attrs config with a
    ``tools`` field (both built-in codecs are), remade with those tools."""
    config: Any = getattr(codec, "config")  # noqa: B009 - checked by _can_retool
    remade: WireCodec = type(codec)(attrs.evolve(config, tools=tools))  # type: ignore[call-arg]
    return remade


def _can_retool(codec: WireCodec) -> bool:
    config = getattr(codec, "config", None)
    if config is None or not attrs.has(type(config)):
        return False
    return "tools" in attrs.fields_dict(type(config))


def link_provider(provider: Provider, tools: tuple[Tool, ...]) -> tuple[Provider, SessionTools]:
    """The provider the session runs its link with, and the session's tools.

    A websocket provider whose codec has a ``tools`` option is copied (the app's
    object is not changed) so that each connection's codec declares the provider's
    tools and the session's (:class:`SessionTools`, changed by
    ``Session.update_tools``, read at every connect). Another provider gets the
    session's tools in band, as an ``UpdateSession`` first thing, if its
    capabilities say ``session_update`` (:attr:`SessionTools.in_band`).

    Raises:
        UnsupportedError: session tools for a provider that cannot declare them.
        ValueError: a session tool has the name of one of the provider's.
    """
    if not isinstance(provider, WebsocketProvider):
        settings = SessionTools((), tools)
        settings.in_band = True
        if tools and not provider.capabilities.session_update:
            raise UnsupportedError(f"the {provider.name} provider cannot be given tools")
        return provider, settings
    factory = provider.codec_factory
    probe = factory()
    settings = SessionTools(_provider_tools(probe), tools)
    if not _can_retool(probe):
        settings.in_band = True
        if tools:
            raise UnsupportedError(f"the {provider.name} codec cannot declare tools")
        return provider, settings

    def make_codec() -> WireCodec:
        return _retooled(factory(), settings.declared)

    make_codec()  # fails now, at open_session, if it ever would
    return provider.with_codec_factory(make_codec), settings


def _error_output(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


class ToolRunner:
    """Runs the session's tool functions (see the module docstring).

    Args:
        tools: the session's tools (read at each call, so updates apply).
        send: sends a link input down the session's input path (one channel op).
        continue_reply: ask for a reply after the results (the provider does not
            go on by itself).
    """

    def __init__(
        self,
        tools: SessionTools,
        send: Callable[[LinkInput], Awaitable[None]],
        *,
        continue_reply: bool,
    ) -> None:
        self._tools = tools
        self._send = send
        self._continue = continue_reply
        self._tx, self._rx = trio.open_memory_channel[Event](math.inf)
        self._running: dict[str, trio.CancelScope] = {}
        self._reply_active = False
        self._owe_reply = False

    def notice(self, event: Event) -> None:
        """The hub routed ``event`` (synchronous; never blocks)."""
        if isinstance(
            event, ToolCall | ToolCallCancelled | ReplyStarted | ReplyDone | ReplyInterrupted
        ):
            with contextlib.suppress(trio.BrokenResourceError):  # the runner has stopped
                self._tx.send_nowait(event)

    async def run(
        self,
        events: trio.MemorySendChannel[Event],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until cancelled (the session closing)."""
        with events, self._rx:
            async with trio.open_nursery() as nursery:
                task_status.started()
                async for event in self._rx:
                    await self._on(event, nursery, events)

    async def _on(
        self, event: Event, nursery: trio.Nursery, events: trio.MemorySendChannel[Event]
    ) -> None:
        match event:
            case ToolCall(call_id=call_id, name=name):
                tool = self._tools.get(name)
                if tool is not None and tool.function is not None:
                    scope = trio.CancelScope()
                    self._running[call_id] = scope
                    nursery.start_soon(self._call, tool, event, scope, events)
            case ToolCallCancelled(call_ids=call_ids):
                for call_id in call_ids:
                    if (running := self._running.get(call_id)) is not None:
                        running.cancel()
            case ReplyInterrupted():
                for running in self._running.values():
                    running.cancel()
                self._owe_reply = False  # the user spoke: the model answers that
            case ReplyStarted():
                self._reply_active = True
            case ReplyDone():
                self._reply_active = False
                await self._maybe_continue()
            case _:
                pass

    async def _call(
        self,
        tool: Tool,
        call: ToolCall,
        scope: trio.CancelScope,
        events: trio.MemorySendChannel[Event],
    ) -> None:
        error: ErrorEvent | None = None
        output = ""
        with scope:
            try:
                timeout = tool.timeout_s
                with trio.fail_after(timeout) if timeout is not None else nullcontext():
                    output = await tool.invoke(call.arguments)
            except trio.TooSlowError:
                message = f"tool {tool.name} timed out after {tool.timeout_s} s"
                error = ErrorEvent(message, "tool_timeout", source="tools")
            except ToolArgumentsError as exc:
                error = ErrorEvent(str(exc), "tool_arguments", source="tools")
            except Exception as exc:  # the app's function failed: the model is told
                message = f"tool {tool.name} raised {type(exc).__name__}: {exc}"
                error = ErrorEvent(message, "tool_error", source="tools")
        self._running.pop(call.call_id, None)
        if scope.cancelled_caught:
            return  # cancelled by the provider or an interruption: nothing to answer
        if error is not None:
            output = _error_output(error.message)
        try:
            if error is not None:
                await events.send(error)
            await self._send(ToolResult(call.call_id, output, call.name))
        except (SessionClosedError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        self._owe_reply = True
        await self._maybe_continue()

    async def _maybe_continue(self) -> None:
        """Ask for a reply once the batch is answered and the calling reply ended."""
        if not (self._continue and self._owe_reply):
            return
        if self._running or self._reply_active:
            return
        self._owe_reply = False
        try:
            await self._send(CreateReply())
        except SessionClosedError:
            return

