"""The loopback OpenAI Realtime server: the shared websocket transport
(:mod:`voxtrio.testing.wsserver`) on 127.0.0.1, whose connections
(:class:`~voxtrio.testing.openai.connection.LoopbackConnection`) are answered by the
sans-IO fake service. This module adds only what is OpenAI's: the path, the
``model`` query, the key check and the JSON body of a refused handshake.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import numpy as np
from wsproto.events import Request

from ..wsserver import Rejection, WsServer, serve_ws
from .connection import LoopbackClosedError, LoopbackConnection
from .scripts import ConnectionScript, SharedCounters

__all__ = ["LoopbackClosedError", "LoopbackConnection", "OpenAILoopback", "open_openai_loopback"]


class OpenAILoopback(WsServer[LoopbackConnection]):
    """The running loopback server (see :func:`open_openai_loopback`).

    Attributes:
        url: ``ws://127.0.0.1:PORT/v1/realtime`` -- pass it as the provider's base URL.
        port: the port the kernel chose.
        connections: every connection, in handshake order (rejected ones included).
        scripts: the script of each connection by index; later connections use
            ``default_script``. Both may be changed while the server runs.
        api_key: when set, a handshake without ``Authorization: Bearer <api_key>``
            is rejected with 401.
        max_message_bytes: larger client messages close the connection (1009).
        internal_errors: events the server could not process (a bug, or an odd event
            the checks let through); tests should find it empty.
        session_lifetime_s: each session's time limit (the service's is 60
            minutes): ``session.created`` carries ``expires_at`` (wall clock) and
            the connection is closed with 1001 when the limit runs out (trio time,
            so ``autojump_clock`` runs an hour at once). None: no limit.
    """

    PATH: Final = "/v1/realtime"

    def __init__(
        self,
        *,
        scripts: Sequence[ConnectionScript] = (),
        default_script: ConnectionScript | None = None,
        api_key: str | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        handshake_timeout_s: float = 10.0,
        session_lifetime_s: float | None = None,
    ) -> None:
        if session_lifetime_s is not None and not session_lifetime_s > 0:
            raise ValueError(f"session_lifetime_s must be > 0, got {session_lifetime_s!r}")
        self.session_lifetime_s = session_lifetime_s
        self.scripts: list[ConnectionScript] = list(scripts)
        self.default_script = default_script or ConnectionScript()
        self.api_key = api_key
        super().__init__()
        self.max_message_bytes = max_message_bytes
        self.handshake_timeout_s = handshake_timeout_s
        #: ids, canned transcripts and internal errors, shared by the connections
        self.counters = SharedCounters()
        self.internal_errors: list[str] = self.counters.internal_errors

    def __repr__(self) -> str:
        return f"OpenAILoopback(url={self.url!r}, connections={len(self.connections)})"

    @property
    def url(self) -> str:
        """The ``ws://127.0.0.1:PORT/...`` URL clients connect to."""
        return f"ws://127.0.0.1:{self.port}{self.PATH}"

    @property
    def audio(self) -> list[np.ndarray]:
        """The input audio received, per connection: int16 ``(samples, 1)`` arrays."""
        return [c.audio for c in self.connections]

    def all_audio(self) -> np.ndarray:
        """All input audio received, across connections, in order."""
        return np.concatenate([np.zeros((0, 1), np.int16), *self.audio])

    @property
    def current(self) -> LoopbackConnection:
        """The latest accepted connection.

        Raises:
            LookupError: none yet.
        """
        accepted = self.accepted
        if not accepted:
            raise LookupError("no connection accepted yet")
        return accepted[-1]

    def all_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Client events across connections, in order (of type ``kind`` if given)."""
        return [
            r.event
            for c in self.connections
            for r in c.events
            if r.event is not None and (kind is None or r.type == kind)
        ]

    async def drop(self) -> None:
        """Drop the latest connection (see :meth:`LoopbackConnection.drop`)."""
        await self.current.drop()

    def _script_for(self, index: int) -> ConnectionScript:
        return self.scripts[index] if index < len(self.scripts) else self.default_script

    def _connection(self, index: int, request: Request) -> LoopbackConnection:
        return LoopbackConnection(self, index, self._script_for(index), request)

    def _rejection(self, conn: LoopbackConnection) -> Rejection | None:
        refused = self._refusal(conn)
        if refused is None:
            return None
        status, code, message = refused
        body = json.dumps(
            {"error": {"type": "invalid_request_error", "code": code, "message": message}}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        return status, headers, body

    def _refusal(self, conn: LoopbackConnection) -> tuple[int, str, str] | None:
        script = conn.script
        if script.reject_status is not None:
            return (
                script.reject_status,
                "scripted_rejection",
                "The loopback server rejected this connection.",
            )
        if urllib.parse.urlsplit(conn.path).path != self.PATH:
            return 404, "not_found", f"Unknown path; the Realtime API lives at {self.PATH}."
        if not conn.model and conn.intent != "transcription":
            return 400, "missing_model", "Missing required parameter: 'model'."
        if conn.header("openai-beta") is not None:
            return (
                400,
                "beta_api_retired",
                "The OpenAI-Beta realtime API is retired; use the GA API.",
            )
        if self.api_key is not None and conn.authorization != f"Bearer {self.api_key}":
            return 401, "invalid_api_key", "Incorrect API key provided."
        return None


@contextlib.asynccontextmanager
async def open_openai_loopback(
    *,
    scripts: Sequence[ConnectionScript] = (),
    default_script: ConnectionScript | None = None,
    api_key: str | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
    session_lifetime_s: float | None = None,
) -> AsyncIterator[OpenAILoopback]:
    """Run a loopback OpenAI Realtime server on 127.0.0.1 (a free port).

    Args:
        scripts: one :class:`ConnectionScript` per connection, in handshake order.
        default_script: for connections beyond ``scripts`` (default: plain).
        api_key: require ``Authorization: Bearer <api_key>`` (else 401).
        max_message_bytes: the largest client message accepted.
        session_lifetime_s: each session's time limit (see :class:`OpenAILoopback`).

    On exit every open connection gets a close frame (1001) and its TCP stream is
    closed; no task outlives the block.
    """
    server = OpenAILoopback(
        scripts=scripts,
        default_script=default_script,
        api_key=api_key,
        max_message_bytes=max_message_bytes,
        session_lifetime_s=session_lifetime_s,
    )
    async with serve_ws(server):
        yield server
