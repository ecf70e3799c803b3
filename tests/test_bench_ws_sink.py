"""``benchmarks.ws_sink``: the benchmarks' trio websocket server reads back exactly
what real clients (wsproto's, and voxtrio's own transport) write.

Frames of every length class (7-bit, 16-bit at 126 and 65535, 64-bit from 65536),
fragmented at random, masked with the clients' own random keys, cut into random TCP
chunks, text and binary, with pings between fragments; pings get pongs, a close gets
a close and the connection ends; broken frames get a 1002 close.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import struct
import typing

import numpy as np
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.events import Event as WsEvent

from benchmarks import capacity_server
from benchmarks import ws_sink as sink
from voxtrio import OpenAIRealtime, open_session
from voxtrio.actors.link.target import ConnectTarget
from voxtrio.actors.link.transport import open_websocket
from voxtrio.audio import AudioFormat

SIZES = (0, 1, 3, 125, 126, 127, 1300, 12_800, 65_535, 65_536, 70_001)
ALPHABET = "abcxyz {}\"é€😀"  # 1- to 4-byte UTF-8

# A message: (text?, payload size, seed for its bytes and its cut points, fragments)
messages = st.lists(
    st.tuples(
        st.booleans(), st.sampled_from(SIZES), st.integers(0, 2**32 - 1), st.integers(1, 4)
    ),
    min_size=1,
    max_size=5,
)


def _payload(text: bool, size: int, rng: random.Random) -> str | bytes:
    if not text:
        return rng.randbytes(size)
    return "".join(rng.choice(ALPHABET) for _ in range(size))


def _pieces(data: str | bytes, fragments: int, rng: random.Random) -> list[str | bytes]:
    cuts = sorted(rng.randint(0, len(data)) for _ in range(fragments - 1))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _client_frames(
    client: Connection | WSConnection, plan: list[tuple[bool, int, int, int]]
) -> tuple[bytes, list[sink.Message], list[bytes]]:
    """wsproto as the client (its own random masking keys): the wire bytes, the
    messages they carry and the ping payloads (a ping after each fragment but the
    last, in the middle of its message)."""
    wire = bytearray()
    expected: list[sink.Message] = []
    pings: list[bytes] = []
    for text, size, seed, fragments in plan:
        rng = random.Random(seed)
        data = _payload(text, size, rng)
        pieces = _pieces(data, fragments, rng)
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            event: WsEvent
            if isinstance(piece, str):
                event = TextMessage(data=piece, message_finished=last)
            else:
                event = BytesMessage(data=piece, message_finished=last)
            wire += client.send(event)
            if not last:
                ping = f"p{len(pings)}".encode()
                pings.append(ping)
                wire += client.send(Ping(payload=ping))
        raw = data.encode("utf-8") if isinstance(data, str) else data
        expected.append(sink.Message(text, raw))
    return bytes(wire), expected, pings


def _chunks(wire: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, at = [], 0
    while at < len(wire):
        step = rng.choice((1, 2, 3, 7, 64, 1000, 70_000))
        out.append(wire[at : at + step])
        at += step
    return out


@settings(max_examples=60, deadline=None)
@given(plan=messages, chop=st.integers(0, 2**32 - 1))
def test_reader_reassembles_wsproto_client_frames_exactly(
    plan: list[tuple[bool, int, int, int]], chop: int
) -> None:
    client = Connection(ConnectionType.CLIENT)
    wire, expected, pings = _client_frames(client, plan)
    wire += client.send(CloseConnection(code=1000, reason="done"))
    reader = sink.FrameReader()
    events: list[sink.Event] = []
    for chunk in _chunks(wire, chop):
        events += reader.feed(chunk)
    assert [e for e in events if isinstance(e, sink.Message)] == expected
    assert [e.data for e in events if isinstance(e, sink.Ping)] == pings
    assert events[-1] == sink.Close(1000, "done")
    assert reader.done
    assert reader.feed(b"\x81\x80anything") == []  # nothing is read after the close


@pytest.mark.parametrize("n", SIZES)
def test_unmask_matches_the_bytewise_xor(n: int) -> None:
    rng = random.Random(n)
    key, buf = rng.randbytes(4), rng.randbytes(n + 5)
    want = bytes(b ^ key[i % 4] for i, b in enumerate(buf[5:]))
    assert sink.unmask(buf, 5, n, key) == want
    assert sink.unmask(bytearray(buf), 5, n, key) == want


@pytest.mark.parametrize("n", SIZES)
def test_server_frames_read_back_by_a_wsproto_client(n: int) -> None:
    client = Connection(ConnectionType.CLIENT)
    data = random.Random(n).randbytes(n)
    client.receive_data(sink.server_frame(sink.OP_BINARY, data))
    client.receive_data(sink.server_frame(sink.OP_TEXT, b"x" * n))
    binary, text = list(client.events())
    assert isinstance(binary, BytesMessage)
    assert binary.data == data
    assert isinstance(text, TextMessage)
    assert text.data == "x" * n


def _masked(first: int, payload: bytes, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0xFE, n)
    else:
        head = struct.pack("!BBQ", first, 0xFF, n)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (b"\x81\x05hello", 1002),  # unmasked client frame
        (_masked(0x80, b"orphan"), 1002),  # continuation with no message open
        (_masked(0x01, b"a") + _masked(0x81, b"b"), 1002),  # new message mid-fragment
        (_masked(0xC1, b"x"), 1002),  # RSV1 without an extension
        (_masked(0x83, b"x"), 1002),  # reserved data opcode
        (_masked(0x8B, b""), 1002),  # reserved control opcode
        (_masked(0x09, b"p"), 1002),  # fragmented ping
        (_masked(0x89, b"p" * 126), 1002),  # control frame over 125 bytes
        (_masked(0x88, b"\x03"), 1002),  # one-byte close payload
        (_masked(0x88, b"\x03\xe8\xff"), 1007),  # close reason not UTF-8
        (b"\x82\xfe\x00\x05" + b"k" * 9, 1002),  # 16-bit length for 5 bytes
        (b"\x82\xff" + struct.pack("!Q", 5) + b"k" * 9, 1002),  # 64-bit length for 5
        (b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"kkkk", 1002),  # top bit set
    ],
)
def test_broken_frames_raise_with_their_close_code(wire: bytes, code: int) -> None:
    reader = sink.FrameReader()
    with pytest.raises(sink.ProtocolError) as caught:
        reader.feed(wire)
    assert caught.value.code == code
    assert reader.done


def test_a_message_split_at_every_byte_is_read_once() -> None:
    wire = _masked(0x81, b"x" * 300) + _masked(0x89, b"hi") + _masked(0x82, b"")
    reader = sink.FrameReader()
    events: list[sink.Event] = []
    for i in range(len(wire)):
        events += reader.feed(wire[i : i + 1])
    assert events == [sink.Message(True, b"x" * 300), sink.Ping(b"hi"), sink.Message(False, b"")]


# ------------------------------------------------------------------- over real sockets


class Recorder:
    """A handler that keeps every connection and message, and echoes each message."""

    def __init__(self) -> None:
        self.connections: list[sink.SinkConnection] = []
        self.messages: list[sink.Message] = []
        self.finished = trio.Event()

    async def handler(self, conn: sink.SinkConnection) -> None:
        self.connections.append(conn)
        while (message := await conn.receive()) is not None:
            self.messages.append(message)
            await conn.send(message.as_text() if message.text else message.data)
        self.finished.set()


async def _raw_client(port: int) -> tuple[trio.SocketStream, WSConnection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target="/v1/realtime?x=1")))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return stream, ws


async def _read_events(stream: trio.SocketStream, ws: WSConnection, want: int) -> list[WsEvent]:
    got: list[WsEvent] = []
    while len(got) < want:
        data = await stream.receive_some(65536)
        ws.receive_data(data or None)
        got += [e for e in ws.events() if not isinstance(e, TextMessage | BytesMessage)
                or e.message_finished]  # fmt: skip
        if not data:
            break
    return got


@settings(max_examples=15, deadline=None)
@given(plan=messages, chop=st.integers(0, 2**32 - 1))
def test_over_tcp_in_random_chunks_every_message_arrives_and_pings_get_pongs(
    plan: list[tuple[bool, int, int, int]], chop: int
) -> None:
    async def main() -> None:
        recorder = Recorder()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(sink.serve_sink, recorder.handler)
                stream, ws = await _raw_client(port)
                wire, expected, pings = _client_frames(ws, plan)
                for chunk in _chunks(wire, chop):
                    await stream.send_all(chunk)
                got = await _read_events(stream, ws, len(expected) + len(pings))
                pongs = [bytes(e.payload) for e in got if isinstance(e, Pong)]
                echoes = [e for e in got if isinstance(e, TextMessage | BytesMessage)]
                assert recorder.messages == expected
                assert pongs == pings
                assert [isinstance(e, TextMessage) for e in echoes] == [m.text for m in expected]
                await stream.send_all(ws.send(CloseConnection(code=1000, reason="bye")))
                closing = await _read_events(stream, ws, 1)
                assert isinstance(closing[0], CloseConnection)
                assert closing[0].code == 1000
                assert await stream.receive_some(10) == b""  # the server closed TCP
                await recorder.finished.wait()
                (conn,) = recorder.connections
                assert conn.closed_by_client
                assert conn.close_code == 1000
                assert conn.path == "/v1/realtime?x=1"
                nursery.cancel_scope.cancel()

    trio.run(main)


async def test_voxtrio_transport_round_trips_every_length_class() -> None:
    recorder = Recorder()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sink.serve_sink, recorder.handler)
            target = ConnectTarget(f"ws://127.0.0.1:{port}/v1/realtime")
            sent: list[str | bytes] = []
            async with open_websocket(target, timeout_s=5) as ws:
                for n in SIZES:
                    for data in ("é" * (n // 2), np.random.default_rng(n).bytes(n)):
                        await ws.send(data)
                        assert await ws.receive() == data
                        sent.append(data)
            await recorder.finished.wait()
            got = [m.as_text() if m.text else m.data for m in recorder.messages]
            assert got == sent
            assert recorder.connections[0].closed_by_client
            assert recorder.connections[0].close_code == 1000
            nursery.cancel_scope.cancel()


async def test_a_protocol_error_gets_a_1002_close_and_ends_the_connection() -> None:
    recorder = Recorder()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sink.serve_sink, recorder.handler)
            stream, ws = await _raw_client(port)
            # A good message, then one not masked, in one write: the first still counts.
            await stream.send_all(ws.send(TextMessage(data="ok")) + b"\x81\x02hi")
            got = await _read_events(stream, ws, 2)
            assert isinstance(got[0], TextMessage)  # the echo of "ok"
            assert isinstance(got[1], CloseConnection)
            assert got[1].code == 1002
            await recorder.finished.wait()
            assert recorder.messages == [sink.Message(True, b"ok")]
            assert recorder.connections[0].close_code == 1002
            assert not recorder.connections[0].closed_by_client
            nursery.cancel_scope.cancel()


async def test_the_close_reply_waits_until_every_message_before_it_was_read() -> None:
    """Three messages and a close in one write: while the handler still holds the
    second and third, the client has no close reply (nothing at all), so a client
    that leaves on that reply cannot cut the server's count short."""
    got: list[sink.Message] = []
    holding, gate, finished = trio.Event(), trio.Event(), trio.Event()

    async def handler(conn: sink.SinkConnection) -> None:
        while (message := await conn.receive()) is not None:
            got.append(message)
            if len(got) == 1:
                holding.set()
                await gate.wait()
        finished.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sink.serve_sink, handler)
            stream, ws = await _raw_client(port)
            wire = b"".join(ws.send(TextMessage(data=f"m{i}")) for i in range(3))
            await stream.send_all(wire + ws.send(CloseConnection(code=1000)))
            await holding.wait()
            fd = stream.socket.fileno()
            with socket.socket(fileno=os.dup(fd)) as raw, pytest.raises(BlockingIOError):
                raw.recv(1, socket.MSG_DONTWAIT)  # no close reply yet
            gate.set()
            closing = await _read_events(stream, ws, 1)
            assert isinstance(closing[0], CloseConnection)
            assert closing[0].code == 1000
            await finished.wait()
            assert got == [sink.Message(True, f"m{i}".encode()) for i in range(3)]
            nursery.cancel_scope.cancel()


