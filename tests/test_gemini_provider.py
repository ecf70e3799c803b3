"""providers.gemini.GeminiLive: configuration, the key, and what the link is given."""

from __future__ import annotations

import pytest

import voxtrio
from voxtrio.codecs.gemini_live import GeminiLiveCodec
from voxtrio.errors import MissingApiKeyError
from voxtrio.runtime.provider import Provider

SECRET = "AIza-test-secret-0123456789"
LOOPBACK = "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def test_exported_and_a_provider() -> None:
    provider = voxtrio.GeminiLive(model="gemini-live-test", api_key=SECRET)
    assert "GeminiLive" in voxtrio.__all__
    assert isinstance(provider, Provider)
    assert provider.name == "gemini"
    assert provider.input_format == voxtrio.AudioFormat(16_000, 1)
    assert provider.output_format == voxtrio.AudioFormat(24_000, 1)
    assert provider.capabilities.resumption
    assert not provider.capabilities.manual_commit
    assert isinstance(provider.make_codec(), GeminiLiveCodec)


def test_the_key_goes_in_the_header_only_and_nowhere_else() -> None:
    provider = voxtrio.GeminiLive(model="gemini-live-test", api_key=SECRET, base_url=LOOPBACK)
    target = provider.target()
    assert target.headers == ((b"x-goog-api-key", SECRET.encode()),)
    assert SECRET not in target.url
    assert target.url == LOOPBACK
    assert SECRET in target.secrets
    assert SECRET not in repr(provider)
    assert SECRET not in repr(provider.make_codec())
    assert SECRET not in target.redact(f"bad key {SECRET}")


@pytest.mark.parametrize("variable", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, SECRET)
    provider = voxtrio.GeminiLive(model="m")
    provider.check()
    assert provider.target().headers == ((b"x-goog-api-key", SECRET.encode()),)


def test_gemini_key_wins_over_google_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "other")
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    assert voxtrio.GeminiLive(model="m").target().headers[0][1] == SECRET.encode()


def test_no_key_fails_when_the_session_opens() -> None:
    provider = voxtrio.GeminiLive(model="m")  # constructing is fine
    with pytest.raises(MissingApiKeyError, match="GEMINI_API_KEY"):
        provider.check()


def test_a_malformed_key_fails_without_echoing_it() -> None:
    with pytest.raises(ValueError) as err:  # noqa: PT011
        voxtrio.GeminiLive(model="m", api_key="has space\n")
    assert "has space" not in str(err.value)


@pytest.mark.parametrize(
    "kw",
    [
        {"base_url": "http://127.0.0.1/ws"},
        {"base_url": f"wss://example.test/ws?key={SECRET}"},
        {"voice": ""},
        {"response_modalities": ()},
        {"reconnect": 3},
        {"max_message_size": 10},
    ],
)
def test_bad_options_fail_at_construction(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError) as err:  # noqa: PT011
        voxtrio.GeminiLive(model="m", api_key="k", **kw)  # type: ignore[arg-type]
    assert SECRET not in str(err.value)


def test_each_codec_has_its_own_ids() -> None:
    provider = voxtrio.GeminiLive(model="m", api_key="k")
    assert repr(provider.make_codec()) != repr(provider.make_codec())
