"""``@voxtrio.tool`` and ``Tool.from_function``: the schema the type hints imply (by
pydantic), the description from the docstring, and arguments checked before a call."""

from __future__ import annotations

import enum
import json
from typing import Annotated

import pydantic
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import voxtrio
from voxtrio import FunctionTool, Tool, ToolArgumentsError
from voxtrio.tools import as_tool


class Unit(enum.Enum):
    C = "C"
    F = "F"


class Place(pydantic.BaseModel):
    city: str
    country: str | None = None


@voxtrio.tool
async def forecast(
    place: Place,
    days: Annotated[int, pydantic.Field(ge=1, le=7, description="how many days")] = 1,
    unit: Unit = Unit.C,
    tags: list[str] | None = None,
) -> list[float]:
    """The forecast for a place.

    Longer notes for readers, not for the model.
    """
    return [20.0] * days


def test_the_schema_is_what_the_types_imply() -> None:
    assert forecast.name == "forecast"
    assert forecast.description == "The forecast for a place."
    schema = dict(forecast.parameters)
    assert schema["type"] == "object"
    assert schema["required"] == ["place"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["days"] == {
        "default": 1,
        "description": "how many days",
        "maximum": 7,
        "minimum": 1,
        "type": "integer",
    }
    assert props["place"] == {"$ref": "#/$defs/Place"}
    assert schema["$defs"]["Place"]["required"] == ["city"]
    assert props["unit"]["$ref"] == "#/$defs/Unit"
    assert schema["$defs"]["Unit"]["enum"] == ["C", "F"]
    json.dumps(schema)  # plain JSON
    assert forecast.declaration == FunctionTool("forecast", forecast.description, schema)


def test_arguments_are_checked_and_converted() -> None:
    kwargs = forecast.parse_arguments('{"place": {"city": "Oslo"}, "unit": "F", "days": 3}')
    assert kwargs == {"place": Place(city="Oslo"), "days": 3, "unit": Unit.F, "tags": None}
    with pytest.raises(ToolArgumentsError, match=r"invalid arguments for forecast: days: "):
        forecast.parse_arguments('{"place": {"city": "Oslo"}, "days": 9}')
    with pytest.raises(ToolArgumentsError, match=r"place: Field required"):
        forecast.parse_arguments("{}")
    with pytest.raises(ToolArgumentsError, match=r"invalid arguments for forecast"):
        forecast.parse_arguments("not json")


@given(days=st.integers(-20, 20))
def test_only_days_in_range_pass(days: int) -> None:
    arguments = json.dumps({"place": {"city": "x"}, "days": days})
    if 1 <= days <= 7:
        assert forecast.parse_arguments(arguments)["days"] == days
    else:
        with pytest.raises(ToolArgumentsError):
            forecast.parse_arguments(arguments)


def test_invoke_runs_and_serialises() -> None:
    async def main() -> str:
        return await forecast.invoke('{"place": {"city": "Oslo"}, "days": 2}')

    assert json.loads(trio.run(main)) == [20.0, 20.0]


def test_a_decorated_function_stays_callable_and_options_apply() -> None:
    @voxtrio.tool(name="add_numbers", description="Adds.", timeout_s=2)
    def add(a: int, b: int = 1) -> int:
        return a + b

    assert add(2, b=3) == 5
    assert (add.name, add.description, add.timeout_s) == ("add_numbers", "Adds.", 2)
    same = Tool.from_function(lambda q: q, name="echo")
    assert same.parameters["properties"] == {"q": {}}  # no hint: any JSON value


def test_what_cannot_be_a_tool_says_why() -> None:
    def star(*args: int) -> None: ...

    with pytest.raises(TypeError, match=r"parameter 'args' must be passable by name"):
        Tool.from_function(star)
    with pytest.raises(ValueError, match=r"tool name must be 1..64 letters"):
        Tool.from_function(lambda: None, name="has space")
    with pytest.raises(ValueError, match=r"timeout_s must be a finite number > 0"):
        Tool.from_function(lambda: None, name="t", timeout_s=0)
    with pytest.raises(TypeError, match=r"tools must be voxtrio.Tool, FunctionTool or functions"):
        as_tool("weather")


def test_tool_names_must_be_unique_at_open_session() -> None:
    from voxtrio.runtime.tools import check_tools

    with pytest.raises(ValueError, match=r"given twice: forecast"):
        check_tools([forecast, forecast])
    assert check_tools(None) == ()
    with pytest.raises(TypeError, match="tools must be a list"):
        check_tools("forecast")


def test_codecs_keep_importing_function_tool_where_they_did() -> None:
    from voxtrio.codecs.openai_realtime import FunctionTool as FromCodec
    from voxtrio.providers.openai.config import FunctionTool as FromProvider

    assert FromCodec is FromProvider is voxtrio.FunctionTool
    assert isinstance(forecast, Tool)
