"""A loopback server for the echo protocol (:mod:`voxtrio.testing.echo_codec`).

wsproto over a trio TCP listener on 127.0.0.1 (port 0), owning its streams, so a
test can drop a connection abruptly, close it with any code, send ``goAway``, hold
``ready`` back, and resume sessions by handle.

The provider model it plays: a *session* outlives connections when resumed by its
handle. Messages a connection receives are **committed** to the session only when
the server confirms them (a ``handle`` message with ``consumed``: every
``ack_every`` messages, and at an ``end`` control); on a drop, what was received but
not confirmed is forgotten, and a client that resumes must send it again. With
``ack_every=None`` the server gives no handles and commits on receipt (a provider
without resumption). :attr:`EchoSession.audio` is therefore exactly what the
provider kept: the tests check every frame is there exactly once, in order.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import attrs
import numpy as np
import trio
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

__all__ = ["EchoConnection", "EchoScript", "EchoServer", "EchoSession", "open_echo_server"]


@attrs.frozen
class EchoScript:
    """How one connection behaves; counts are client messages after the setup.

    Attributes:
        hold_ready: send ``ready`` only when the test calls
            :meth:`EchoConnection.send_ready`.
        ack_every: confirm (commit, and send a handle) every this many messages;
            None: no handles, commit on receipt.
        go_away_after: send ``goAway`` after this many messages.
        drop_after: drop TCP on receiving message number ``drop_after`` (1-based),
            before processing it.
        close_after: ``(n, code)``: a close frame with ``code`` after message n.
        echo_audio: answer each audio message with an ``echo`` of it.
    """

    hold_ready: bool = False
    ack_every: int | None = 1
    go_away_after: int | None = None
    drop_after: int | None = None
    close_after: tuple[int, int] | None = None
    echo_audio: bool = True


@attrs.define(eq=False)
class EchoSession:
    """What the provider kept of one session, across resumed connections.

    A handle names a point of the session (``"<id>:<committed messages>"``): resumed
    by it, the session goes back to that point, as a real provider resumes at the
    state its handle captured -- what it committed after a handle the client never
    received is not part of the resumed session (the client sends it again).
    """

    id: str
    messages: list[dict[str, Any]] = attrs.field(factory=list)
    resumptions: int = 0

    def handle(self) -> str:
        return f"{self.id}:{len(self.messages)}"

    @property
    def audio(self) -> list[np.ndarray]:
        return [
            np.frombuffer(base64.b64decode(m["pcm"]), dtype="<i2").astype(np.int16)
            for m in self.messages
            if m["type"] == "audio"
        ]

    @property
    def all_audio(self) -> np.ndarray:
        audio = self.audio
        return np.concatenate(audio) if audio else np.zeros(0, np.int16)

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if m.get("type") == "text"]


class EchoConnection:
    """One accepted websocket connection."""

    def __init__(self, server: EchoServer, index: int, script: EchoScript) -> None:
        self.server = server
        self.index = index
        self.script = script
        self.setup: dict[str, Any] | None = None
        self.session: EchoSession | None = None
        self.resumed = False
        self.received: list[dict[str, Any]] = []  # after the setup, in order
        self.before_ready: list[dict[str, Any]] = []  # input that came before `ready`
        self.committed = 0  # received[:committed] is in the session
        self.ready_sent = False
        self.close_code: int | None = None
        self.closed_by: str | None = None
        self.closed = trio.Event()
        self._ws: wsproto.WSConnection | None = None
        self._stream: trio.SocketStream | None = None
        self._lock = trio.Lock()

    @property
    def instructions(self) -> str | None:
        return None if self.setup is None else self.setup.get("instructions")

    async def _send(self, event: dict[str, Any]) -> None:
        async with self._lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return
            data = ws.send(TextMessage(data=json.dumps(event)))
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(data)

    async def send_ready(self) -> None:
        assert self.session is not None
        self.ready_sent = True
        await self._send({"type": "ready", "session": self.session.id})
        if self.script.ack_every is not None:  # a first handle: nothing consumed yet
            handle = self.session.handle()
            await self._send({"type": "handle", "handle": handle, "consumed": None})

    async def go_away(self, time_left_s: float = 1.0) -> None:
        await self._send({"type": "goAway", "time_left_s": time_left_s})

    async def close(self, code: int, reason: str = "") -> None:
        async with self._lock:
            ws, stream = self._ws, self._stream
            if ws is None or stream is None or ws.state is not ConnectionState.OPEN:
                return
            self.close_code = code
            data = ws.send(CloseConnection(code=code, reason=reason))
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(data)

    async def drop(self) -> None:
        """Close TCP at once, like a network failure."""
        if self._stream is not None:
            self._finish("dropped")
            await trio.aclose_forcefully(self._stream)

    def _finish(self, by: str) -> None:
        if not self.closed.is_set():
            self.closed_by = by
            self.closed.set()
            self.server._changed()

    async def _commit(self, upto: int) -> None:
        """Commit received[:upto] to the session; confirm with a handle if acking."""
        assert self.session is not None
        self.session.messages.extend(self.received[self.committed : upto])
        self.committed = max(self.committed, upto)
        if self.script.ack_every is not None:
            await self._send(
                {"type": "handle", "handle": self.session.handle(), "consumed": upto - 1}
            )
        self.server._changed()

    async def _on_setup(self, event: dict[str, Any]) -> None:
        self.setup = event
        handle = event.get("handle")
        known = None
        if isinstance(handle, str) and ":" in handle:
            session_id, point = handle.rsplit(":", 1)
            known = self.server.sessions.get(session_id)
            if known is not None:  # back to the point the handle names
                del known.messages[int(point) :]
                known.resumptions += 1
        self.resumed = known is not None
        self.session = known or self.server._new_session()
        self.server._changed()
        if not self.script.hold_ready:
            await self.send_ready()

    async def _on_message(self, event: dict[str, Any]) -> bool:
        """Handle one client message; False: stop reading."""
        if self.setup is None:
            await self._on_setup(event)
            return True
        script = self.script
        n = len(self.received) + 1
        if script.drop_after is not None and n == script.drop_after:
            await self.drop()
            return False
        if not self.ready_sent:
            self.before_ready.append(event)
        self.received.append(event)
        self.server._changed()
        if event["type"] == "audio" and script.echo_audio:
            await self._send({"type": "echo", "pcm": event["pcm"]})
        is_end = (event["type"], event.get("name")) == ("control", "end")
        if script.ack_every is None or n % script.ack_every == 0 or is_end:
            await self._commit(n)
        if script.go_away_after == n:
            await self.go_away()
        if script.close_after is not None and script.close_after[0] == n:
            await self.close(script.close_after[1], "scripted close")
        return True

    async def _serve(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        self._ws, self._stream = ws, stream
        parts: list[str] = []
        while True:
            for event in ws.events():
                if isinstance(event, TextMessage):
                    # A message can come in pieces: the client never fragments, but a
                    # read can end inside a frame, and wsproto hands over what it has.
                    parts.append(event.data)
                    if not event.message_finished:
                        continue
                    text, parts = "".join(parts), []
                    if self.close_code is None and not await self._on_message(
                        json.loads(text)
                    ):
                        return
                elif isinstance(event, Ping):
                    async with self._lock:
                        await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        # The client closed cleanly whether or not our reply still
                        # reaches it (a client that stopped waiting has reset TCP).
                        self.close_code = event.code
                        self._finish("client")
                        reply = ws.send(event.response())
                        async with self._lock:
                            with contextlib.suppress(trio.BrokenResourceError):
                                await stream.send_all(reply)
                    else:
                        self._finish("server")
                    return
            data = await stream.receive_some(65536)
            if not data:
                self._finish("network")
                return
            ws.receive_data(data)


class EchoServer:
    """The echo protocol's loopback server (see the module docstring)."""

    def __init__(self, scripts: Sequence[EchoScript], default_script: EchoScript) -> None:
        self.scripts = list(scripts)
        self.default_script = default_script
        self.connections: list[EchoConnection] = []
        self.sessions: dict[str, EchoSession] = {}
        self.port = 0
        self._ids = itertools.count(1)
        self._change = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/echo"

    def _changed(self) -> None:
        self._change.set()
        self._change = trio.Event()

    def _new_session(self) -> EchoSession:
        session = EchoSession(f"echo-session-{next(self._ids)}")
        self.sessions[session.id] = session
        return session

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._change.wait()

    async def wait_for_connection(self, n: int) -> EchoConnection:
        """The ``n``-th connection (1-based) once its setup arrived."""
        await self.wait_until(
            lambda: len(self.connections) >= n and self.connections[n - 1].setup is not None
        )
        return self.connections[n - 1]

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        index = len(self.connections)
        script = self.scripts[index] if index < len(self.scripts) else self.default_script
        conn = EchoConnection(self, index, script)
        try:
            while not any(isinstance(e, Request) for e in ws.events()):
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
            self.connections.append(conn)
            self._changed()
            await stream.send_all(ws.send(AcceptConnection()))
            await conn._serve(ws, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn._finish("network")
        except wsproto.utilities.RemoteProtocolError:
            conn._finish("protocol error")
        finally:
            conn._finish("server shutdown")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


@contextlib.asynccontextmanager
async def open_echo_server(
    scripts: Sequence[EchoScript] = (), default_script: EchoScript | None = None
) -> AsyncIterator[EchoServer]:
    """Run an echo server on 127.0.0.1 (port 0) for the block."""
    server = EchoServer(scripts, default_script or EchoScript())
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server._handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()
