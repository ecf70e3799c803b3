"""A writer process for the SIGKILL test: feeds events through the store actor forever.

Usage: ``python tests/transcript_writer.py DB SESSION_ID``. Prints ``ready`` once the actor
runs, then for every item whose event the actor has received (the unbuffered send
returned), one line ``<item key> <time.monotonic()>``, flushed at once. About 2,000
items a second, like a busy call (the store benchmark's target rate).
"""

from __future__ import annotations

import sys
import time
from functools import partial

import trio

from voxtrio.actors import transcript_store
from voxtrio.messages import Event, InputTranscriptionCompleted, ReplyTextDone, SpeechStarted


async def main(path: str, session_id: str) -> None:
    store = transcript_store.SqliteTranscriptStore(path)
    send, receive = trio.open_memory_channel[transcript_store.StoreInput](0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(transcript_store.run, receive, store=store, session_id=session_id)
        )
        print("ready", flush=True)
        n = 0
        while True:
            pts = n * 4800
            steps: list[tuple[Event, str | None]] = [
                (SpeechStarted(item_id=f"u{n}", pts=pts), None),
                (InputTranscriptionCompleted(f"u{n}", f"user turn {n}", pts=pts), f"user:u{n}"),
                (ReplyTextDone(f"reply {n}", f"r{n}", f"a{n}"), f"assistant:a{n}"),
            ]
            for event, key in steps:
                await send.send(event)
                if key is not None:
                    print(key, time.monotonic(), flush=True)
            n += 1
            await trio.sleep(0.001)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