async def test_tcp_closed_without_a_close_frame_ends_receive_with_1006() -> None:
    recorder = Recorder()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sink.serve_sink, recorder.handler)
            stream, ws = await _raw_client(port)
            await stream.send_all(ws.send(TextMessage(data="last")))
            await stream.aclose()
            await recorder.finished.wait()
            assert recorder.messages == [sink.Message(True, b"last")]
            assert recorder.connections[0].close_code == 1006
            nursery.cancel_scope.cancel()


class CommitWatch:
    """A connection seen through: sets ``committed`` once the handler has been given
    the client's ``input_audio_buffer.commit`` (so every append before it is counted)."""

    def __init__(self, conn: sink.SinkConnection, committed: trio.Event) -> None:
        self.conn, self.committed = conn, committed

    async def send(self, data: str | bytes) -> None:
        await self.conn.send(data)

    async def receive(self) -> sink.Message | None:
        message = await self.conn.receive()
        if message is not None and json.loads(message.data)["type"].endswith(".commit"):
            self.committed.set()
        return message


async def test_capacity_server_counts_a_tagged_sessions_samples() -> None:
    """The capacity server over the sink: the OpenAI client opens (it needs the
    ``session.created``), its tag names it, and every appended sample is counted."""
    recorder = capacity_server.Recorder()
    committed = trio.Event()

    async def handler(conn: sink.SinkConnection) -> None:
        await recorder.handler(typing.cast("sink.SinkConnection", CommitWatch(conn, committed)))

    fmt = AudioFormat(24_000, 1)
    pcm = (np.arange(24_000) % 200).astype(np.int16).reshape(-1, 1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sink.serve_sink, handler)
            provider = OpenAIRealtime(
                model="gpt-realtime", api_key="bench-key",
                base_url=f"ws://127.0.0.1:{port}/v1/realtime", turn_detection=None,
            )  # fmt: skip
            async with open_session(provider, instructions="bench-session-7") as session:
                await session.send_audio(pcm, fmt)
                await session.end_input()
                await committed.wait()
                await session.aclose()
            nursery.cancel_scope.cancel()
    assert recorder.counts[7][-1] == 24_000
    assert len(recorder.times[7]) == len(recorder.counts[7]) >= 1
    assert np.all(np.diff(recorder.counts[7]) > 0)
    assert np.all(np.diff(recorder.times[7]) >= 0)
    assert recorder.untagged == 0
