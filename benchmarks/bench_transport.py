"""The link's websocket: wsproto driven directly vs trio-websocket, in one run.

The provider link used to run on trio-websocket, managed from the outside; it now
drives wsproto over a trio stream it owns (``voxtrio.actors.link.transport``). This
measures both clients on the same machine, interleaved, best run of each:

* **handshake+close**: open a websocket to the loopback OpenAI Realtime server
  (``voxtrio.testing``, on 127.0.0.1) and close it again (close handshake
  included), N times; milliseconds per connection.
* **send**: 10k text messages of 2 KB to a minimal wsproto server that only counts
  them (so the client's cost shows, not the server's), until the server has the
  last one; messages per second.
* **receive**: the same server sends 10k messages of 2 KB; the client reads them
  all; messages per second.

Both clients and the server run in this one trio process, so the server's share of
the time is the same for both. Ratios are wsproto-direct over trio-websocket (> 1:
the link's transport is faster).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from voxtrio.actors.link.transport import ConnectTarget, open_websocket
from voxtrio.testing import open_openai_loopback

MESSAGE = "x" * 2048


class CountingServer:
    """``/sink``: counts messages until the client closes; ``/source``: sends
    ``self.to_send`` messages, then waits for the client's close."""

    def __init__(self) -> None:
        self.received = 0
        self.to_send = 0
        self.changed = trio.Event()
        self.port = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        try:
            path = await self._accept(ws, stream)
            if path == "/source":
                for _ in range(self.to_send):
                    await stream.send_all(ws.send(TextMessage(data=MESSAGE)))
            await self._read(ws, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _accept(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> str:
        while True:
            for event in ws.events():
                if isinstance(event, Request):
                    await stream.send_all(ws.send(AcceptConnection()))
                    return event.target
            data = await stream.receive_some(65536)
            if not data:
                raise trio.BrokenResourceError
            ws.receive_data(data)

    async def _read(self, ws: wsproto.WSConnection, stream: trio.SocketStream) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage) and event.message_finished:
                    self.received += 1
                    if self.received % 1000 == 0:
                        self.changed.set()
                        self.changed = trio.Event()
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        await stream.send_all(ws.send(event.response()))
                    self.changed.set()
                    return


@contextlib.asynccontextmanager
async def counting_server() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the two clients


async def direct_handshake(url: str) -> None:
    async with open_websocket(ConnectTarget(url), timeout_s=10):
        pass


async def tws_handshake(url: str) -> None:
    import trio_websocket

    async with trio_websocket.open_websocket_url(url):
        pass


async def direct_send(url: str, n: int) -> None:
    async with open_websocket(ConnectTarget(url), timeout_s=10) as ws:
        for _ in range(n):
            await ws.send(MESSAGE)


async def tws_send(url: str, n: int) -> None:
    import trio_websocket

    async with trio_websocket.open_websocket_url(url) as ws:
        for _ in range(n):
            await ws.send_message(MESSAGE)


async def direct_receive(url: str, n: int) -> None:
    async with open_websocket(ConnectTarget(url), timeout_s=10) as ws:
        for _ in range(n):
            await ws.receive()


async def tws_receive(url: str, n: int) -> None:
    import trio_websocket

    async with trio_websocket.open_websocket_url(url) as ws:
        for _ in range(n):
            await ws.get_message()


# ------------------------------------------------------------------ measuring


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def measure(quick: bool) -> dict[str, tuple[float, float]]:
    """``{measure: (direct, trio-websocket)}`` in seconds per unit of work, the best
    of ``rounds`` rounds; each round runs both clients, one after the other."""
    connects, n, rounds = (20, 2_000, 2) if quick else (100, 10_000, 7)
    best: dict[tuple[str, str], float] = {}
    async with open_openai_loopback(api_key=None) as loopback, counting_server() as sink:
        url = loopback.url + "?model=gpt-realtime"
        sink_url = f"ws://127.0.0.1:{sink.port}/sink"
        source_url = f"ws://127.0.0.1:{sink.port}/source"
        sink.to_send = n

        async def connects_with(handshake: Callable[[str], Awaitable[None]]) -> None:
            for _ in range(connects):
                await handshake(url)

        async def sends_with(send: Callable[[str, int], Awaitable[None]]) -> None:
            sink.received = 0
            await send(sink_url, n)
            while sink.received < n:
                await sink.changed.wait()

        work: dict[str, tuple[int, Callable[[str], Callable[[], Awaitable[None]]]]] = {
            "handshake+close": (
                connects,
                lambda c: functools.partial(connects_with, CLIENTS[c][0]),
            ),
            "send": (n, lambda c: functools.partial(sends_with, CLIENTS[c][1])),
            "receive": (n, lambda c: functools.partial(CLIENTS[c][2], source_url, n)),
        }
        for _ in range(rounds):
            for name, (units, make) in work.items():
                for client in ("direct", "tws"):
                    seconds = await timed(make(client)) / units
                    key = (name, client)
                    best[key] = min(best.get(key, float("inf")), seconds)
    return {name: (best[name, "direct"], best[name, "tws"]) for name in work}


CLIENTS: dict[str, tuple[Any, Any, Any]] = {
    "direct": (direct_handshake, direct_send, direct_receive),
    "tws": (tws_handshake, tws_send, tws_receive),
}


def main(quick: bool = False) -> None:
    try:
        import trio_websocket  # noqa: F401
    except ImportError:
        print("bench_transport needs trio-websocket (the bench extra) as its baseline")
        return
    results = trio.run(measure, quick)
    print(f"{'measure':<18}{'wsproto direct':>18}{'trio-websocket':>18}{'ratio':>8}")
    for name, (direct, tws) in results.items():
        if name == "handshake+close":
            cells = f"{direct * 1e3:>15.3f} ms{tws * 1e3:>15.3f} ms"
        else:
            cells = f"{1 / direct:>12,.0f} msg/s{1 / tws:>12,.0f} msg/s"
        print(f"{name:<18}{cells}{tws / direct:>7.2f}x")


if __name__ == "__main__":
    main()
