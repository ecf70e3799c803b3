"""One phone call: a media stream bridged to one voxtrio session.

Inbound ``media`` (8 kHz mu-law or A-law) is pushed into the session as it comes, as
G.711 (push mode, live input): a provider that takes that format natively (OpenAI's
``audio/pcmu``/``audio/pcma``) gets the caller's bytes untouched, any other has them
decoded and resampled by the session. Reply frames from ``session.output`` (8 kHz
G.711 of the call's law, 20 ms, paced in real time by playback) go back as ``media``
as they are. A barge-in -- the
caller speaks while a reply is still being played -- sends ``clear`` (the caller's
side drops what it has buffered) and cancels the reply, which drops its queued audio.
The session id is the ``callSid``, so a call that comes back (to this worker or
another one sharing the store) continues the same conversation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import attrs
import trio

from ..audio import AudioFormat
from ..codecs.g711_stream import encode_pcm
from ..codecs.media_stream import (
    Dtmf,
    Mark,
    Media,
    MediaStreamServerCodec,
    Start,
    Stop,
    StreamProtocolError,
)
from ..errors import SessionClosedError
from ..messages import (
    ErrorEvent,
    ReplyInterrupted,
)
from ..runtime import Session, Subscription, open_session
from ..runtime.provider import Provider
from ..stores import TranscriptStore
from .ws import WebSocket, WebSocketClosed

__all__ = ["CallOptions", "CallStats", "ProviderFactory", "run_call"]



def call_format(start: Start) -> AudioFormat:
    """The call's audio as the session carries it: 8 kHz G.711 of its law."""
    return AudioFormat(start.media_format.sample_rate, encoding=start.media_format.g711)
#: Builds the provider of one call from its ``start`` (custom parameters and all).
ProviderFactory = Callable[[Start], Provider]


@attrs.define
class CallStats:
    """What happened on one media stream (``call_sid`` is None until ``start``)."""

    call_sid: str | None = None
    stream_sid: str | None = None
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict)
    samples_in: int = 0
    samples_out: int = 0
    clears: int = 0
    marks_played: list[str] = attrs.field(factory=list)
    dtmf: list[str] = attrs.field(factory=list)
    protocol_errors: int = 0
    provider_errors: int = 0
    stopped: bool = False
    close_code: int | None = None
    close_reason: str = ""


@attrs.frozen
class CallOptions:
    store: TranscriptStore
    instructions: str | None = None
    start_timeout_s: float = 10.0
    hangup_grace_s: float = 1.0
    realtime_playback: bool = True


class _Bridge:
    def __init__(self, ws: WebSocket, codec: MediaStreamServerCodec, session: Session,
                 stats: CallStats) -> None:
        self.ws = ws
        self.codec = codec
        self.session = session
        self.stats = stats
        self.cleared: set[str | None] = set()
        self.activity = trio.Event()
        assert codec.start is not None
        self.format = call_format(codec.start)

    async def inbound(self) -> None:
        """Caller audio into the session until ``stop`` or the stream ends."""
        while True:
            try:
                data = await self.ws.receive()
            except WebSocketClosed:
                return
            for event in self.codec.receive(data):
                match event:
                    case Media(payload=payload) if event.track == "inbound":
                        self.stats.samples_in += len(payload)  # one byte per sample
                        try:
                            await self.session.send_audio(payload, self.format)
                        except SessionClosedError:
                            await self.ws.close(1011, "the voice session ended")
                            return
                    case Mark(name=name):
                        self.stats.marks_played.append(name)
                    case Dtmf(digit=digit):
                        self.stats.dtmf.append(digit)
                    case Stop():
                        self.stats.stopped = True
                        return
                    case StreamProtocolError(fatal=fatal, reason=reason):
                        self.stats.protocol_errors += 1
                        if fatal:
                            await self.ws.close(1008, reason)
                            return

    async def outbound(self) -> None:
        """Reply frames (already paced in real time, in the call's G.711) out as
        ``media``, their bytes as they are."""
        encoding = self.format.encoding
        with contextlib.suppress(WebSocketClosed):
            async for frame in self.session.output:
                if frame.encoding == encoding:
                    payload = frame.to_bytes()
                else:  # an app's own output format: encode it for the phone
                    payload = encode_pcm(frame.pcm[:, :1], encoding).tobytes()
                await self.ws.send(self.codec.media(payload))
                self.stats.samples_out += frame.samples

    async def watch(self, events: Subscription) -> None:
        with contextlib.suppress(WebSocketClosed):
            async for event in events:
                self.activity.set()
                self.activity = trio.Event()
                match event:
                    case ReplyInterrupted(response_id=rid):
                        # The session already cut the reply (playback, cancel,
                        # truncate); the phone's own buffer must go too.
                        await self._clear(rid)
                    case ErrorEvent():
                        self.stats.provider_errors += 1

    async def _clear(self, response_id: str | None) -> None:
        if response_id in self.cleared:
            return
        self.cleared.add(response_id)
        await self.ws.send(self.codec.clear())
        self.stats.clears += 1

    async def linger(self, quiet_s: float, limit_s: float) -> None:
        """After the caller hung up: let the provider finish what it was saying
        about the last turn (transcripts reach the store), up to ``limit_s``."""
        with trio.move_on_after(limit_s):
            while True:
                with trio.move_on_after(quiet_s) as quiet:
                    await self.activity.wait()
                if quiet.cancelled_caught:
                    return


