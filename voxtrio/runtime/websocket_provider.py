"""A provider for any websocket protocol: a codec plus where to connect.

Everything that differs between realtime providers lives in a sans-IO
:class:`~voxtrio.codecs.wire.WireCodec`; the websocket, reconnects, buffering and
resumption live in the shared link (:mod:`voxtrio.actors.link`).
:class:`WebsocketProvider` joins the two into a :class:`~voxtrio.runtime.provider.Provider`
that ``open_session`` runs, so a new provider is a codec and a target, nothing else::

    provider = WebsocketProvider("echo", EchoCodec, lambda: ConnectTarget(url))
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..actors import link
from ..actors.base import InstructionsSource
from ..actors.link import ConnectTarget, ReconnectPolicy
from ..audio import AudioFormat, FrameMs, frame_fraction
from ..codecs.wire import Capabilities, WireCodec
from ..messages import Event, LinkInput

__all__ = ["WebsocketProvider"]


class WebsocketProvider:
    """Runs the shared websocket link with a codec.

    Args:
        name: the provider's name (in connection events and error messages).
        codec_factory: makes a fresh codec; called once now (formats and
            capabilities are read from it) and once per connection.
        target_factory: where to connect; called by :meth:`check` (so a missing key
            fails before anything runs) and when the link starts. May raise.
        reconnect: retry, backoff and outage-buffer policy.
        seed: seeds the reconnect jitter (tests).
        input_frame_ms: the length of the audio frames the session sends.

    Raises:
        ValueError: ``reconnect`` is not a :class:`ReconnectPolicy`, or a frame
            length the input rate cannot be framed at.
    """

    def __init__(
        self,
        name: str,
        codec_factory: Callable[[], WireCodec],
        target_factory: Callable[[], ConnectTarget],
        *,
        reconnect: ReconnectPolicy | None = None,
        seed: int | None = None,
        input_frame_ms: FrameMs = 20,
    ) -> None:
        if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
            raise ValueError(f"reconnect must be a ReconnectPolicy, got {reconnect!r}")
        self._name = name
        self._codec_factory = codec_factory
        self._target_factory = target_factory
        self._codec = codec_factory()
        frame_fraction(self._codec.input_format.sample_rate, input_frame_ms)  # validates
        self._input_frame_ms = input_frame_ms
        self.reconnect = reconnect or ReconnectPolicy()
        self._seed = seed

    def __repr__(self) -> str:
        return f"WebsocketProvider({self._name!r}, codec={type(self._codec).__name__})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def input_format(self) -> AudioFormat:
        return self._codec.input_format

    @property
    def output_format(self) -> AudioFormat:
        return self._codec.output_format

    @property
    def input_frame_ms(self) -> FrameMs:
        return self._input_frame_ms

    @property
    def capabilities(self) -> Capabilities:
        return self._codec.capabilities

    def check(self) -> None:
        """Raise now what making the target raises (e.g. a missing API key)."""
        self._target_factory()

    async def run_link(
        self,
        receive: trio.MemoryReceiveChannel[LinkInput],
        events: trio.MemorySendChannel[Event],
        *,
        instructions: InstructionsSource,
        live_input: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the shared link (see :func:`voxtrio.actors.link.run`)."""
        await link.run(
            receive,
            events,
            name=self._name,
            codec_factory=self._codec_factory,
            target=self._target_factory(),
            instructions=instructions,
            policy=self.reconnect,
            seed=self._seed,
            live_input=live_input,
            task_status=task_status,
        )
