"""The link's websocket transport (wsproto over a trio stream) on 127.0.0.1: the close
handshake on cancellation, and a server message over the size limit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import trio
import trio.testing
import wsproto
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.events import AcceptConnection, Request, TextMessage

from voxtrio.actors.link import ConnectTarget
from voxtrio.actors.link.transport import ConnectionClosed, WebSocket, open_websocket
from voxtrio.messages import ErrorEvent, SessionReconnected
from voxtrio.testing.echo_server import EchoScript, open_echo_server

from .loopback_helpers import own_garbage_only
from .test_link_signals import echo_link

pytestmark = [
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _sockets_closed() -> Iterator[None]:
    yield from own_garbage_only()


async def read_until_closed(ws: WebSocket) -> ConnectionClosed:
    while True:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            return exc


async def test_a_cancelled_websocket_completes_the_close_handshake() -> None:
    """Cancelled while waiting for a message, the websocket still sends its close
    frame (1000) and the server sees a clean close by the client."""
    with trio.fail_after(10):
        async with open_echo_server() as server:
            with trio.CancelScope() as scope:
                async with open_websocket(ConnectTarget(server.url), timeout_s=5) as ws:
                    await ws.send('{"type": "setup", "instructions": "", "handle": null}')
                    await server.wait_for_connection(1)
                    scope.cancel()
                    await ws.receive()  # raises Cancelled: the way out is cancelled
            assert scope.cancelled_caught
            conn = server.connections[0]
            await conn.closed.wait()
        assert (conn.closed_by, conn.close_code) == ("client", 1000)


async def test_the_server_closing_first_is_seen_with_its_code() -> None:
    """The server's close frame: receive raises with its code and reason, and a send
    after it raises too (the message is not written)."""
    with trio.fail_after(10):
        async with (
            open_echo_server([EchoScript(close_after=(1, 4321))]) as server,
            open_websocket(ConnectTarget(server.url), timeout_s=5) as ws,
        ):
            await ws.send('{"type": "setup", "instructions": "", "handle": null}')
            await ws.send('{"type": "control", "name": "commit"}')
            closed = await read_until_closed(ws)
            assert (closed.code, closed.reason) == (4321, "scripted close")
            with pytest.raises(ConnectionClosed):
                await ws.send('{"type": "control", "name": "commit"}')
        assert server.connections[0].closed_by == "server"


async def test_a_server_message_over_the_limit_closes_with_1009_and_reconnects() -> None:
    """A message over ``max_message_size`` is not read: the link closes with 1009
    (message too big), reports the loss, and reconnects."""
    with trio.fail_after(10):
        async with open_echo_server() as server, echo_link(server, max_message_size=4096) as h:
            first = await server.wait_for_connection(1)
            await first._send({"type": "text_echo", "text": "x" * 5000})
            await h.events.wait_for(SessionReconnected)
        (lost,) = h.events.of(ErrorEvent)
        assert lost.code == "connection_lost"
        assert "1009" in lost.message


# ------------------------------------------------------------- data frames built by the link


def _server_reads(wire: bytes) -> list[str | bytes]:
    """What a wsproto server makes of the client bytes ``wire`` (after a handshake)."""
    import wsproto
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/")))
    assert any(isinstance(e, Request) for e in server.events())
    server.send(AcceptConnection())
    server.receive_data(wire)
    got: list[str | bytes] = []
    for event in server.events():
        assert isinstance(event, TextMessage | BytesMessage), event
        assert event.frame_finished
        assert event.message_finished
        got.append(event.data if isinstance(event.data, str) else bytes(event.data))
    return got


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=300),
        st.sampled_from([0, 125, 126, 127, 65535, 65536, 70001]).map(lambda n: b"\xa5" * n),
        st.sampled_from([125, 126, 65535, 65536]).map(lambda n: "\u00e9" * (n // 2) + "x"),
    ),
    st.integers(min_value=1, max_value=3),
)
def test_own_data_frames_read_back_as_the_messages_sent(message: str | bytes, copies: int) -> None:
    """Every text or binary message the link frames itself (all length encodings,
    masked with a fresh key each) is read by a websocket server as that message."""
    from voxtrio.actors.link.transport import _DataFrames

    frames = _DataFrames()
    wires = [frames.frame(message) for _ in range(copies)]
    assert _server_reads(b"".join(wires)) == [message] * copies


def test_own_data_frames_take_a_new_mask_key_each_time() -> None:
    """The masking key differs frame to frame (drawn from os.urandom, in blocks)."""
    from voxtrio.actors.link.transport import _DataFrames

    frames = _DataFrames()
    keys = {frames.frame(b"")[2:6] for _ in range(600)}  # over two blocks of keys
    assert len(keys) > 590  # 600 random 32-bit keys: a repeat is ~4e-5 likely


async def test_the_echo_server_reads_a_message_that_arrives_in_two_reads() -> None:
    """A TCP read can end inside a frame; the test server must join the pieces (it
    once parsed the first piece as a whole message)."""
    with trio.fail_after(10):
        async with open_echo_server() as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(client.send(Request(host="127.0.0.1", target="/echo")))
            while not any(isinstance(e, AcceptConnection) for e in client.events()):
                client.receive_data(await stream.receive_some(65536))
            wire = client.send(TextMessage(json.dumps({"type": "setup", "pad": "x" * 200})))
            await stream.send_all(wire[:60])
            await trio.testing.wait_all_tasks_blocked()  # the server has read the piece
            await stream.send_all(wire[60:])
            conn = await server.wait_for_connection(1)
            assert conn.setup == {"type": "setup", "pad": "x" * 200}
            await stream.aclose()