async def _wait_for_start(
    ws: WebSocket, codec: MediaStreamServerCodec, stats: CallStats, timeout_s: float
) -> Start | None:
    with trio.move_on_after(timeout_s):
        while True:
            try:
                data = await ws.receive()
            except WebSocketClosed:
                return None
            for event in codec.receive(data):
                if isinstance(event, Start):
                    return event
                if isinstance(event, StreamProtocolError):
                    stats.protocol_errors += 1
                    if event.fatal:
                        code = 1003 if event.code == "unsupported_media_format" else 1008
                        await ws.close(code, event.reason)
                        return None
    await ws.close(1008, "no 'start' in time")
    return None


async def run_call(
    ws: WebSocket, factory: ProviderFactory, options: CallOptions, stats: CallStats
) -> None:
    """Serve one media stream to its end; closes ``ws``. Faults of the caller or the
    provider end the call with a close reason; they are not raised."""
    codec = MediaStreamServerCodec()
    try:
        start = await _wait_for_start(ws, codec, stats, options.start_timeout_s)
        if start is None:
            return
        stats.call_sid, stats.stream_sid = start.call_sid, start.stream_sid
        stats.custom_parameters = dict(start.custom_parameters)
        async with contextlib.AsyncExitStack() as stack:
            try:
                session = await stack.enter_async_context(
                    open_session(
                        factory(start),
                        store=options.store,
                        session_id=start.call_sid,
                        instructions=options.instructions,
                        input_format=call_format(start),
                        output_format=call_format(start),
                        output_frame_ms=20,
                        live_input=True,
                        realtime_playback=options.realtime_playback,
                    )
                )
            except ValueError as exc:  # a bad callSid for the store; a provider that cannot start
                await ws.close(1011, f"cannot start the voice session: {exc}")
                return
            await _bridge(ws, codec, session, stats, options)
    finally:
        # Also when cancelled (a drain past its deadline has sent 1001 already).
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await ws.close(1000, "call ended")
        stats.close_code, stats.close_reason = ws.close_code, ws.close_reason


async def _bridge(
    ws: WebSocket,
    codec: MediaStreamServerCodec,
    session: Session,
    stats: CallStats,
    options: CallOptions,
) -> None:
    bridge = _Bridge(ws, codec, session, stats)
    events = session.subscribe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bridge.outbound)
        nursery.start_soon(bridge.watch, events)
        await bridge.inbound()
        with contextlib.suppress(SessionClosedError):
            await session.end_input()
        if not session.closed:
            await bridge.linger(0.5, options.hangup_grace_s)
        nursery.cancel_scope.cancel()
