"""voxtrio's session against the loopback OpenAI server for each moment the input
transcription can come (``ConnectionScript.transcript_timing``): before the reply
(the loopback's old, only order), during it, or after it, as the real service often
does. For each, with turns made by the server's VAD and by manual commits: the app
sees each user turn's transcription exactly once, the stored transcript is in the
order the turns were spoken (user items by pts), and the instructions of the next
connection carry the conversation in that order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import voxtrio
from voxtrio import (
    InputTranscriptionCompleted,
    ReplyDone,
    ReplyStarted,
    SessionReconnected,
)
from voxtrio.actors.transcript_store import MemoryTranscriptStore
from voxtrio.codecs.transcript import UserItem
from voxtrio.runtime import Session
from voxtrio.testing import ConnectionScript, OpenAILoopback
from voxtrio.testing.openai import TranscriptTiming

from .loopback_helpers import (
    LOOPBACK_MARKS,
    Recorder,
    _sockets_closed,  # noqa: F401 - an autouse fixture
    drain,
    provider_for,
    serve,
)
from .store_helpers import (
    BASE,
    REPLY,
    assistant_line,
    context_lines,
    sent_instructions,
    speech,
    summary,
    user_line,
)

pytestmark = LOOPBACK_MARKS

TIMINGS: tuple[TranscriptTiming, ...] = ("before_reply", "during_reply", "after_reply")
SAID = ("first the weather", "then the news")


@asynccontextmanager
async def stored_session(
    server: OpenAILoopback, store: MemoryTranscriptStore, **options: Any
) -> AsyncIterator[tuple[Session, Recorder]]:
    provider = provider_for(server.url, **options)
    async with (
        trio.open_nursery() as nursery,
        voxtrio.open_session(
            provider, instructions=BASE, store=store, session_id="call-1",
            realtime_playback=False,
        ) as session,
    ):  # fmt: skip
        recorder = Recorder(session.subscribe(max_buffer=1_000_000))
        nursery.start_soon(recorder.run)
        nursery.start_soon(drain, session.output)
        yield session, recorder


TRANSCRIBED = "conversation.item.input_audio_transcription.completed"


def server_kinds(server: OpenAILoopback, index: int) -> list[str]:
    """The types of the events the server sent on connection ``index``, in order."""
    return [json.loads(m)["type"] for m in server.connections[index].sent if isinstance(m, str)]


def turn_done(recorder: Recorder, n: int) -> bool:
    return len(recorder.of(ReplyDone)) >= n and len(recorder.of(InputTranscriptionCompleted)) >= n


#: After a manual commit no SpeechStarted names the user's item, and its transcription
#: may come only after the reply: the codec's InputCommitted reserves the turn's place
#: (without it, these cases stored the answer before the question).
CASES = [
    pytest.param(timing, manual, id=f"{timing}-{'manual_commit' if manual else 'server_vad'}")
    for timing in TIMINGS
    for manual in (False, True)
]


@pytest.mark.parametrize(("timing", "manual"), CASES)
async def test_the_transcript_is_right_whenever_the_transcription_comes(
    timing: TranscriptTiming, manual: bool
) -> None:
    script = ConnectionScript(transcripts=SAID, transcript_timing=timing)
    store = MemoryTranscriptStore()
    pcm, fmt = speech()
    options: dict[str, Any] = {"turn_detection": None} if manual else {}
    with trio.fail_after(60):
        async with (
            serve(default_script=script) as server,
            stored_session(server, store, **options) as (session, recorder),
        ):
            for n in (1, 2):
                await session.send_audio(pcm, fmt)
                if manual:
                    await session.commit()
                    await session.create_reply()
                await recorder.wait_until(functools.partial(turn_done, recorder, n))
            # the next connection is told the conversation so far
            await server.drop()
            await recorder.wait_for(SessionReconnected)
            again = await sent_instructions(server, 2)

        # The server really sent the transcriptions at the moments scripted.
        sent = server_kinds(server, 0)
        moments = [n for n, kind in enumerate(sent) if kind == TRANSCRIBED]
        assert len(moments) == 2
        for at in moments:
            before = sent[:at]
            replying = before.count("response.created") - before.count("response.done")
            if timing == "before_reply":
                assert replying == 0
            elif timing == "during_reply":
                assert replying == 1
            else:  # right after it (its deltas first)
                deltas = TRANSCRIBED.replace("completed", "delta")
                assert [k for k in before if k != deltas][-1] == "response.done"

        # The app saw each turn's transcription once, in the order spoken.
        assert [e.transcript for e in recorder.of(InputTranscriptionCompleted)] == list(SAID)
        ids = [e.item_id for e in recorder.of(InputTranscriptionCompleted)]
        assert len(set(ids)) == 2
        if timing == "after_reply":  # it reached the app after its reply was done
            first = recorder.events.index(recorder.of(InputTranscriptionCompleted)[0])
            assert recorder.events.index(recorder.of(ReplyDone)[0]) < first
        elif timing == "before_reply":
            first = recorder.events.index(recorder.of(InputTranscriptionCompleted)[0])
            assert first < recorder.events.index(recorder.of(ReplyStarted)[0])

        turns = [("user", SAID[0]), ("assistant", REPLY), ("user", SAID[1]), ("assistant", REPLY)]
        items = store.items("call-1")
        lines = [user_line(SAID[0]), assistant_line(REPLY), user_line(SAID[1]),
                 assistant_line(REPLY)]  # fmt: skip
        # stored, and told to the next connection, in the order spoken
        assert (summary(items), context_lines(again)) == (turns, lines)
        users = [i for i in items if isinstance(i, UserItem)]
        assert [u.item_id for u in users] == ids  # each turn once, under its id
        assert [i.seq for i in items] == sorted({i.seq for i in items})
        if not manual:  # the server's VAD says where each turn began
            pts = [u.pts for u in users if u.pts is not None]
            assert len(pts) == 2
            assert pts == sorted(pts)
