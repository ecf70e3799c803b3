"""Every public Session method is one channel operation: cancelled at any point (a
number of scheduler checkpoints hypothesis chooses, with the input path free or
stalled), either all of its effects happened or none did.

Effects are observed from outside: what reached the provider
(``RecordingProvider.controls`` and its audio), what playback did, what the store
holds and what subscribers saw.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import voxtrio
from voxtrio.actors.transcript_store import MemoryTranscriptStore
from voxtrio.audio import AudioFormat, AudioFrame
from voxtrio.codecs.transcript import ToolResultItem, UserItem
from voxtrio.codecs.wire import Capabilities
from voxtrio.errors import SessionClosedError
from voxtrio.messages import (
    CancelReply,
    ClearInput,
    CommitInput,
    CreateReply,
    EndOfInput,
    Event,
    LinkInput,
    ReplyAudio,
    ReplyDone,
    ReplyPlayed,
    SendText,
    ToolCall,
    ToolResult,
    TruncateItem,
    UpdateSession,
)
from voxtrio.runtime import Session, Subscription, open_session
from voxtrio.testing import RecordingProvider

from .cancel_helpers import cancel_later

MARKER = CreateReply("marker")


class StallableProvider(RecordingProvider):
    """Wakes waiters on every control it takes (stalled with ``pause()``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._changed = trio.Event()

    async def wait_for_control(self, msg: LinkInput) -> None:
        while msg not in self.controls:
            self._changed = trio.Event()
            await self._changed.wait()

    async def _deliver(self, msg: LinkInput) -> None:
        await super()._deliver(msg)
        self._changed.set()


@attrs.define
class Harness:
    session: Session
    provider: StallableProvider
    sub: Subscription
    store: MemoryTranscriptStore
    seen: list[Event] = attrs.field(factory=list)
    frames: list[AudioFrame] = attrs.field(factory=list)

    async def collect_output(self) -> None:
        async for frame in self.session.output:
            self.frames.append(frame)

    async def until(self, kind: type[Any], **fields: Any) -> Any:
        """The next event of ``kind`` (with ``fields``) on the subscription."""
        async for event in self.sub:
            self.seen.append(event)
            if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no {kind.__name__} {fields}")

    async def play(self, response_id: str, item_id: str) -> ReplyPlayed:
        """A short reply of the provider's; returns what playback reports of it."""
        pcm = np.full((4800, 1), 1000, np.int16)
        await self.provider.emit(ReplyAudio(pcm, 24_000, response_id, item_id))
        await self.provider.emit(ReplyDone(response_id))
        played: ReplyPlayed = await self.until(ReplyPlayed, response_id=response_id)
        return played


Effects = Callable[[Harness, MemoryTranscriptStore], Awaitable[bool]]


@attrs.frozen
class Case:
    """``call`` is attempted; ``happened`` says, after everything settled, whether
    all of its effects are there (and asserts there is no part of them otherwise)."""

    call: Callable[[Harness], Awaitable[None]]
    happened: Effects
    setup: Callable[[Harness], Awaitable[None]] | None = None
    push_mode: bool = True


def control_count(h: Harness, msg: LinkInput) -> int:
    count = h.provider.controls.count(msg)
    assert count <= 1
    return count


def control(msg: LinkInput) -> Effects:
    async def happened(h: Harness, store: MemoryTranscriptStore) -> bool:
        return control_count(h, msg) == 1

    return happened


async def audio_happened(h: Harness, store: MemoryTranscriptStore) -> bool:
    # Every sample of the chunk arrived and was counted, or none was.
    await h.session.commit()  # the converter's tail goes out first
    await h.provider.wait_for_control(CommitInput())
    received = h.provider.samples_received
    counted = h.session.stats().edges["capture"].samples
    assert (received, counted) in ((0, 0), (2400, 4800))
    return received == 2400


async def end_input_happened(h: Harness, store: MemoryTranscriptStore) -> bool:
    ended = control_count(h, EndOfInput()) == 1
    try:
        await h.session.send_audio(np.ones((480, 1), np.int16), AudioFormat(48_000))
    except SessionClosedError:
        assert ended
    else:
        assert not ended
    return ended


async def cancel_happened(h: Harness, store: MemoryTranscriptStore) -> bool:
    sent = control_count(h, CancelReply("r1")) == 1
    played = await h.play("r1", "i1")
    assert (played.played_ms == 0) == sent  # playback dropped it iff it was sent
    return sent


async def reframe_happened(h: Harness, store: MemoryTranscriptStore) -> bool:
    await h.play("r9", "i9")
    rates = {frame.sample_rate for frame in h.frames}
    assert rates in ({16_000}, {24_000})
    return rates == {16_000}


def published_once(kind: type[Any]) -> Effects:
    async def happened(h: Harness, store: MemoryTranscriptStore) -> bool:
        sent = [c for c in h.provider.controls if isinstance(c, kind)]
        published = [e for e in h.seen if isinstance(e, kind)]
        await h.session.aclose()
        published += [e async for e in h.sub if isinstance(e, kind)]
        assert len(sent) <= 1
        assert published == sent  # published once, when it was sent
        # a tool result carries the name of the call it answers
        assert all(r.name == "weather" for r in sent if isinstance(r, ToolResult))
        return len(sent) == 1

    return happened


async def tool_setup(h: Harness) -> None:
    await h.provider.emit(ToolCall("c1", "weather", "{}"))
    await h.until(ToolCall)


async def truncate_setup(h: Harness) -> None:
    played = await h.play("r0", "i0")
    assert played.played_ms > 0


CASES: dict[str, Case] = {
    "send_audio": Case(
        lambda h: h.session.send_audio(np.ones((4800, 1), np.int16), AudioFormat(48_000)),
        audio_happened,
    ),
    "commit": Case(lambda h: h.session.commit(), control(CommitInput())),
    "clear_input": Case(lambda h: h.session.clear_input(), control(ClearInput())),
    "create_reply": Case(lambda h: h.session.create_reply("now"), control(CreateReply("now"))),
    "cancel_reply": Case(lambda h: h.session.cancel_reply("r1"), cancel_happened),
    "truncate": Case(
        lambda h: h.session.truncate("i0"), control(TruncateItem("i0", 200)), truncate_setup
    ),
    "send_text": Case(lambda h: h.session.send_text("typed"), published_once(SendText)),
    "send_tool_result": Case(
        lambda h: h.session.send_tool_result("c1", "rain"), published_once(ToolResult), tool_setup
    ),
    "end_input": Case(lambda h: h.session.end_input(), end_input_happened),
    "reframe_output": Case(lambda h: h.session.reframe_output(16_000), reframe_happened),
}


async def attempt(call: Callable[[], Awaitable[None]], steps: int) -> bool:
    """Run ``call``, cancelled after ``steps`` checkpoints; whether it returned."""
    done = False
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_later, scope, steps, 0.0)
            await call()
            done = True
    return done


