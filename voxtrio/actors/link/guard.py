"""What keeps the link's secrets safe: the cleartext rule and the log filter.

**Cleartext.** A key travels in the handshake (a header or the URL's query), so a
``ws://`` URL sends it unencrypted. The link accepts ``ws://`` only to a loopback
host -- an address in 127.0.0.0/8, ``::1`` (or an IPv4-mapped loopback), or the
name ``localhost`` (``*.localhost``), which is then connected to only through the
loopback addresses it resolves to -- unless the target is given
``allow_insecure=True``. :func:`check_cleartext` applies the rule without touching
the network, so a bad URL fails when the provider or target is made.

**Logs.** Nothing in voxtrio logs a secret on purpose, but a server can echo one
(a close reason, an error message, an event type). :class:`RedactingFilter` is
installed on the loggers of the path to the provider (the link's and the codecs')
and takes every secret of every running link out of each record: its message with
its arguments, and the text of an attached exception. The dependencies on the path
log nothing of the connection: wsproto and h11 have no loggers; trio logs only for
failures of its own machinery (instruments, async generators, server accepts).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = [
    "LOGGERS",
    "RedactingFilter",
    "check_cleartext",
    "install_log_redaction",
    "is_loopback_address",
    "is_loopback_name",
    "secrets_redacted",
]

#: The loggers on the path to the provider; the filter is installed on each (a
#: logger's filters see only records logged on it, not on its children).
LOGGERS = ("voxtrio.link", "voxtrio.link.transport", "voxtrio.openai", "voxtrio.gemini")


def is_loopback_address(host: str) -> bool:
    """Whether ``host`` is an IP literal of this machine's loopback interface."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_name(host: str) -> bool:
    """``localhost`` or a name under it (RFC 6761: always the loopback)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def check_cleartext(url: str, allow_insecure: bool) -> None:
    """Refuse a ``ws://`` URL to anything but a loopback host, unless allowed.

    Raises:
        ValueError: the URL would send the key unencrypted over a network (the
            message names the fix; it carries the host only, never the query).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ws" or allow_insecure:
        return
    host = parts.hostname or ""
    if is_loopback_address(host) or is_loopback_name(host):
        return
    raise ValueError(
        f"refusing ws:// to {host!r}: the API key would travel unencrypted. "
        "Use wss://, or pass allow_insecure=True if this network is trusted "
        "(ws:// is accepted without it only to 127.0.0.0/8, ::1 and localhost)."
    )


class RedactingFilter(logging.Filter):
    """Replaces every registered secret by ``***`` in the records it sees.

    Secrets are counted: each running link adds its own on start and removes them
    on exit (:func:`secrets_redacted`), so two links with one key do not unregister
    it for each other.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: collections.Counter[str] = collections.Counter()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s)

    def remove(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.subtract(s for s in secrets if s)
            self._secrets = +self._secrets  # drop the ones at zero

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            redacted = self.redact(text)
            if redacted != text:  # handlers print exc_text then, never the raw one
                record.exc_text, record.exc_info = redacted, None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> RedactingFilter:
    """Install the (one) filter on every logger of :data:`LOGGERS`; idempotent."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    return _FILTER


@contextmanager
def secrets_redacted(secrets: Iterable[str]) -> Iterator[None]:
    """Redact ``secrets`` from the path's logs while the block runs."""
    kept = tuple(secrets)
    install_log_redaction().add(kept)
    try:
        yield
    finally:
        _FILTER.remove(kept)
