"""Shared test doubles and helpers for the transcript store and session store tests."""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import trio
import trio.testing

import voxtrio
from voxtrio.actors.base import InstructionsSource
from voxtrio.actors.provider_link import ReconnectPolicy
from voxtrio.actors.transcript_store import (
    MemoryTranscriptStore,
    SqliteTranscriptStore,
)
from voxtrio.codecs import AudioFormat, read_wav
from voxtrio.codecs.transcript import (
    AssistantItem,
    Item,
    UserItem,
)
from voxtrio.messages import (
    Event,
    LinkInput,
    ReplyDone,
    SessionConnected,
)
from voxtrio.runtime import open_session
from voxtrio.testing import ConnectionScript, OpenAILoopback, RecordingProvider

from .loopback_helpers import serve

BASE = "You are the voxtrio test assistant. Answer briefly."
REPLY = "Hello from the loopback provider."
ROOT = Path(__file__).resolve().parent.parent
_BEGIN_RE = re.compile(r"\[transcript ([0-9a-f]{16}) begins\]")


class FlakyStore(MemoryTranscriptStore):
    """Appends fail with ``sqlite3.OperationalError`` (a locked database) until
    ``failures`` of them have failed (``10**9``: practically forever)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            await trio.lowlevel.checkpoint()
            raise sqlite3.OperationalError("database is locked")
        await super().append(session_id, items)


def context_lines(instructions: str) -> list[str] | None:
    """The lines inside the instructions' transcript block (None: no block).

    Checks the block's frame as it goes: one start marker, the end marker with the
    same tag as the very last line, nothing after it.
    """
    lines = instructions.split("\n")
    starts = [n for n, line in enumerate(lines) if _BEGIN_RE.fullmatch(line)]
    if not starts:
        return None
    assert len(starts) == 1, "more than one transcript block"
    match = _BEGIN_RE.fullmatch(lines[starts[0]])
    assert match is not None
    assert lines[-1] == f"[transcript {match.group(1)} ends]"
    return lines[starts[0] + 1 : -1]


def user_line(text: str) -> str:
    return f"user: {json.dumps(text)}"


def assistant_line(text: str) -> str:
    return f"assistant: {json.dumps(text)}"


def summary(items: Sequence[Item]) -> list[tuple[str, str]]:
    """(kind, text) of user and assistant items, in order."""
    out: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, UserItem):
            out.append(("user", item.text))
        elif isinstance(item, AssistantItem):
            out.append(("assistant", item.text))
    return out


def stored(path: Path, session_id: str) -> list[Item]:
    """What a fresh reader (as another process would) finds in the database."""
    with SqliteTranscriptStore(path) as reader:
        return reader.items(session_id)


@functools.cache
def speech() -> tuple[np.ndarray, AudioFormat]:
    """The bundled 48 kHz stereo speech, followed by a second of silence (so the
    loopback's VAD ends the turn)."""
    wav = resources.files("voxtrio.data") / "hello_48k_stereo.wav"
    with resources.as_file(wav) as path:
        pcm, fmt = read_wav(path)
    silence = np.zeros((fmt.sample_rate, fmt.channels), np.int16)
    return np.concatenate([pcm, silence]), fmt


def loopback(transcripts: Sequence[str] = ()) -> AbstractAsyncContextManager[OpenAILoopback]:
    """A loopback server; on exit, every client event must have validated against
    the openai package's models (see ``loopback_helpers.check_server``)."""
    return serve(default_script=ConnectionScript(transcripts=tuple(transcripts)), api_key=None)


def openai(server: OpenAILoopback) -> voxtrio.OpenAIRealtime:
    return voxtrio.OpenAIRealtime(
        model="gpt-realtime",
        api_key="k",
        base_url=server.url,
        reconnect=ReconnectPolicy(initial_backoff_s=0.01, max_backoff_s=0.05),
    )


async def sent_instructions(server: OpenAILoopback, n: int) -> str:
    """The instructions of the first session.update on the ``n``-th connection, as
    the server received them (waiting for it: the client reports a connection as
    soon as it has sent its configuration, before the server has read it)."""
    conn = await server.wait_for_connection(n)
    update = await conn.wait_for_event("session.update")
    assert conn.instructions[0] == update["session"]["instructions"]
    return str(update["session"]["instructions"])


async def wait_for(sub: voxtrio.Subscription, kind: type[Any]) -> Any:
    async for event in sub:
        if isinstance(event, kind):
            return event
    raise AssertionError(f"the subscription ended before a {kind.__name__}")


async def speak_turns(db: Path, session_id: str, transcripts: Sequence[str]) -> list[Event]:
    """Session 1 of a resumed call: speak the bundled speech once per transcript to
    the loopback provider (its VAD makes the turn, it answers each), then close
    normally. Returns every event the subscriber saw."""
    pcm, fmt = speech()
    seen: list[Event] = []
    async with loopback(transcripts) as server:
        async with open_session(
            openai(server),
            instructions=BASE,
            store=SqliteTranscriptStore(db),
            session_id=session_id,
            realtime_playback=False,
        ) as session:
            sub = session.subscribe(max_buffer=10_000)
            seen.append(await wait_for(sub, SessionConnected))
            for _ in transcripts:
                await session.send_audio(pcm, fmt)
                async for event in sub:
                    seen.append(event)
                    if isinstance(event, ReplyDone):
                        break
        assert server.internal_errors == []
    return seen


class ReconnectingProvider(RecordingProvider):
    """An in-process provider that fetches its instructions again whenever the test
    asks (:meth:`reconnect`), as the link does on every reconnect."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._again = trio.Event()
        self._fetched = trio.Event()

    async def reconnect(self) -> str:
        """Make the link fetch its instructions now; returns them."""
        self._fetched = trio.Event()
        self._again.set()
        await self._fetched.wait()
        return self.instructions[-1]

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def refetch() -> None:
            while True:
                await self._again.wait()
                self._again = trio.Event()
                self.instructions.append(await instructions())
                self._fetched.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refetch)
            await super().run_link(
                receive,
                events,
                instructions=instructions,
                live_input=live_input,
                task_status=task_status,
            )


class StalledSqliteStore(SqliteTranscriptStore):
    """A real SQLite store whose writes wait until ``disk_back`` is set: a disk that
    stalls, then comes back."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.disk_back = trio.Event()

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        await self.disk_back.wait()
        await super().append(session_id, items)
