"""Shared helpers for the loopback OpenAI Realtime server tests: a plain
trio-websocket client on 127.0.0.1, and audio to send it."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import trio_websocket
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from voxtrio.codecs.audio import AudioFormat, AudioFrame
from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.messages import FrameBatch
from voxtrio.testing import OpenAILoopback, validate_server_event

SERVER_EVENTS = TypeAdapter(RealtimeServerEvent)
FMT = AudioFormat(24_000)


@asynccontextmanager
async def client(
    server: OpenAILoopback,
    *,
    url: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    target = url or f"{server.url}?model=gpt-realtime"
    async with trio_websocket.open_websocket_url(
        target, extra_headers=headers or [], max_message_size=32 * 1024 * 1024
    ) as ws:
        yield ws


async def recv(ws: trio_websocket.WebSocketConnection) -> dict[str, Any]:
    message = await ws.get_message()
    assert isinstance(message, str)
    event: dict[str, Any] = json.loads(message)
    SERVER_EVENTS.validate_python(event)  # the openai models accept what we send
    return event


async def recv_until(ws: trio_websocket.WebSocketConnection, kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of type ``kind``."""
    seen = []
    while True:
        event = await recv(ws)
        seen.append(event)
        if event["type"] == kind:
            return seen


async def send(ws: trio_websocket.WebSocketConnection, event: dict[str, Any]) -> None:
    await ws.send_message(json.dumps(event))


def check_server(server: OpenAILoopback) -> None:
    """What must hold after every test: each event the server sent validates against
    the openai server-event models (unknown fields included), and nothing the
    clients sent made it stumble."""
    for conn in server.connections:
        for message in conn.sent:
            if isinstance(message, bytes):
                continue  # scripted binary frames are junk on purpose
            try:
                event = json.loads(message)
            except ValueError:
                continue  # scripted malformed JSON
            if isinstance(event, dict) and event.get("type", "").startswith("x-"):
                continue  # scripted unknown types
            assert validate_server_event(event) is None, (event, validate_server_event(event))
    assert server.internal_errors == []


def tone(ms: int, *, hz: float = 300.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(ms * 24) / 24_000
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * 24, np.int16)


def frames_of(pcm: np.ndarray, frame_samples: int = 480) -> list[AudioFrame]:
    return [
        AudioFrame.from_pcm(pcm[i : i + frame_samples], FMT, pts=i)
        for i in range(0, len(pcm), frame_samples)
    ]


async def stream(
    ws: trio_websocket.WebSocketConnection, codec: OpenAIRealtimeCodec, pcm: np.ndarray
) -> int:
    """Send ``pcm`` as batches of ten 20 ms frames; returns the messages sent."""
    frames = frames_of(pcm)
    sent = 0
    for i in range(0, len(frames), 10):
        for wire in codec.encode(FrameBatch(tuple(frames[i : i + 10]))):
            await ws.send_message(wire)
            sent += 1
    return sent


async def read_forever(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


def append(pcm: np.ndarray, event_id: str = "a") -> dict[str, Any]:
    audio = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
    return {"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio}
