"""An in-process provider for turn-taking tests: the real OpenAI codec wired to the
sans-IO fake service, driven on trio's clock, so sessions run under ``autojump_clock``
with the service's real VAD, replies, cancels and truncation checks.

``reply_latency_s`` delays what the service says of replies after their start (audio,
text, their end; not ``ReplyStarted``, nor anything about the input), so a test can
script the time from the end of the user's speech to the first reply audio.
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np
import trio

from voxtrio.actors.base import InstructionsSource
from voxtrio.audio import AudioFormat, AudioFrame, FrameMs
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.codecs.wire import Capabilities, LinkSignal
from voxtrio.messages import (
    Event,
    LinkInput,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SessionConnected,
    ToolResult,
)
from voxtrio.testing.openai.scripts import ConnectionScript, Send
from voxtrio.testing.openai.service import FakeRealtimeService

OPENAI: Final = AudioFormat(24_000)
_REPLY_EVENTS = (
    ReplyAudio,
    ReplyAudioDone,
    ReplyTextDelta,
    ReplyTextDone,
    ReplyDone,
    ReplyInterrupted,
)


class PairProvider:
    """A :class:`~voxtrio.runtime.provider.Provider` over the fake service, no socket."""

    name = "openai-pair"

    def __init__(
        self,
        codec: OpenAIRealtimeCodec | None = None,
        *,
        script: ConnectionScript | None = None,
        reply_latency_s: float = 0.0,
    ) -> None:
        self.codec = codec or OpenAIRealtimeCodec()
        self.service = FakeRealtimeService(script, model=self.codec.model)
        self.reply_latency_s = reply_latency_s
        self.decoded: list[Event] = []
        self._changed = trio.Event()
        self._events: trio.MemorySendChannel[Event] | None = None
        self._sent: list[dict[str, Any]] = []
        self._delayed_tx, self._delayed_rx = trio.open_memory_channel[tuple[float, Event]](
            10_000
        )

    @property
    def capabilities(self) -> Capabilities:
        return self.codec.capabilities

    @property
    def input_format(self) -> AudioFormat:
        return OPENAI

    @property
    def output_format(self) -> AudioFormat:
        return OPENAI

    @property
    def input_frame_ms(self) -> FrameMs:
        return 20

    def check(self) -> None:
        pass

    def client_events(self, kind: str) -> list[dict[str, Any]]:
        return self.service.events_of(kind)

    def server_events(self, kind: str) -> list[dict[str, Any]]:
        """What the service sent of ``kind`` (parsed)."""
        return [e for e in self._sent if e.get("type") == kind]

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        base_instructions: str | None = None,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._events = events
        with events, receive:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._delay_line)
                task_status.started()
                await self._deliver(self.service.start())
                for wire in self.codec.connect_messages(await instructions()):
                    await self._deliver(self.service.receive(wire, now=trio.current_time()))
                await events.send(SessionConnected(self.name))
                nursery.start_soon(self._ticker)
                async for msg in receive:
                    for wire in self.codec.encode(msg):
                        await self._deliver(self.service.receive(wire, now=trio.current_time()))
                    if isinstance(msg, SendText | ToolResult):
                        await events.send(msg)
                    self._changed.set()
                nursery.cancel_scope.cancel()

    async def _ticker(self) -> None:
        """Lets paced replies go on: what falls due is sent at its time."""
        while True:
            due = self.service.next_wakeup
            self._changed = trio.Event()
            if due is None:
                await self._changed.wait()
                continue
            with trio.move_on_at(due):
                await self._changed.wait()
            await self._deliver(self.service.advance_to(trio.current_time()))

    async def _deliver(self, outputs: list[Any]) -> None:
        assert self._events is not None
        for out in outputs:
            if not isinstance(out, Send):
                continue
            if isinstance(out.data, str):
                self._sent.append(json.loads(out.data))
            for event in self.codec.decode(out.data):
                if isinstance(event, LinkSignal):
                    continue  # link signals
                self.decoded.append(event)
                if self.reply_latency_s and isinstance(event, _REPLY_EVENTS):
                    await self._delayed_tx.send((trio.current_time() + self.reply_latency_s, event))
                else:
                    await self._events.send(event)

    async def _delay_line(self) -> None:
        assert self._events is not None
        async for due, event in self._delayed_rx:
            await trio.sleep_until(due)
            await self._events.send(event)


def tone(ms: int, *, amplitude: int = 8000, hz: float = 440.0) -> np.ndarray:
    n = ms * 24
    t = np.arange(n) / 24_000
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16).reshape(-1, 1)


def frames_of(pcm: np.ndarray, frame_ms: int = 20) -> list[np.ndarray]:
    step = frame_ms * 24
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def rms(frame: AudioFrame) -> float:
    return float(np.sqrt(np.mean(frame.pcm.astype(np.float64) ** 2))) if frame.samples else 0.0


class GeminiPairProvider:
    """A provider over the Gemini codec and its fake service, no socket; the test
    scripts what the service says with :meth:`say` (e.g. ``say(service.reply(...))``)."""

    name = "gemini-pair"

    def __init__(self) -> None:
        from voxtrio.codecs.gemini_live import GeminiLiveCodec, GeminiLiveConfig
        from voxtrio.testing.gemini.service import GeminiService

        self.codec = GeminiLiveCodec(GeminiLiveConfig(model="gemini-live-test"), id_prefix="g")
        self.service = GeminiService()
        self.controls: list[LinkInput] = []
        self.connected = trio.Event()
        self._events: trio.MemorySendChannel[Event] | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self.codec.capabilities

    @property
    def input_format(self) -> AudioFormat:
        return self.codec.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self.codec.output_format

    @property
    def input_frame_ms(self) -> FrameMs:
        return 20

    def check(self) -> None:
        pass

    async def say(self, outgoing: list[Any]) -> None:
        """Deliver what the service sends (from one of its scripting methods)."""
        assert self._events is not None
        for item in outgoing:
            if isinstance(item, str | bytes):
                for event in self.codec.decode(item):
                    if not isinstance(event, LinkSignal):
                        await self._events.send(event)

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        base_instructions: str | None = None,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._events = events
        with events, receive:
            task_status.started()
            for wire in self.codec.connect_messages(await instructions()):
                await self.say(self.service.receive(wire))
            await events.send(SessionConnected(self.name))
            self.connected.set()
            async for msg in receive:
                if not isinstance(msg, AudioFrame):
                    self.controls.append(msg)
                for wire in self.codec.encode(msg):
                    await self.say(self.service.receive(wire))
