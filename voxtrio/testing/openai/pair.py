"""The real OpenAI client codec wired to the sans-IO fake service, with no socket.

:class:`OpenAICodecPair` plays the part of the network between
:class:`~voxtrio.codecs.openai_realtime.OpenAIRealtimeCodec` and
:class:`~voxtrio.testing.openai.service.FakeRealtimeService`: what the codec encodes
is handed to the service message by message, and what the service sends is decoded
by the codec. Time only moves when the test says so (:meth:`OpenAICodecPair.advance`),
so an end-to-end check of the codec (audio in, VAD turns, transcripts and replies out,
truncation, cancellation, junk) runs in milliseconds and the same way every time::

    pair = OpenAICodecPair(OpenAIRealtimeCodec())
    pair.connect("Be brief.")
    events = pair.send(FrameBatch(frames))
"""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.codecs.wire import LinkSignal
from voxtrio.messages import Event, LinkInput

from .oracle import validate_server_event
from .scripts import (
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

__all__ = ["OpenAICodecPair"]

Decoded = list[Event | LinkSignal]


class OpenAICodecPair:
    """A client codec and a fake service connected in memory.

    Args:
        codec: the client side (default: ``OpenAIRealtimeCodec()``).
        script: how the service behaves (drops, closes, stalls, canned text...).
        now: the starting time in seconds (any origin).

    Attributes:
        codec, service: the two sides.
        client_messages: everything the codec produced, in order.
        server_messages: everything the service sent that reached the client.
        events: everything the codec decoded, in order.
        closed_by: ``"server"`` once the service sent a close frame (it still reads
            what the client sends, as the real server does until the close reply;
            its replies go nowhere), ``"dropped"`` once it dropped the connection
            (sending then raises :class:`LoopbackClosedError`).
        close_code: the close code, once closed (1006 for a drop).
        stalled: the service stopped reading; messages wait until :meth:`resume`.
    """

    def __init__(
        self,
        codec: OpenAIRealtimeCodec | None = None,
        *,
        script: ConnectionScript | None = None,
        now: float = 0.0,
    ) -> None:
        self.codec = codec or OpenAIRealtimeCodec()
        self.service = FakeRealtimeService(script, model=self.codec.model, now=now)
        self.now = now
        self.client_messages: list[str | bytes] = []
        self.server_messages: list[str | bytes] = []
        self.events: Decoded = []
        self.closed_by: Literal["server", "dropped"] | None = None
        self.close_code: int | None = None
        self.stalled = False
        self._pending: list[str | bytes] = []
        self._started = False

    def __repr__(self) -> str:
        return (
            f"OpenAICodecPair(codec={self.codec!r}, client_messages={len(self.client_messages)}, "
            f"server_messages={len(self.server_messages)}, closed_by={self.closed_by!r})"
        )

    # ------------------------------------------------------------- driving

    def start(self) -> Decoded:
        """The handshake: what the service says first (``session.created``...).
        Idempotent; :meth:`connect` and :meth:`send` call it."""
        if self._started:
            return []
        self._started = True
        return self._deliver(self.service.start())

    def connect(self, instructions: str = "") -> Decoded:
        """The handshake and the codec's ``connect_messages(instructions)``."""
        out = self.start()
        for wire in self.codec.connect_messages(instructions):
            out += self.send_raw(wire)
        return out

    def send(self, msg: LinkInput) -> Decoded:
        """Encode one link input and hand each message to the service; returns what
        the codec decoded from the answers."""
        out = self.start()
        for wire in self.codec.encode(msg):
            out += self.send_raw(wire)
        return out

    def send_raw(self, data: str | bytes) -> Decoded:
        """Hand one client message, as is (junk included), to the service.

        Raises:
            LoopbackClosedError: the service dropped the connection.
        """
        if self.closed_by == "dropped":
            raise LoopbackClosedError("the fake service dropped the connection")
        out = self.start()
        self.client_messages.append(data)
        if self.stalled:
            self._pending.append(data)
            return out
        return out + self._deliver(self.service.receive(data, now=self.now))

    def advance(self, ms: float) -> Decoded:
        """Let ``ms`` milliseconds pass: what a paced reply sends in that time."""
        if ms < 0:
            raise ValueError(f"time only moves forward, got {ms!r} ms")
        self.now += ms / 1000
        return self._deliver(self.service.advance_to(self.now))

    def resume(self) -> Decoded:
        """The service reads again after a stall: the waiting messages, in order."""
        self.stalled = False
        out: Decoded = []
        while self._pending and not self.stalled and self.closed_by != "dropped":
            data = self._pending.pop(0)
            out += self._deliver(self.service.receive(data, now=self.now))
        return out

    def inject(self, out: Outgoing) -> Decoded:
        """The service sends ``out`` now (an event, raw text or bytes): for junk."""
        return self._deliver([Send(self.service.serialize(out))])

    # ------------------------------------------------------------- reading

    @property
    def server_events(self) -> list[dict[str, Any]]:
        """The server messages that reached the client, parsed (JSON objects only)."""
        out = []
        for message in self.server_messages:
            if isinstance(message, str):
                try:
                    event = json.loads(message)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    out.append(event)
        return out

    def server_event_problems(self) -> list[tuple[str, str]]:
        """``(type, problem)`` for each server event that fails the ``openai`` models."""
        found = []
        for event in self.server_events:
            problem = validate_server_event(event)
            if problem is not None:
                found.append((str(event.get("type")), problem))
        return found

    # ------------------------------------------------------------- internals

    def _deliver(self, outputs: list[ServiceOutput]) -> Decoded:
        decoded: Decoded = []
        for out in outputs:
            if isinstance(out, Send):
                if self.closed_by is None:
                    self.server_messages.append(out.data)
                    decoded += self.codec.decode(out.data)
            elif isinstance(out, Stall):
                self.stalled = True
            elif isinstance(out, Close):
                if self.closed_by is None:
                    self.closed_by, self.close_code = "server", out.code
            elif isinstance(out, Drop):
                self.closed_by, self.close_code = "dropped", 1006
                break
            else:
                typing.assert_never(out)
        self.events += decoded
        return decoded