async def stall(h: Harness) -> None:
    """Fill the stalled input path until the next send on it waits (under the
    autojump clock, a send that cannot go on for a second of trio time)."""
    for n in range(10):
        with trio.move_on_after(1) as scope:
            await h.session.create_reply(f"fill {n}")
        if scope.cancelled_caught:
            return
    raise AssertionError("the input path never filled up")


async def run_case(case: Case, h: Harness, stalled: bool, steps: int) -> tuple[bool, bool]:
    """Set up, attempt the call, let everything settle; (effects seen, call returned)."""
    provider = h.provider
    if case.setup is not None:
        await provider.connected.wait()
        await case.setup(h)
    if stalled:
        provider.pause()  # stall the link from now on
        await stall(h)
    done = await attempt(lambda: case.call(h), steps)
    provider.resume()
    await provider.connected.wait()
    await h.session.create_reply(MARKER.instructions)
    await provider.wait_for_control(MARKER)
    return await case.happened(h, h.store), done


async def check(name: str, steps: int, stalled: bool) -> None:
    case = CASES[name]
    provider = StallableProvider()
    store = MemoryTranscriptStore()
    with trio.fail_after(60):
        async with open_session(
            provider, store=store, session_id="s", audio_buffer=1, realtime_playback=False
        ) as session:
            h = Harness(session, provider, session.subscribe(max_buffer=10_000), store)
            async with trio.open_nursery() as app:
                app.start_soon(h.collect_output)
                happened, done = await run_case(case, h, stalled, steps)
                app.cancel_scope.cancel()
        assert happened == done, f"{name}: returned={done} but effects={happened}"
        if name in ("send_text", "send_tool_result"):
            items = store.items("s")
            kind = UserItem if name == "send_text" else ToolResultItem
            assert len([i for i in items if isinstance(i, kind)]) == int(done)


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(steps=st.integers(0, 40), stalled=st.booleans())
def test_cancelled_at_any_point_all_or_nothing(name: str, steps: int, stalled: bool) -> None:
    trio.run(check, name, steps, stalled, clock=trio.testing.MockClock(autojump_threshold=0))


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(0, 10))
def test_aclose_closes_even_when_cancelled(steps: int) -> None:
    """aclose keeps trio's aclose contract instead: it closes, cancelled or not."""

    async def main() -> None:
        provider = StallableProvider()
        with trio.fail_after(60):
            async with open_session(provider, realtime_playback=False) as session:
                await provider.connected.wait()
                await attempt(session.aclose, steps)
                assert session.closed
                with pytest.raises(SessionClosedError):
                    await session.create_reply()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# ----------------------------------------------------- mid-session updates (issue 12)

