"""Tools as Python functions: ``@voxtrio.tool`` and :meth:`Tool.from_function`.

A :class:`Tool` is what the model is told (name, description, a JSON Schema of the
arguments) plus, optionally, the function the session runs when the model calls it::

    @voxtrio.tool
    async def weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, float]:
        \"\"\"The current temperature in a city.\"\"\"
        ...

    async with voxtrio.open_session(provider, tools=[weather]) as session: ...

The schema and the argument checks come from pydantic (a model built from the
signature's type hints), so whatever pydantic understands works as a parameter type:
builtins, ``Literal``, enums, dataclasses, pydantic models, ``Annotated[..., Field(
description=...)]``. A tool without a function (``Tool(name=..., parameters=...)``)
is only declared: the app answers its calls with ``Session.send_tool_result``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, overload

import attrs
import pydantic
import pydantic_core
import trio

from .function_tool import FunctionTool

__all__ = ["FunctionTool", "Tool", "ToolArgumentsError", "tool"]

#: How long a tool may run by default before the session gives up on it.
DEFAULT_TIMEOUT_S = 30.0


class ToolArgumentsError(ValueError):
    """The model's arguments did not match the tool's parameters."""


def _timeout(_inst: object, _attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"timeout_s must be a finite number > 0 or None, got {value!r}")


@attrs.frozen(eq=False)
class Tool:
    """A function the model may call.

    Attributes:
        name: 1..64 letters, digits, ``_`` or ``-``.
        description: what it does, for the model.
        parameters: the JSON Schema object of its arguments.
        function: what the session runs for a call (sync functions run in a worker
            thread); None: the app dispatches the calls itself.
        timeout_s: how long a call may run; past it the model gets an error result
            (a sync function's thread cannot be stopped and finishes unheard).
    """

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}
    )
    function: Callable[..., Any] | None = None
    timeout_s: float | None = attrs.field(default=DEFAULT_TIMEOUT_S, validator=_timeout)
    _model: type[pydantic.BaseModel] | None = attrs.field(default=None, alias="_model")

    def __attrs_post_init__(self) -> None:
        self.declaration  # noqa: B018 - validates the name and the schema now
        if self.function is not None and not callable(self.function):
            raise TypeError(f"function must be callable, got {self.function!r}")

    @property
    def declaration(self) -> FunctionTool:
        """What the provider is told (the codecs' tool type)."""
        return FunctionTool(self.name, self.description, self.parameters)

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> Tool:
        """A tool running ``fn``: its name, its docstring as the description, and
        the JSON Schema of its parameters from their type hints.

        Raises:
            TypeError: ``fn`` is not a function, or takes ``*args``/``**kwargs``
                or positional-only parameters (the model passes arguments by name).
            pydantic.PydanticSchemaGenerationError: a parameter type pydantic
                cannot describe.
        """
        if not callable(fn):
            raise TypeError(f"a tool needs a function, got {fn!r}")
        model = _arguments_model(fn)
        schema = model.model_json_schema()
        _drop_titles(schema)
        schema.setdefault("properties", {})
        return cls(
            name=name if name is not None else getattr(fn, "__name__", ""),
            description=description if description is not None else _summary(fn),
            parameters=schema,
            function=fn,
            timeout_s=timeout_s,
            _model=model,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly (a decorated function stays callable)."""
        if self.function is None:
            raise TypeError(f"tool {self.name!r} has no function")
        return self.function(*args, **kwargs)

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """The call's keyword arguments from the model's JSON ``arguments``.

        Raises:
            ToolArgumentsError: not a JSON object, or not what the parameters say
                (the message says what is wrong, for the model to read).
        """
        if self._model is None:
            return _json_object(arguments)
        try:
            parsed = self._model.model_validate_json(arguments or "{}")
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {problems}") from None
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    async def invoke(self, arguments: str) -> str:
        """Run the function for one call: check the arguments, call it (a sync one
        in a worker thread), and return its result as the output text (a str as
        it is, anything else as JSON).

        Raises:
            ToolArgumentsError: bad arguments; whatever the function raises.
        """
        fn = self.function
        if fn is None:
            raise TypeError(f"tool {self.name!r} has no function")
        kwargs = self.parse_arguments(arguments)
        if _is_async(fn):
            result = await fn(**kwargs)
        else:
            result = await trio.to_thread.run_sync(
                functools.partial(fn, **kwargs), abandon_on_cancel=True
            )
        return as_output(result)


def as_output(result: object) -> str:
    """A tool's result as the text the model reads: a str as it is, else JSON."""
    if isinstance(result, str):
        return result
    return pydantic_core.to_json(result, fallback=repr).decode("utf-8")


def _is_async(fn: Callable[..., Any]) -> bool:
    target = fn.func if isinstance(fn, functools.partial) else fn
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an async __call__
    )


def _json_object(arguments: str) -> dict[str, Any]:
    try:
        value = pydantic_core.from_json(arguments or "{}")
    except ValueError as exc:
        raise ToolArgumentsError(f"arguments are not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ToolArgumentsError("arguments must be a JSON object")
    return value


def _arguments_model(fn: Callable[..., Any]) -> type[pydantic.BaseModel]:
    """A pydantic model with one field per parameter of ``fn``."""
    signature = inspect.signature(fn, eval_str=True)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise TypeError(
                f"tool function {getattr(fn, '__name__', fn)!r}: parameter {param.name!r} "
                "must be passable by name (no *args, **kwargs or positional-only)"
            )
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    return pydantic.create_model(
        f"{getattr(fn, '__name__', 'tool')}_arguments", __config__=config, **fields
    )


def _drop_titles(schema: dict[str, Any]) -> None:
    """pydantic titles every property after its name; the model needs none of it."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    for definition in schema.get("$defs", {}).values():
        if isinstance(definition, dict):
            _drop_titles(definition)


def _summary(fn: Callable[..., Any]) -> str:
    """The docstring up to its first blank line (the rest is for readers)."""
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].strip()


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout_s: float | None = ...
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a :class:`Tool`: ``@voxtrio.tool`` or
    ``@voxtrio.tool(timeout_s=5)``. See :meth:`Tool.from_function`."""
    if fn is not None:
        return Tool.from_function(fn)

    def decorate(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description, timeout_s=timeout_s)

    return decorate


#: What ``open_session(tools=...)`` takes: tools, or functions to make tools of.
ToolLike = Tool | FunctionTool | Callable[..., Any]


def as_tool(value: object) -> Tool:
    """``value`` as a :class:`Tool` (a FunctionTool is declared only; a function is
    made one with :meth:`Tool.from_function`).

    Raises:
        TypeError: anything else.
    """
    if isinstance(value, Tool):
        return value
    if isinstance(value, FunctionTool):
        return Tool(value.name, value.description, value.parameters)
    if callable(value):
        return Tool.from_function(value)
    raise TypeError(
        f"tools must be voxtrio.Tool, FunctionTool or functions, got {type(value).__name__}"
    )

