"""Where the link connects (:class:`ConnectTarget`) and how a connect or a
connection can fail; :mod:`voxtrio.actors.link.transport` re-exports all of it."""

from __future__ import annotations

import ssl
import urllib.parse

import attrs

from .guard import check_cleartext

__all__ = [
    "ConnectFailed",
    "ConnectTarget",
    "ConnectionClosed",
    "HandshakeRejected",
    "TlsUntrusted",
    "host_header",
    "split_url",
]


@attrs.frozen
class ConnectTarget:
    """Where and how to connect. ``headers`` and ``secrets`` never appear in a repr.

    Attributes:
        url: the websocket URL (may carry a key in its query for some providers:
            list that key in ``secrets`` so it is redacted from every message).
        headers: extra handshake headers.
        secrets: strings to redact from anything the link reports.
        ssl_context: for ``wss://``; a default verifying context when None.
        max_message_size: the largest server message accepted, in bytes.
        allow_insecure: accept a ``ws://`` URL to a host that is not the loopback
            (the handshake, key included, then travels unencrypted).

    Raises:
        ValueError: a ``ws://`` URL to a non-loopback host without
            ``allow_insecure`` (see :mod:`voxtrio.actors.link.guard`).
    """

    url: str = attrs.field(repr=False)
    headers: tuple[tuple[bytes, bytes], ...] = attrs.field(default=(), repr=False)
    secrets: tuple[str, ...] = attrs.field(default=(), repr=False)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)
    max_message_size: int = 16 * 1024 * 1024
    allow_insecure: bool = False

    def __attrs_post_init__(self) -> None:
        check_cleartext(self.url, self.allow_insecure)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    @property
    def safe_url(self) -> str:
        """The URL without its query string (keys live there for some providers)."""
        return self.redact(self.url.split("?", 1)[0])


class ConnectFailed(Exception):
    """No websocket: the TCP or TLS connect failed, or the server hung up during
    the handshake. Messages carry no secret (the URL has no query)."""


class TlsUntrusted(ConnectFailed):
    """The server's TLS certificate does not verify (retrying cannot help)."""


class HandshakeRejected(ConnectFailed):
    """The server answered the handshake with an HTTP status other than 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake rejected with HTTP {status}")
        self.status = status


class ConnectionClosed(Exception):
    """The websocket is closed. ``code`` is None when it ended without a close
    frame (1006 is reported as None too: it is never sent on the wire)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"connection closed (code {code})")
        self.code = code
        self.reason = reason


def split_url(url: str) -> tuple[str, int, str, bool]:
    """``(host, port, resource, tls)`` of a ``ws://`` or ``wss://`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError("the link needs a ws:// or wss:// URL with a host")
    tls = parts.scheme == "wss"
    port = parts.port if parts.port is not None else (443 if tls else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return parts.hostname, port, resource, tls


def host_header(host: str, port: int, tls: bool) -> str:
    """The ``Host`` header for ``host:port`` (the port only when not the default)."""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return host if port == (443 if tls else 80) else f"{host}:{port}"
