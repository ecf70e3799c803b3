"""No key in cleartext, none in any log (issue 13, failures 3 and 10)."""

from __future__ import annotations

import logging
import socket
import sys

import pytest
import trio

import voxtrio
from voxtrio import ErrorEvent, SessionReconnected
from voxtrio.actors.link import ConnectTarget
from voxtrio.actors.link.guard import RedactingFilter, check_cleartext
from voxtrio.testing import ConnectionScript

from .loopback_helpers import (
    KEY,
    LOOPBACK_MARKS,
    _sockets_closed,  # noqa: F401  (autouse)
    noise,
    openai_session,
    provider_for,
    push,
    serve,
)

pytestmark = LOOPBACK_MARKS

# ------------------------------------------------------------- cleartext (failure 3)

LOOPBACK_URLS = [
    "ws://localhost:8765/v1/realtime",
    "ws://LOCALHOST./v1/realtime",
    "ws://test.localhost:1/v1/realtime",
    "ws://127.0.0.1:1/v1/realtime",
    "ws://127.0.0.2:1/v1/realtime",
    "ws://127.255.255.254/v1/realtime",
    "ws://[::1]:1/v1/realtime",
    "ws://[::ffff:127.0.0.1]:1/v1/realtime",
]
PUBLIC_URLS = [
    "ws://example.com/v1/realtime",
    "ws://api.openai.com/v1/realtime",
    "ws://10.0.0.1:8080/v1/realtime",
    "ws://128.0.0.1/v1/realtime",
    "ws://[2001:db8::1]/v1/realtime",
    "ws://localhost.example.com/v1/realtime",
    "ws://0.0.0.0/v1/realtime",
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constructing a provider or a target must not resolve or connect anything."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _openai(url: str, **options: object) -> voxtrio.OpenAIRealtime:
    return voxtrio.OpenAIRealtime(model="gpt-realtime", api_key=KEY, base_url=url, **options)  # type: ignore[arg-type]


def _gemini(url: str, **options: object) -> voxtrio.GeminiLive:
    return voxtrio.GeminiLive(model="gemini-live", api_key="AIza-test-key", base_url=url, **options)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("url", LOOPBACK_URLS)
def test_ws_to_the_loopback_is_accepted(url: str) -> None:
    _openai(url)
    _gemini(url)
    ConnectTarget(url)
    check_cleartext(url, allow_insecure=False)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_ws_to_another_host_is_refused_at_construction(url: str) -> None:
    for make in (_openai, _gemini, ConnectTarget):
        with pytest.raises(ValueError, match=r"allow_insecure=True") as info:
            make(url)
        assert "wss://" in str(info.value)
        assert KEY not in str(info.value)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("url", PUBLIC_URLS)
def test_allow_insecure_is_an_explicit_opt_in(url: str) -> None:
    _openai(url, allow_insecure=True)
    _gemini(url, allow_insecure=True)
    target = ConnectTarget(url, allow_insecure=True)
    assert target.allow_insecure


@pytest.mark.usefixtures("no_network")
def test_wss_needs_no_flag() -> None:
    _openai("wss://example.com/v1/realtime")
    _gemini("wss://example.com/ws")
    ConnectTarget("wss://example.com/")


async def test_a_session_reaches_the_loopback_through_localhost() -> None:
    """``ws://localhost`` really connects (through a loopback address) with no flag."""
    with trio.fail_after(30):
        async with serve() as server:
            url = server.url.replace("127.0.0.1", "localhost")
            provider = provider_for(url)
            async with voxtrio.open_session(provider, instructions="hi") as session:
                await push(session, noise(0.1, 1))
                await server.wait_until(
                    lambda: bool(server.accepted) and server.current.audio_samples > 0
                )
                assert server.current.authorization == f"Bearer {KEY}"


# ------------------------------------------------------------- logs (failure 10)


async def test_no_logger_on_the_path_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """Everything at DEBUG, the root logger included. The server echoes the key in
    an error event, in an event type the codec does not know, in an error event
    without a message field (a protocol error quoting it), and in its close reason:
    the key is in no captured line, and those lines were logged (redacted)."""
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    echoes = (
        (1, {"type": "error", "error": {"type": "x", "code": "bad", "message": f"key {KEY}"}}),
        (1, {"type": f"future.{KEY}.event"}),
        (1, {"type": "response.created", "response": KEY}),
        (1, f'{{"type": "session.updated", "oops": "{KEY}'),
    )
    with trio.fail_after(30):
        async with (
            serve(scripts=(ConnectionScript(send_after=echoes),)) as server,
            openai_session(server) as (session, recorder),
        ):
            await push(session, noise(0.1, 2))
            first = await server.wait_for_connection(1)
            await first.wait_for_messages(2)
            await recorder.wait_until(lambda: len(recorder.of(ErrorEvent)) >= 3)
            await first.close(1011, f"invalid key {KEY}")
            await recorder.wait_for(SessionReconnected)
    assert caplog.records, "nothing was logged at all"
    assert KEY not in caplog.text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    text = caplog.text
    assert "***" in text  # the echoes were logged, redacted
    assert "code 1011" in text
    names = {r.name for r in caplog.records}
    assert all(n.startswith("voxtrio") for n in names), names


def test_the_filter_redacts_arguments_and_exceptions() -> None:
    secret = "sk-filter-test-123456"
    flt = RedactingFilter()
    flt.add([secret])
    record = logging.LogRecord(
        "voxtrio.link", logging.ERROR, __file__, 1, "a %s b", (secret,), None
    )
    assert flt.filter(record)
    assert secret not in record.getMessage()
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        info = sys.exc_info()
    exc = logging.LogRecord("voxtrio.link", logging.ERROR, __file__, 1, "x", None, info)
    flt.filter(exc)
    assert secret not in logging.Formatter().format(exc)
    flt.remove([secret])
    late = logging.LogRecord("voxtrio.link", logging.ERROR, __file__, 1, secret, None, None)
    flt.filter(late)
    assert late.getMessage() == secret  # unregistered: untouched


def test_two_links_with_one_key_keep_it_registered() -> None:
    flt = RedactingFilter()
    flt.add(["k-123456"])
    flt.add(["k-123456"])
    flt.remove(["k-123456"])
    assert flt.redact("k-123456") == "***"
    flt.remove(["k-123456"])
    assert flt.redact("k-123456") == "k-123456"
