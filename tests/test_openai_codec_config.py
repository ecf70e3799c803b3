"""codecs.openai_realtime configuration: OpenAIRealtimeConfig and its validators, the
codec's two ways of being made, the URL and handshake headers, and the provider built
on one configuration."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings

import voxtrio
from voxtrio.codecs.openai_realtime import (
    DEFAULT_BASE_URL,
    MAX_APPEND_BYTES,
    FunctionTool,
    OpenAIRealtimeCodec,
    OpenAIRealtimeConfig,
    SemanticVad,
    ServerVad,
    auth_headers,
    realtime_url,
)
from voxtrio.providers import openai as provider_package
from voxtrio.providers.openai import OpenAIRealtime
from voxtrio.runtime import providers as runtime_providers

from .test_openai_codec import codecs

BAD_OPTIONS: list[dict[str, Any]] = [
        {"model": ""},
        {"voice": ""},
        {"transcription_model": "  "},
        {"output_modalities": ("audio", "text")},
        {"output_modalities": ()},
        {"turn_detection": "server_vad"},
        {"noise_reduction": "loud"},
        {"tool_choice": "sometimes"},
        {"max_append_bytes": 1},
        {"max_append_bytes": MAX_APPEND_BYTES + 2},
        {"tools": [FunctionTool("a"), FunctionTool("a")]},
        {"tools": ["a"]},
        {"transcription_language": 3},
]


@pytest.mark.parametrize("kwargs", BAD_OPTIONS)
def test_bad_configuration_is_a_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|unique") as from_codec:
        OpenAIRealtimeCodec(**kwargs)
    with pytest.raises(ValueError, match=r"must|unique") as from_config:
        OpenAIRealtimeConfig(**kwargs)
    assert str(from_codec.value) == str(from_config.value)  # one validation, one message


@pytest.mark.parametrize("kwargs", [k for k in BAD_OPTIONS if "max_append_bytes" not in k])
def test_the_provider_refuses_what_the_config_refuses(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|unique") as from_provider:
        OpenAIRealtime(**{"model": "m", **kwargs})
    with pytest.raises(ValueError, match=r"must|unique") as from_config:
        OpenAIRealtimeConfig(**{"model": "m", **kwargs})
    assert str(from_provider.value) == str(from_config.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServerVad(threshold=1.5),
        lambda: ServerVad(silence_duration_ms=-1),
        lambda: SemanticVad(eagerness="eager"),  # type: ignore[arg-type]
        lambda: FunctionTool("has space"),
    ],
)
def test_bad_turn_detection_or_tool_is_a_value_error(make: Any) -> None:
    with pytest.raises(ValueError, match=r"must|'eagerness'"):
        make()


# ------------------------------------------------------------------ URL and headers


def test_realtime_url() -> None:
    assert realtime_url(None, "gpt-realtime") == f"{DEFAULT_BASE_URL}?model=gpt-realtime"
    assert (
        realtime_url("ws://127.0.0.1:8765/v1/realtime", "m")
        == "ws://127.0.0.1:8765/v1/realtime?model=m"
    )
    # other query parameters stay, a model already there is replaced, odd names quoted
    assert (
        realtime_url("wss://h/v1/realtime?a=1&model=old", "new model")
        == "wss://h/v1/realtime?a=1&model=new%20model"
    )
    for bad in ("http://h/v1/realtime", "https://h/", "ws:///nohost"):
        with pytest.raises(ValueError, match=r"ws:// or wss://|no host"):
            realtime_url(bad, "m")
    with pytest.raises(ValueError, match="model"):
        realtime_url(None, "")


def test_auth_headers_send_bearer_and_never_the_beta_header() -> None:
    headers = auth_headers("sk-test-123")
    assert headers == ((b"Authorization", b"Bearer sk-test-123"),)
    assert all(name.lower() != b"openai-beta" for name, _ in headers)


@pytest.mark.parametrize("key", ["", "sk bad", "sk-\nInjected: 1", "sk-\u00e9"])
def test_bad_api_keys_are_refused_without_echoing_them(key: str) -> None:
    with pytest.raises(ValueError, match="API key") as info:
        auth_headers(key)
    if key:
        assert key not in str(info.value)


# ------------------------------------------------------------------ one configuration


def test_the_config_is_frozen_and_holds_tuples() -> None:
    config = OpenAIRealtimeConfig(tools=[FunctionTool("a")], output_modalities=["text"])
    assert config.tools == (FunctionTool("a"),)
    assert config.output_modalities == ("text",)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.model = "other"  # type: ignore[misc]
    assert attrs.evolve(config) == config
    assert attrs.evolve(config, voice=None) != config


def test_max_append_bytes_rounds_down_to_whole_samples() -> None:
    assert OpenAIRealtimeConfig(max_append_bytes=3001).append_step == 3000
    assert OpenAIRealtimeCodec(max_append_bytes=3001).max_append_bytes == 3000


@settings(max_examples=60, deadline=None)
@given(codec=codecs())
def test_a_codec_made_from_its_config_encodes_the_same(codec: OpenAIRealtimeCodec) -> None:
    twin = OpenAIRealtimeCodec(codec.config)
    assert twin.config is codec.config
    assert twin.connect_messages("hi") == codec.connect_messages("hi")
    assert twin.capabilities == codec.capabilities
    assert repr(twin) == repr(codec)


def test_the_codec_takes_a_config_or_keywords_not_both() -> None:
    with pytest.raises(TypeError, match="not both"):
        OpenAIRealtimeCodec(OpenAIRealtimeConfig(), voice="cedar")
    with pytest.raises(TypeError, match="OpenAIRealtimeConfig"):
        OpenAIRealtimeCodec({"model": "m"})  # type: ignore[arg-type]
    assert OpenAIRealtimeCodec().config == OpenAIRealtimeConfig()


def test_the_provider_builds_one_config_from_its_keywords() -> None:
    provider = OpenAIRealtime(model="m", voice="cedar", tools=[FunctionTool("t")])
    assert provider.config == OpenAIRealtimeConfig(
        model="m", voice="cedar", tools=(FunctionTool("t"),)
    )
    first, second = provider.make_codec(), provider.make_codec()
    assert first is not second  # a fresh codec (fresh state) per connection
    assert first.config is provider.config is second.config


def test_the_provider_takes_a_whole_config() -> None:
    config = OpenAIRealtimeConfig(model="m", turn_detection=None, tools=[FunctionTool("t")])
    provider = OpenAIRealtime(config=config, api_key="k")
    assert provider.config is config
    assert provider.model == "m"
    assert not provider.capabilities.server_vad
    # repeating the config's model, or a default keyword, is no conflict
    assert OpenAIRealtime(model="m", config=config, tools=[]).config is config
    assert OpenAIRealtime(model="m", config=config, tools=()).config is config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "other"},
        {"voice": "cedar"},
        {"turn_detection": None},
        {"tools": [FunctionTool("t")]},
    ],
)
def test_the_provider_refuses_keywords_that_contradict_its_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="config"):
        OpenAIRealtime(config=OpenAIRealtimeConfig(model="m"), **kwargs)


def test_the_provider_needs_a_model_or_a_config() -> None:
    with pytest.raises(ValueError, match="model"):
        OpenAIRealtime()
    with pytest.raises(ValueError, match="OpenAIRealtimeConfig"):
        OpenAIRealtime(config={"model": "m"})  # type: ignore[arg-type]


def test_the_provider_is_importable_from_where_apps_import_it() -> None:
    assert voxtrio.OpenAIRealtime is OpenAIRealtime
    assert runtime_providers.OpenAIRealtime is OpenAIRealtime
    assert provider_package.OpenAIRealtimeConfig is OpenAIRealtimeConfig
