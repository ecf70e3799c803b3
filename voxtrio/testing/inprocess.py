"""An in-process provider with no network: it records what the session sends and
emits whatever events the test (or app) scripts.

Use it to test an app's handling of events and audio without a websocket::

    provider = RecordingProvider()
    async with open_session(provider) as session:
        await provider.connected.wait()
        await provider.emit(InputTranscriptionCompleted("item_1", "hello"))
"""

from __future__ import annotations

import numpy as np
import trio

from ..actors.base import InstructionsSource
from ..audio import AudioFormat, AudioFrame, FrameMs, concat_frames
from ..codecs.wire import Capabilities
from ..messages import (
    EndOfInput,
    Event,
    FrameBatch,
    LinkInput,
    SendText,
    SessionConnected,
    SessionReconnected,
    ToolResult,
)

__all__ = ["RecordingProvider"]

_EVERYTHING = Capabilities(
    manual_commit=True,
    clear_input=True,
    server_vad=True,
    cancel_reply=True,
    truncation=True,
    tool_calls=True,
    tool_cancellation=True,
    input_transcription=True,
)


class RecordingProvider:
    """A provider that records its input and emits scripted events.

    Args:
        input_format: the format it declares for input audio.
        output_format: the format of the reply audio it claims to send.
        input_frame_ms: the input frame length it asks for.
        record: keep every frame (False: only count them, for benchmarks).
        capabilities: what it claims it can do (by default everything but
            resumption, so the session lets every control through to it).
        connect_at_start: connect as soon as the link runs (False: it starts
            disconnected, as a link whose provider is not reachable yet, and queues
            what the session sends until :meth:`connect`).

    Like the real link, it reports each :class:`SendText` and :class:`ToolResult`
    as an event once it has "sent" it (recorded it in ``controls``): that is when
    the transcript records them.

    Attributes:
        frames: every input frame received, in order (when ``record``).
        controls: every non-audio message received, in order.
        instructions: the instructions fetched at each connect.
        frames_received / samples_received: counts, recorded or not.
        connected: set once the link is up.
        input_ended: set at ``EndOfInput`` or when the link's input channel ends.
        online: whether it is connected now (what arrives meanwhile is queued).
    """

    def __init__(
        self,
        *,
        input_format: AudioFormat | None = None,
        output_format: AudioFormat | None = None,
        input_frame_ms: FrameMs = 20,
        record: bool = True,
        name: str = "recording",
        capabilities: Capabilities | None = None,
        connect_at_start: bool = True,
    ) -> None:
        self._capabilities = capabilities or _EVERYTHING
        self._input_format = input_format or AudioFormat(24_000)
        self._output_format = output_format or AudioFormat(24_000)
        self._frame_ms = input_frame_ms
        self._record = record
        self._name = name
        self.frames: list[AudioFrame] = []
        self.controls: list[LinkInput] = []
        self.instructions: list[str] = []
        self.frames_received = 0
        self.samples_received = 0
        self.messages_received = 0
        self.connected = trio.Event()
        self.input_ended = trio.Event()
        self._events: trio.MemorySendChannel[Event] | None = None
        self._source: InstructionsSource | None = None
        self._connect_at_start = connect_at_start
        self._queue: list[LinkInput] = []
        self.online = False
        self._resumed: trio.Event | None = None  # set while paused
        #: What the session told the link about its input (set when the link runs).
        self.live_input: bool | None = None

    @property
    def name(self) -> str:
        """The provider name given at construction."""
        return self._name

    def check(self) -> None:
        """Nothing to check: this provider needs no key or network."""

    @property
    def capabilities(self) -> Capabilities:
        """The capabilities this provider advertises to the session."""
        return self._capabilities

    @property
    def input_format(self) -> AudioFormat:
        """The audio format the provider expects to receive."""
        return self._input_format

    @property
    def output_format(self) -> AudioFormat:
        """The audio format of the reply audio it produces."""
        return self._output_format

    @property
    def input_frame_ms(self) -> FrameMs:
        """The duration, in milliseconds, of each input frame."""
        return self._frame_ms

    def audio(self) -> np.ndarray:
        """All recorded input audio, concatenated, ``(samples, channels)``."""
        return concat_frames(self.frames)

    async def emit(self, event: Event) -> None:
        """Send ``event`` into the session as if the provider said it.

        Raises:
            RuntimeError: the link is not running.
        """
        # A cancelled caller must see its cancellation, not a link that has just
        # stopped because of that same cancellation.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._events is None:
            raise RuntimeError("the provider link is not running")
        await self._events.send(event)

    async def connect(self) -> str:
        """Connect (again): fetch the instructions, report the connection, then send
        what was queued while offline, in order. Returns the instructions.

        Raises:
            RuntimeError: the link is not running.
        """
        if self._source is None or self._events is None:
            raise RuntimeError("the provider link is not running")
        events = self._events
        text = await self._source()
        self.instructions.append(text)
        if self.connected.is_set():
            attempt = len(self.instructions) - 1
            await events.send(SessionReconnected(self._name, attempt, len(text)))
        else:
            await events.send(SessionConnected(self._name, len(text)))
        while self._queue:
            await self._deliver(self._queue.pop(0))
        self.online = True  # no checkpoint since the queue was found empty
        self.connected.set()
        return text

    def disconnect(self) -> None:
        """Lose the connection: what the session sends is queued until :meth:`connect`."""
        self.online = False

    def pause(self) -> None:
        """Stop reading the link's input (a stalled link: the session's input path
        fills up and pushes back) until :meth:`resume`. At most the message being
        received now is still taken."""
        if self._resumed is None:
            self._resumed = trio.Event()

    def resume(self) -> None:
        """Read the link's input again."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the in-process link: record what the session sends, emit the events pushed to it."""
        self.live_input = live_input
        with receive, events:
            # Ready at once, like the real link: the instructions come from the
            # session's transcript, which answers once the session runs.
            task_status.started()
            self._events = events
            self._source = instructions
            try:
                if self._connect_at_start:
                    await self.connect()
                while True:
                    if self._resumed is not None:  # no extra checkpoint unless paused
                        await self._resumed.wait()
                    try:
                        msg = await receive.receive()
                    except trio.EndOfChannel:
                        break
                    self.messages_received += 1
                    if self.online:
                        await self._deliver(msg)
                    else:
                        self._queue.append(msg)
                self.input_ended.set()
                # Input is over but replies may still come: stay up until cancelled.
                await trio.sleep_forever()
            finally:
                self._events = None
                self._source = None

    async def _deliver(self, msg: LinkInput) -> None:
        """What the link does once connected: take audio, record controls, and
        report the text and tool results it sent."""
        if isinstance(msg, FrameBatch):
            self._take(msg.frames)
        elif isinstance(msg, AudioFrame):
            self._take((msg,))
        else:
            self.controls.append(msg)
            if isinstance(msg, EndOfInput):
                self.input_ended.set()
            elif isinstance(msg, SendText | ToolResult) and self._events is not None:
                await self._events.send(msg)

    def _take(self, frames: tuple[AudioFrame, ...]) -> None:
        rate = self._input_format.sample_rate
        channels = self._input_format.channels
        samples = 0
        for f in frames:  # per-frame work kept small: benchmarks run through here
            shape = f.pcm.shape
            if f.sample_rate != rate or shape[1] != channels:
                raise AssertionError(
                    f"the session sent {f!r}, but this provider declared {self._input_format}"
                )
            samples += shape[0]
        self.frames_received += len(frames)
        self.samples_received += samples
        if self._record:
            self.frames.extend(frames)
