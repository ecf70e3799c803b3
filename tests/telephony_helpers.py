"""Shared pieces of the telephony tests: a loopback provider and a running front door."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

import voxtrio
from voxtrio.codecs.media_stream import Start
from voxtrio.telephony import MediaStreamServer, serve_media_streams
from voxtrio.testing import OpenAILoopback

HELLO = Path(voxtrio.__file__).parent / "data" / "hello_48k_stereo.wav"


def loopback_factory(loopback: OpenAILoopback) -> Callable[[Start], voxtrio.OpenAIRealtime]:
    def make(start: Start) -> voxtrio.OpenAIRealtime:
        return voxtrio.OpenAIRealtime(model="gpt-realtime", api_key="test", base_url=loopback.url)

    return make


@contextlib.asynccontextmanager
async def running_server(
    loopback: OpenAILoopback, **kwargs: Any
) -> AsyncIterator[MediaStreamServer]:
    async with trio.open_nursery() as nursery:
        server: MediaStreamServer = await nursery.start(
            partial(serve_media_streams, loopback_factory(loopback), **kwargs)
        )
        yield server
        nursery.cancel_scope.cancel()
