"""The media-stream front door: a trio websocket server, one voxtrio session per call.

Promises:

* at most ``max_calls`` calls at once; the next handshake is refused with HTTP 503
  and ``Retry-After`` (before the websocket opens, so a load balancer or the
  telephony provider can try another worker at no cost);
* :meth:`MediaStreamServer.drain` stops accepting (the listeners close: new
  connections are refused by the kernel), lets live calls run up to a deadline, then
  closes what is left with 1001 ("going away"); every session's transcript is
  flushed to the store before :func:`serve_media_streams` returns;
* a call's faults (a malformed message, an unsupported format, a provider that
  fails) end that call with a websocket close reason, never the server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import attrs
import trio
import wsproto

from ..stores import MemoryTranscriptStore, TranscriptStore
from .call import CallOptions, CallStats, ProviderFactory, run_call
from .ws import WebSocket, read_request, reject

__all__ = ["MediaStreamServer", "ServerStats", "serve_media_streams"]


@attrs.define
class ServerStats:
    accepted: int = 0
    refused: int = 0
    finished: int = 0
    peak_calls: int = 0


class MediaStreamServer:
    """The running server (given by ``await nursery.start(serve_media_streams, ...)``).

    Attributes:
        host, port: where it listens (``port`` is the one the kernel chose for 0).
        max_calls: the concurrency bound.
        live: per live call, its :class:`CallStats` (keyed by an internal number).
        finished: the stats of every call that ended, in order of ending.
        stats: counters (accepted, refused, finished, peak concurrency).
        draining: :meth:`drain` was called.
    """

    def __init__(self, host: str, max_calls: int) -> None:
        self.host = host
        self.port = 0
        self.max_calls = max_calls
        self.live: dict[int, CallStats] = {}
        self.finished: list[CallStats] = []
        self.stats = ServerStats()
        self.draining = False
        self._sockets: dict[int, WebSocket] = {}
        self._reserved = 0
        self._next = 0
        self._drain_deadline = math.inf
        self._drain_requested = trio.Event()
        self._changed = trio.Event()
        self._done = trio.Event()
        self._not_accepting = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/media"

    @property
    def active_calls(self) -> int:
        return self._reserved

    def __repr__(self) -> str:
        return f"MediaStreamServer({self.url!r}, calls={self._reserved}/{self.max_calls})"

    async def drain(self, deadline_s: float = 30.0) -> None:
        """Stop accepting, wait for live calls up to ``deadline_s``, close the rest
        (1001) and return once every session has ended and flushed its store."""
        self.request_drain(deadline_s)
        await self._done.wait()

    async def wait_not_accepting(self) -> None:
        """Wait until the listeners are closed (after a drain request)."""
        await self._not_accepting.wait()

    async def wait_drained(self) -> None:
        """Wait until a drain (requested by anyone) has finished."""
        await self._done.wait()

    def request_drain(self, deadline_s: float = 30.0) -> None:
        """:meth:`drain` without waiting (e.g. from a signal handler's task)."""
        if deadline_s < 0 or math.isnan(deadline_s):
            raise ValueError(f"deadline_s must be >= 0, got {deadline_s}")
        if not self.draining:
            self.draining = True
            self._drain_deadline = trio.current_time() + deadline_s
            self._drain_requested.set()

    async def wait_for_calls(self, predicate: Callable[[MediaStreamServer], bool]) -> None:
        """Wait until ``predicate(server)`` holds (re-checked when a call starts or ends)."""
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _handle(
        self,
        factory: ProviderFactory,
        options: CallOptions,
        max_message_bytes: int,
        handshake_timeout_s: float,
        stream: trio.SocketStream,
    ) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        try:
            request = await read_request(stream, ws, handshake_timeout_s)
            if request is None:
                return
            if self.draining or self._reserved >= self.max_calls:
                self.stats.refused += 1
                why = "draining" if self.draining else f"at capacity ({self.max_calls} calls)"
                await reject(stream, ws, 503, f"voxtrio: this worker is {why}\n", 1)
                return
            self._reserved += 1
            key = self._next
            self._next += 1
            self.stats.accepted += 1
            self.stats.peak_calls = max(self.stats.peak_calls, self._reserved)
            stats = self.live[key] = CallStats()
            self._notify()
            try:
                socket = self._sockets[key] = await WebSocket.accept(
                    stream, ws, max_message_bytes
                )
                await run_call(socket, factory, options, stats)
            finally:
                self._reserved -= 1
                del self.live[key]
                self._sockets.pop(key, None)
                self.finished.append(stats)
                self.stats.finished += 1
                self._notify()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    async def _drain_when_asked(self, accept_scope: trio.CancelScope,
                                calls_scope: trio.CancelScope) -> None:
        await self._drain_requested.wait()
        accept_scope.cancel()  # closes the listeners
        with trio.move_on_at(self._drain_deadline):
            await self.wait_for_calls(lambda s: s._reserved == 0)
        for socket in list(self._sockets.values()):
            await socket.close(1001, "the server is shutting down")
        calls_scope.cancel()


async def serve_media_streams(
    provider_factory: ProviderFactory,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_calls: int = 100,
    store: TranscriptStore | None = None,
    instructions: str | None = None,
    realtime_playback: bool = True,
    start_timeout_s: float = 10.0,
    hangup_grace_s: float = 1.0,
    handshake_timeout_s: float = 10.0,
    max_message_bytes: int = 1 << 20,
    task_status: trio.TaskStatus[MediaStreamServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept telephony media streams and run one voice session per call.

    Args:
        provider_factory: makes the provider of each call from its ``start`` event
            (so custom parameters may choose a model or a voice).
        host, port: where to listen (port 0: any free port; see ``server.port``).
        max_calls: concurrent calls; beyond it handshakes get HTTP 503.
        store: the transcript store all calls share (the app owns and closes it).
            Share one PostgreSQL store between workers to resume calls anywhere.
        instructions: base instructions of every call (the transcript so far is
            folded in on every connect).
        realtime_playback: pace reply audio in real time (what a phone expects).
        start_timeout_s: how long a new stream may take to send ``start``.
        hangup_grace_s: after the caller hangs up, how long the session may go on
            taking the provider's last events (the final transcript).
        handshake_timeout_s: how long the HTTP upgrade may take.
        max_message_bytes: larger messages close the stream (1009).

    Runs until cancelled, or until a drain (:meth:`MediaStreamServer.drain`) ends.
    """
    if max_calls < 1:
        raise ValueError(f"max_calls must be >= 1, got {max_calls}")
    if store is None:
        store = MemoryTranscriptStore()
    server = MediaStreamServer(host, max_calls)
    options = CallOptions(
        store=store,
        instructions=instructions,
        start_timeout_s=start_timeout_s,
        hangup_grace_s=hangup_grace_s,
        realtime_playback=realtime_playback,
    )
    listeners = await trio.open_tcp_listeners(port, host=host)
    server.port = listeners[0].socket.getsockname()[1]
    handler = partial(server._handle, provider_factory, options, max_message_bytes,
                      handshake_timeout_s)
    try:
        async with trio.open_nursery() as calls:
            async with trio.open_nursery() as accept:
                # The drain runs beside the calls: it stops the accept loop, then waits.
                calls.start_soon(
                    server._drain_when_asked, accept.cancel_scope, calls.cancel_scope
                )
                await accept.start(
                    partial(trio.serve_listeners, handler, listeners, handler_nursery=calls)
                )
                task_status.started(server)
            server._not_accepting.set()  # serve_listeners closed the listeners
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        server._not_accepting.set()
        server._done.set()
