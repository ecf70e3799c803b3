"""One connection of the loopback server: the shared websocket transport
(:class:`~voxtrio.testing.wsserver.WsConnection`) driving a
:class:`~voxtrio.testing.openai.service.FakeRealtimeService`.

The connection owns the socket and the time; the service owns every decision. The
connection hands the service each whole client message and, when a paced reply has
a step due, the current time (``trio.current_time()``), and carries out what comes
back in order, under one lock, so that nothing another task sends can come between.
"""

from __future__ import annotations

import time
import typing
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import trio
from wsproto.events import Request

from ..wsserver import Pacer, WsConnection
from .events import error_event
from .scripts import (
    ClientEventRecord,
    Close,
    ConnectionScript,
    Drop,
    LoopbackClosedError,
    Outgoing,
    Send,
    ServiceOutput,
    Stall,
)
from .service import FakeRealtimeService

if TYPE_CHECKING:
    from .server import OpenAILoopback

__all__ = ["LoopbackClosedError", "LoopbackConnection"]


class LoopbackConnection(WsConnection):
    """One client connection to the loopback server, and the handle to script it.

    Attributes:
        index: 0-based, in handshake order (rejected handshakes count).
        path: the request path, query included.
        model: the ``model`` query parameter.
        intent: the ``intent`` query parameter (``transcription``: a transcription
            session, which needs no model).
        rejected_status: the HTTP status the handshake was rejected with, if it was.
        service: the fake service behind this connection (its state is all here).
        sent: every message the server sent, in order (text or bytes).
        close_code: the websocket close code, once closed (1006: no close frame).
        closed_by: ``client``, ``server``, ``dropped``, ``network`` or ``shutdown``.
        closed: set once the connection is over.
    """

    def __init__(
        self,
        server: OpenAILoopback,
        index: int,
        script: ConnectionScript,
        request: Request | None,
    ) -> None:
        super().__init__(server, index, request)
        self.server: OpenAILoopback = server
        self.max_message_bytes = server.max_message_bytes
        self.script = script
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        self.model: str | None = query.get("model", [None])[0]
        self.intent: str | None = query.get("intent", [None])[0]
        self.service = FakeRealtimeService(
            script,
            model=self.model,
            index=index,
            shared=server.counters,
            now=trio.current_time(),
            intent=self.intent,
        )
        self._pacer = Pacer(self.service)  # runs the service's paced reply steps
        #: The session's time limit (``OpenAILoopback.session_lifetime_s``): its
        #: wall-clock end goes into ``session.created`` as ``expires_at``, and the
        #: connection is closed with 1001 when it runs out (trio time).
        self.lifetime_s = server.session_lifetime_s
        if self.lifetime_s is not None:
            self.service.session["expires_at"] = int(time.time() + self.lifetime_s)

    def __repr__(self) -> str:
        return (
            f"LoopbackConnection(index={self.index}, events={len(self.events)}, "
            f"audio_samples={self.audio_samples}, closed_by={self.closed_by!r})"
        )

    # ------------------------------------------------------------- reading state

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header the client sent (it holds a key: never log it)."""
        return self.header("authorization")

    @property
    def events(self) -> list[ClientEventRecord]:
        """Every client message, in order."""
        return self.service.events

    @property
    def session(self) -> dict[str, Any]:
        """The effective session configuration."""
        return self.service.session

    @property
    def instructions(self) -> list[str]:
        """The ``instructions`` of each ``session.update`` that set them."""
        return self.service.instructions

    @property
    def audio(self) -> np.ndarray:
        """All input audio received on this connection: int16 ``(samples, 1)``."""
        return self.service.audio

    @property
    def audio_samples(self) -> int:
        """Number of input audio samples the loopback service has received."""
        return self.service.audio_samples

    @property
    def invalid_events(self) -> list[ClientEventRecord]:
        """The client events the loopback service rejected as invalid, in order."""
        return self.service.invalid_events

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        """The parsed client events of type ``kind``, in order."""
        return self.service.events_of(kind)

    async def wait_for_messages(self, n: int) -> None:
        """Wait until ``n`` client messages were received (or the connection ended)."""
        await self.server.wait_until(lambda: len(self.events) >= n or self.closed.is_set())

    async def wait_for_event(self, kind: str, count: int = 1) -> dict[str, Any]:
        """Wait for the ``count``-th client event of type ``kind`` and return it.

        Raises:
            LoopbackClosedError: the connection ended first.
        """
        await self.server.wait_until(
            lambda: len(self.events_of(kind)) >= count or self.closed.is_set()
        )
        found = self.events_of(kind)
        if len(found) < count:
            raise LoopbackClosedError(
                f"connection {self.index} closed after {len(found)} {kind} event(s)"
            )
        return found[count - 1]

    # ------------------------------------------------------------- scripting

    async def send_event(self, event: Outgoing) -> None:
        """Send an event (``event_id`` filled in if missing), raw text, or bytes.

        Raises:
            LoopbackClosedError: the connection is not open.
        """
        await self._emit_or_raise([Send(self.service.serialize(event))])

    async def send_error(
        self,
        message: str,
        *,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        event_id: str | None = None,
    ) -> None:
        """Send an ``error`` event."""
        await self.send_event(error_event(message, code, error_type, event_id))

    async def send_transcript(
        self, transcript: str, *, item_id: str | None = None, deltas: bool = False
    ) -> str:
        """Send a completed input transcription (optionally its deltas first) for
        ``item_id`` (a new item id when None); returns the item id."""
        item_id, outputs = self.service.send_transcript(transcript, item_id=item_id, deltas=deltas)
        await self._emit_or_raise(outputs)
        return item_id

    async def send_reply(self, text: str | None = None, *, audio: np.ndarray | None = None) -> str:
        """Send a whole reply: ``response.created`` ... ``response.done``, with
        ``audio`` (int16 mono at 24 kHz; default: the script's tone) and ``text``
        as its transcript; returns the response id once all of it was sent."""
        response_id, outputs = self.service.send_reply(text, audio=audio)
        await self._emit_or_raise(outputs)
        service = self.service
        await self.server.wait_until(
            lambda: service.reply_finished(response_id) or self.closed.is_set()
        )
        if not service.reply_finished(response_id):
            raise LoopbackClosedError(f"connection {self.index} closed during the reply")
        return response_id

    # ------------------------------------------------------------- transport

    async def _emit_or_raise(self, outputs: Sequence[ServiceOutput]) -> None:
        if not await self._emit(outputs):
            raise LoopbackClosedError(f"connection {self.index} is not open")

    async def _emit(self, outputs: Sequence[ServiceOutput]) -> bool:
        """Carry out the service's outputs in order; False if a message was not sent.

        Callers compute the outputs and call this with no checkpoint in between, and
        the lock is FIFO: batches go out in the order the service produced them.
        """
        ok = True
        async with self._send_lock:
            for out in outputs:
                if isinstance(out, Send):
                    ok = await self._send_locked(out.data) and ok
                    # A schedule point per message, as when each took the lock on its
                    # own: the client gets to read what was sent before a scripted
                    # drop resets the connection (a reset loses unread data).
                    await trio.lowlevel.cancel_shielded_checkpoint()
                elif isinstance(out, Stall):
                    self.stall()
                elif isinstance(out, Close):
                    await self._close_locked(out.code, out.reason)
                elif isinstance(out, Drop):
                    self._finish("dropped", 1006, out.reason)
                    self._scope.cancel()
                    break
                else:
                    typing.assert_never(out)
        self._pacer.rescheduled()
        return ok

    async def _run_open(self) -> None:
        async with trio.open_nursery() as nursery:
            if self.script.close_at_once is None:  # else: not a word
                await self._emit(self.service.start())
            nursery.start_soon(self._pacer.run, self._emit, self.server._changed)
            if self.lifetime_s is not None:
                nursery.start_soon(self._expire, self.lifetime_s)
            await self._read_loop()
            nursery.cancel_scope.cancel()

    async def _expire(self, lifetime_s: float) -> None:
        """End the session at its time limit, as the service does: a 1001 close."""
        await trio.sleep(lifetime_s)
        await self.close(1001, "Your session hit the maximum duration of 60 minutes.")

    async def _on_message(self, data: str | bytes) -> None:
        outputs = self.service.receive(data, now=trio.current_time())
        if self.script.close_at_once is not None:  # never a reply
            outputs = [Close(self.script.close_at_once, "scripted hang-up")]
        self.server._changed()
        await self._emit(outputs)
