"""The provider link, kept importable from here: it lives in :mod:`voxtrio.actors.link`
(outbox, transport, retry loop, one connection's life)."""

from __future__ import annotations

from .link import ConnectTarget, ReconnectPolicy, run

__all__ = ["ConnectTarget", "ReconnectPolicy", "run"]