UPDATE_CAPS = Capabilities(manual_commit=True, session_update=True)


def _lookup() -> str:
    """Looks something up."""
    return "found"


LOOKUP = voxtrio.Tool.from_function(_lookup, name="lookup")


def updated(msg: UpdateSession, state: Callable[[Session], bool]) -> Effects:
    """The update was sent once and the session's state changed, or neither."""

    async def happened(h: Harness, store: MemoryTranscriptStore) -> bool:
        sent = control_count(h, msg) == 1
        assert state(h.session) == sent
        return sent

    return happened


UPDATE_CASES: dict[str, Case] = {
    "update_instructions": Case(
        lambda h: h.session.update_instructions("New."),
        updated(UpdateSession(instructions="New."), lambda s: s._p.base_instructions == "New."),
    ),
    "update_tools": Case(
        lambda h: h.session.update_tools([LOOKUP]),
        updated(
            UpdateSession(tools=(LOOKUP.declaration,)),
            lambda s: s._p.plan.tools.tools == (LOOKUP,),
        ),
    ),
}


async def check_update(name: str, steps: int, stalled: bool) -> None:
    case = UPDATE_CASES[name]
    provider = StallableProvider(capabilities=UPDATE_CAPS)
    store = MemoryTranscriptStore()
    with trio.fail_after(60):
        async with open_session(
            provider, store=store, session_id="s", audio_buffer=1, realtime_playback=False
        ) as session:
            h = Harness(session, provider, session.subscribe(max_buffer=10_000), store)
            async with trio.open_nursery() as app:
                app.start_soon(h.collect_output)
                happened, done = await run_case(case, h, stalled, steps)
                app.cancel_scope.cancel()
        assert happened == done, f"{name}: returned={done} but effects={happened}"


@pytest.mark.parametrize("name", sorted(UPDATE_CASES))
@settings(max_examples=40, deadline=None)
@given(steps=st.integers(0, 40), stalled=st.booleans())
def test_updates_cancelled_at_any_point_all_or_nothing(
    name: str, steps: int, stalled: bool
) -> None:
    trio.run(check_update, name, steps, stalled, clock=trio.testing.MockClock(autojump_threshold=0))
