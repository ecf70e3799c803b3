"""The interrupted assistant turn is stored marked interrupted, with the words the
caller heard (estimated from the share of its audio that played), whichever of its
text and its interruption comes first; and end to end through a session."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from voxtrio.codecs.openai_realtime import OpenAIRealtimeCodec
from voxtrio.codecs.transcript import AssistantItem, TranscriptBuilder
from voxtrio.codecs.transcript.builder import heard_part
from voxtrio.messages import ReplyInterrupted, ReplyStarted, ReplyTextDone
from voxtrio.runtime import open_session
from voxtrio.stores.memory import MemoryTranscriptStore
from voxtrio.testing.openai.scripts import ConnectionScript

from .test_bargein import VAD, App, speak
from .turns_helpers import PairProvider

TEXT = "one two three four five six seven eight nine ten"


@given(st.text(alphabet="ab ", max_size=40), st.floats(0, 1))
def test_the_heard_part_is_a_word_prefix_of_the_text(text: str, fraction: float) -> None:
    part = heard_part(text, fraction)
    assert text.startswith(part)
    assert len(part) <= round(len(text) * fraction) or fraction >= 1.0
    rest = text[len(part) :]
    assert part == "" or rest == "" or rest[0] == " "  # whole words only
    assert fraction >= 1.0 or part == part.rstrip()
    assert heard_part(text, None) == text


def test_interrupted_text_is_cut_to_what_was_heard_in_either_order() -> None:
    cut = ReplyInterrupted("r1", "i1", played_ms=300, received_ms=1000)
    done = ReplyTextDone(TEXT, "r1", "i1")
    for order in ((done, cut), (cut, done)):
        builder = TranscriptBuilder()
        builder.feed(ReplyStarted("r1"))
        for event in order:
            builder.feed(event)
        (item,) = builder.items
        assert isinstance(item, AssistantItem)
        assert item.interrupted
        assert item.text == "one two three"  # the whole words in 30% of 49 characters


def test_an_interruption_without_positions_keeps_the_text() -> None:
    builder = TranscriptBuilder()
    builder.feed(ReplyStarted("r1"))
    builder.feed(ReplyTextDone(TEXT, "r1", "i1"))
    builder.feed(ReplyInterrupted("r1"))
    (item,) = builder.items
    assert isinstance(item, AssistantItem)
    assert item.interrupted
    assert item.text == TEXT


async def test_the_store_holds_the_heard_part_after_a_barge_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = ConnectionScript(reply_ms=3000, reply_text=TEXT)
    provider = PairProvider(OpenAIRealtimeCodec(turn_detection=VAD), script=script)
    store = MemoryTranscriptStore()
    with trio.fail_after(60):
        async with open_session(provider, store=store, session_id="s") as session:
            app = App(session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(app.read_output)
                nursery.start_soon(app.read_events)
                await trio.sleep(0.1)
                await session.create_reply()
                await app.first_frame.wait()
                await trio.sleep(1.0)
                await speak(session)
                await trio.sleep(1)
                await session.aclose()
    (cut,) = app.of(ReplyInterrupted)
    assert cut.received_ms == 3000
    (item,) = [i for i in store.items("s") if isinstance(i, AssistantItem)]
    assert item.interrupted
    assert item.text == heard_part(TEXT, cut.played_ms / 3000)
    assert item.text
    assert len(item.text) < len(TEXT)
