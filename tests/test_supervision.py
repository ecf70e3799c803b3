"""One exception out of open_session: the app's own exception as itself, an actor's
bug as one SessionError naming the actor (the original as its cause), a cancellation
from outside as Cancelled, KeyboardInterrupt as itself -- whatever trio's
strict_exception_groups setting."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from voxtrio.actors import convert as convert_actor
from voxtrio.actors.base import EdgeCounter, InstructionsSource
from voxtrio.actors.playback import WavSink
from voxtrio.actors.transcript_store import MemoryTranscriptStore
from voxtrio.audio import AudioFormat, AudioFrame, PcmInput
from voxtrio.codecs.convert import Converter
from voxtrio.codecs.transcript import Item
from voxtrio.errors import SessionClosedError, SessionError
from voxtrio.messages import (
    Event,
    InputTranscriptionCompleted,
    LinkInput,
    ReplyAudio,
    ReplyDone,
)
from voxtrio.runtime import Session, open_session
from voxtrio.runtime.hub import EventHub
from voxtrio.testing import RecordingProvider

Body = Callable[[Session, RecordingProvider], Awaitable[None]]


class Bug(Exception):
    """The injected bug."""


class FailingCapture:
    """A capture whose run raises ``error`` once it has started."""

    live = False

    def __init__(self, error: type[BaseException] = Exception) -> None:
        self.error = error if error is not Exception else Bug

    async def run(
        self,
        send: trio.MemorySendChannel[AudioFrame],
        *,
        events: trio.MemorySendChannel[Event],
        counter: EdgeCounter,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with send, events:
            task_status.started()
            await trio.lowlevel.checkpoint()
            raise self.error("capture bug")


class FailingLinkProvider(RecordingProvider):
    """A provider whose link decodes its first server message wrongly (a codec bug),
    after connecting."""

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with receive, events:
            task_status.started()
            await instructions()
            raise Bug("link decode bug")


class FailingSink(WavSink):
    """An output whose write raises."""

    def __init__(self) -> None:
        super().__init__("/nonexistent/never-opened.wav")

    async def write(self, frame: AudioFrame) -> None:
        await trio.lowlevel.checkpoint()
        raise Bug("sink bug")


class BuggyStore(MemoryTranscriptStore):
    """A backend whose append raises an exception that is no store fault."""

    async def append(self, session_id: str, items: Sequence[Item]) -> None:
        await trio.lowlevel.checkpoint()
        raise Bug("store bug")


class FaultyConverter(Converter):
    def push(self, pcm: PcmInput) -> list[AudioFrame]:
        raise Bug("converter bug")


async def emit_transcript(session: Session, provider: RecordingProvider) -> None:
    await provider.connected.wait()
    await provider.emit(InputTranscriptionCompleted("u1", "hello"))
    await trio.sleep_forever()


async def emit_reply(session: Session, provider: RecordingProvider) -> None:
    await provider.connected.wait()
    await provider.emit(ReplyAudio(np.ones((2400, 1), np.int16), 24_000, "r1", "i1"))
    await provider.emit(ReplyDone("r1"))
    await trio.sleep_forever()


async def send_audio(session: Session, provider: RecordingProvider) -> None:
    await session.send_audio(np.ones((4800, 1), np.int16), AudioFormat(48_000))
    await trio.sleep_forever()


async def wait(session: Session, provider: RecordingProvider) -> None:
    await trio.sleep_forever()


async def session_error(
    body: Body, provider: RecordingProvider | None = None, **kwargs: Any
) -> SessionError:
    recording = provider or RecordingProvider()

    async def run() -> None:
        async with open_session(recording, realtime_playback=False, **kwargs) as session:
            await body(session, recording)

    with trio.fail_after(10), pytest.raises(SessionError) as info:
        await run()
    assert type(info.value) is SessionError  # exactly one, not in a group
    return info.value


CASES: dict[str, tuple[Body, dict[str, Any]]] = {
    "capture": (wait, {"capture": FailingCapture()}),
    "link": (wait, {"provider": FailingLinkProvider()}),
    "playback": (emit_reply, {"sink": FailingSink()}),
    "store": (emit_transcript, {"store": BuggyStore()}),
    "convert": (send_audio, {}),
}


@pytest.mark.parametrize("actor", sorted(CASES))
async def test_an_actor_bug_is_one_session_error_naming_it(
    actor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, kwargs = CASES[actor]
    if actor == "convert":
        monkeypatch.setattr(convert_actor, "Converter", FaultyConverter)
    error = await session_error(body, **kwargs)
    assert error.actor == actor
    assert isinstance(error.__cause__, Bug)
    assert actor in str(error)


async def test_a_bug_in_the_hub_is_one_session_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: EventHub, event: Event) -> None:
        raise Bug("hub bug")

    monkeypatch.setattr(EventHub, "publish_nowait", broken)
    error = await session_error(emit_transcript)
    assert error.actor == "hub"
    assert isinstance(error.__cause__, Bug)


async def raise_in_block(raised: BaseException | None, capture: Any = None) -> None:
    """Open a session and raise ``raised`` in its block (None: wait there)."""
    provider = RecordingProvider()
    async with open_session(provider, capture=capture) as session:
        await provider.connected.wait()
        session.subscribe()
        if raised is not None:
            raise raised
        await trio.sleep_forever()


async def test_the_apps_own_exception_comes_out_as_itself() -> None:
    raised = ValueError("my bug")
    with trio.fail_after(10), pytest.raises(ValueError, match="my bug") as info:
        await raise_in_block(raised)
    assert info.value is raised
    assert not isinstance(info.value, BaseExceptionGroup)


async def test_an_exception_group_the_app_raises_comes_out_as_itself() -> None:
    group = ExceptionGroup("the app's own", [KeyError("a"), KeyError("b")])
    with trio.fail_after(10), pytest.raises(ExceptionGroup) as info:
        await raise_in_block(group)
    assert info.value is group


async def test_a_cancellation_from_outside_propagates_as_cancelled() -> None:
    seen: list[BaseException] = []
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            try:
                async with open_session(RecordingProvider()) as session:
                    await session.provider.connected.wait()  # type: ignore[attr-defined]
                    scope.cancel()
                    await trio.sleep_forever()
            except BaseException as exc:
                seen.append(exc)
                raise
        assert scope.cancelled_caught
    assert [type(e) for e in seen] == [trio.Cancelled]


@pytest.mark.parametrize("where", ["body", "capture"])
async def test_keyboard_interrupt_stays_itself(where: str) -> None:
    if where == "capture":
        run = raise_in_block(None, FailingCapture(KeyboardInterrupt))
    else:
        run = raise_in_block(KeyboardInterrupt())
    with trio.fail_after(10), pytest.raises(KeyboardInterrupt) as info:
        await run
    assert type(info.value) is KeyboardInterrupt


@pytest.mark.parametrize("strict", [True, False])
def test_the_outcome_does_not_depend_on_strict_exception_groups(strict: bool) -> None:
    """The same exceptions come out whether trio groups single exceptions or not."""

    async def main() -> list[type[BaseException]]:
        out: list[type[BaseException]] = []
        for body in ("app", "actor"):
            try:
                capture = FailingCapture() if body == "actor" else None
                async with open_session(RecordingProvider(), capture=capture):
                    if body == "app":
                        raise ValueError("mine")
                    await trio.sleep_forever()
            except BaseException as exc:  # what came out is the point
                out.append(type(exc))
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", trio.TrioDeprecationWarning)
        got = trio.run(main, strict_exception_groups=strict)
    assert got == [ValueError, SessionError]


class GivingUpProvider(RecordingProvider):
    """A link that reads nothing, then gives up by itself when told (as a link does
    after a rejected key), closing its input while convert waits to send to it."""

    def __init__(self) -> None:
        super().__init__()
        self.give_up = trio.Event()

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with receive, events:
            task_status.started()
            await instructions()
            await self.give_up.wait()


async def test_a_link_that_gives_up_while_convert_waits_on_it_is_no_bug(
    autojump_clock: trio.testing.MockClock,
) -> None:
    provider = GivingUpProvider()
    chunk = np.ones((4800, 1), np.int16)
    with trio.fail_after(60):
        async with open_session(provider, audio_buffer=1) as session:
            for _ in range(10):  # fill the path until a send waits: convert is stuck
                with trio.move_on_after(1) as scope:
                    await session.send_audio(chunk, AudioFormat(48_000))
                if scope.cancelled_caught:
                    break
            provider.give_up.set()

            async def keep_sending() -> None:
                for _ in range(100):
                    await session.send_audio(chunk, AudioFormat(48_000))
                    await trio.sleep(0.1)

            # The session ends (the link gave up); nothing raises but the closed input.
            with pytest.raises(SessionClosedError):
                await keep_sending()
    assert session.closed
