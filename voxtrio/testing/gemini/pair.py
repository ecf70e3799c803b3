"""A Gemini Live codec and the fake service wired together in memory.

Like h11's ``ConnectionPair``: protocol tests drive a
:class:`~voxtrio.codecs.gemini_live.GeminiLiveCodec` against a
:class:`~voxtrio.testing.gemini.service.GeminiService` with no socket and no event
loop. Everything the client sent and the server answered is kept, so a test can
check every message against the vendor's own types.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...codecs.gemini_live import GeminiLiveCodec
from ...codecs.wire import LinkSignal
from ...messages import Event, LinkInput
from .service import CloseConnection, GeminiService, Outgoing

__all__ = ["GeminiPair"]


class GeminiPair:
    """One connection: ``codec`` on the client side, ``service`` on the other.

    Every method returns what the codec decoded from the server's answers (events
    and link signals), in order.
    """

    def __init__(self, codec: GeminiLiveCodec, service: GeminiService | None = None) -> None:
        self.codec = codec
        self.service = service if service is not None else GeminiService()
        self.client_wire: list[str] = []  # every message the codec produced, in order
        self.server_wire: list[str | bytes] = []  # every message the service sent
        self.closed: CloseConnection | None = None

    def connect(
        self, instructions: str = "", *, resumption_handle: str | None = None
    ) -> list[Event | LinkSignal]:
        """Send the codec's connect messages (the ``setup``)."""
        return self._to_server(
            self.codec.connect_messages(instructions, resumption_handle=resumption_handle)
        )

    def send(self, msg: LinkInput) -> list[Event | LinkSignal]:
        """Encode a link input and deliver it."""
        return self._to_server(self.codec.encode(msg))

    def send_wire(self, wire: Iterable[str]) -> list[Event | LinkSignal]:
        """Deliver already encoded client messages (e.g. resent after a resume)."""
        return self._to_server(list(wire), record=False)

    def deliver(self, outgoing: Iterable[Outgoing]) -> list[Event | LinkSignal]:
        """Hand server messages (from a scripting method) to the codec."""
        out: list[Event | LinkSignal] = []
        for item in outgoing:
            if isinstance(item, CloseConnection):
                self.closed = item
                continue
            self.server_wire.append(item)
            out.extend(self.codec.decode(item))
        return out

    def _to_server(self, wire: list[str], *, record: bool = True) -> list[Event | LinkSignal]:
        out: list[Event | LinkSignal] = []
        for message in wire:
            if record:
                self.client_wire.append(message)
            out.extend(self.deliver(self.service.receive(message)))
        return out
