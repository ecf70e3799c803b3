"""A telephony-side test client for :func:`voxtrio.telephony.serve_media_streams`.

It plays what a telephony provider does on a media stream (the Twilio JSON shape):
connects, sends ``connected`` and ``start``, streams 8 kHz mu-law (or, with
``encoding="alaw"``, A-law) ``media`` in 20 ms chunks (in real time, or as fast as
the socket takes it), and records everything the server sends back: reply
``media``, ``mark`` and ``clear``::

    async with open_telephony_call(server.url, call_sid="CA1") as call:
        await call.send_audio(wav_to_mulaw(path), realtime=True)
        await call.wait_for(lambda c: c.media_bytes >= 3200)
        await call.hang_up()
    reply = call.reply_pcm()
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from os import PathLike

import attrs
import numpy as np
import trio
import trio_websocket

from ..codecs.audio import downmix
from ..codecs.g711 import alaw_decode, alaw_encode, mulaw_decode, mulaw_encode
from ..codecs.media_stream import (
    ALAW_ENCODING,
    SUPPORTED_ENCODING,
    Clear,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundMedia,
    Start,
    Stop,
    StreamProtocolError,
    build_connected,
    build_dtmf,
    build_inbound_mark,
    build_inbound_media,
    build_start,
    build_stop,
    parse_outbound,
)
from ..codecs.resample import StreamResampler
from ..codecs.wav import read_wav

__all__ = [
    "ReceivedClear",
    "TelephonyCall",
    "open_telephony_call",
    "wav_to_alaw",
    "wav_to_mulaw",
]

CHUNK_BYTES = 160  # 20 ms of 8 kHz mu-law


def _wav_to_8k(path: str | PathLike[str]) -> np.ndarray:
    pcm, fmt = read_wav(path)
    mono = downmix(pcm)
    resampler = StreamResampler(fmt.sample_rate, 8000)
    out: np.ndarray = np.concatenate([resampler.push(mono), resampler.flush()])
    return out


def wav_to_mulaw(path: str | PathLike[str]) -> bytes:
    """A WAV file as a phone hears it: mono, 8 kHz, G.711 mu-law."""
    return mulaw_encode(_wav_to_8k(path))


def wav_to_alaw(path: str | PathLike[str]) -> bytes:
    """A WAV file as a phone hears it: mono, 8 kHz, G.711 A-law."""
    return alaw_encode(_wav_to_8k(path))


@attrs.frozen
class ReceivedClear:
    """A ``clear`` from the server, with how much reply audio had arrived before it."""

    at_s: float
    media_bytes_before: int


class TelephonyCall:
    """One media stream from the telephony side (see :func:`open_telephony_call`).

    Attributes:
        media: the reply audio received (raw G.711 payloads of the stream's
            encoding, in order).
        marks: names of the ``mark`` messages received.
        clears: every ``clear`` received.
        errors: server messages that did not parse.
        first_media_at: ``trio.current_time()`` of the first reply ``media``.
        close_code, close_reason: how the server closed the stream, once it did.
    """

    def __init__(self, ws: trio_websocket.WebSocketConnection, start: Start) -> None:
        self.ws = ws
        self.start = start
        self.media: list[bytes] = []
        self.media_times: list[float] = []
        self.marks: list[str] = []
        self.clears: list[ReceivedClear] = []
        self.errors: list[str] = []
        self.first_media_at: float | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._seq = 1
        self._chunk = 0
        self._sent_bytes = 0
        self._changed = trio.Event()
        self.alaw = start.media_format.encoding == ALAW_ENCODING

    @property
    def stream_sid(self) -> str:
        return self.start.stream_sid

    @property
    def media_bytes(self) -> int:
        return sum(len(m) for m in self.media)

    def reply_pcm(self) -> np.ndarray:
        """The reply audio received, decoded: int16 at 8 kHz."""
        return (alaw_decode if self.alaw else mulaw_decode)(b"".join(self.media))

    async def wait_for(self, predicate: Callable[[TelephonyCall], bool]) -> None:
        """Wait until ``predicate(call)`` holds (re-checked on every server message)."""
        while not predicate(self):
            await self._changed.wait()

    async def _send(self, text: str) -> None:
        self._seq += 1
        await self.ws.send_message(text)

    async def send_audio(self, mulaw: bytes, *, realtime: bool = True) -> None:
        """Stream ``mulaw`` (G.711 bytes of the stream's encoding: A-law for an A-law
        stream) in 20 ms ``media`` chunks; in real time, one per 20 ms (on trio's
        clock, with no drift), else as fast as the socket takes them."""
        begin = trio.current_time()
        for offset in range(0, len(mulaw), CHUNK_BYTES):
            piece = mulaw[offset : offset + CHUNK_BYTES]
            self._chunk += 1
            ts_ms = self._sent_bytes // 8
            await self._send(
                build_inbound_media(Media(self.stream_sid, piece, self._chunk, ts_ms), self._seq)
            )
            self._sent_bytes += len(piece)
            if realtime:
                await trio.sleep_until(begin + (offset + len(piece)) / 8000)

    async def send_silence(self, seconds: float, *, realtime: bool = True) -> None:
        zeros = np.zeros(int(seconds * 8000), np.int16)
        encode = alaw_encode if self.alaw else mulaw_encode
        await self.send_audio(encode(zeros), realtime=realtime)

    async def send_mark(self, name: str) -> None:
        """Tell the server playout reached its mark ``name`` (what the provider does)."""
        await self._send(build_inbound_mark(Mark(self.stream_sid, name), self._seq))

    async def send_dtmf(self, digit: str) -> None:
        await self._send(build_dtmf(Dtmf(self.stream_sid, digit), self._seq))

    async def hang_up(self) -> None:
        """Send ``stop`` and wait for the server to close the stream."""
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await self._send(build_stop(Stop(self.stream_sid, self.start.call_sid), self._seq))
        await self.wait_for(lambda c: c.close_code is not None)

    async def drop(self) -> None:
        """End the stream with no ``stop`` (as when the network or the provider fails):
        a close frame with 1011, so the server sees a call that did not hang up."""
        await self.ws.aclose(1011, "dropped")

    async def _receive(self) -> None:
        try:
            while True:
                text = await self.ws.get_message()
                event = parse_outbound(text)
                now = trio.current_time()
                match event:
                    case OutboundMedia(payload=payload):
                        self.media.append(payload)
                        self.media_times.append(now)
                        if self.first_media_at is None:
                            self.first_media_at = now
                    case Mark(name=name):
                        self.marks.append(name)
                    case Clear():
                        self.clears.append(ReceivedClear(now, self.media_bytes))
                    case StreamProtocolError(reason=reason):
                        self.errors.append(reason)
                self._notify()
        except trio_websocket.ConnectionClosed as exc:
            why = exc.reason
            self.close_code = why.code if why is not None else 1006
            self.close_reason = why.reason if why is not None else None
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@contextlib.asynccontextmanager
async def open_telephony_call(
    url: str,
    *,
    call_sid: str | None = None,
    stream_sid: str | None = None,
    custom_parameters: Mapping[str, str] | None = None,
    start: Start | None = None,
    encoding: str = "mulaw",
) -> AsyncIterator[TelephonyCall]:
    """Connect to a media-stream server and send ``connected`` and ``start``.

    ``encoding`` is the stream's law: ``"mulaw"`` (``audio/x-mulaw``, the default)
    or ``"alaw"`` (``audio/x-alaw``). ``start`` overrides the whole start event
    (e.g. an unsupported format). Raises
    ``trio_websocket.HandshakeError`` (``ConnectionRejected`` with ``status_code``)
    if the server refuses the handshake. Leaving the block closes the stream.
    """
    if start is None:
        start = Start(
            stream_sid=stream_sid or f"MZ{uuid.uuid4().hex}",
            call_sid=call_sid or f"CA{uuid.uuid4().hex}",
            custom_parameters=dict(custom_parameters or {}),
            media_format=MediaFormat(ALAW_ENCODING if encoding == "alaw" else SUPPORTED_ENCODING),
        )
    async with trio_websocket.open_websocket_url(url) as ws, trio.open_nursery() as nursery:
        call = TelephonyCall(ws, start)
        nursery.start_soon(call._receive)
        await ws.send_message(build_connected())
        await ws.send_message(build_start(start))
        try:
            yield call
        finally:
            nursery.cancel_scope.cancel()
