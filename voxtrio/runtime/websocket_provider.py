"""A provider for any websocket protocol: a codec plus where to connect.

Everything that differs between realtime providers lives in a sans-IO
:class:`~voxtrio.codecs.wire.WireCodec`; the websocket, reconnects, buffering and
resumption live in the shared link (:mod:`voxtrio.actors.link`).
:class:`WebsocketProvider` joins the two into a :class:`~voxtrio.runtime.provider.Provider`
that ``open_session`` runs, so a new provider is a codec and a target, nothing else::

    provider = WebsocketProvider("echo", EchoCodec, lambda: ConnectTarget(url))
"""

from __future__ import annotations

import copy
import os
import ssl
from collections.abc import Callable
from typing import Self

import trio

from ..actors import link
from ..actors.base import InstructionsSource
from ..actors.link import ConnectTarget, ReconnectPolicy
from ..actors.link.guard import check_cleartext
from ..audio import AudioFormat, FrameMs, frame_fraction
from ..codecs.wire import Capabilities, WireCodec
from ..errors import MissingApiKeyError
from ..messages import Event, LinkInput

__all__ = ["ApiKeyProvider", "WebsocketProvider"]


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
    def codec_factory(self) -> Callable[[], WireCodec]:
        """What makes the codec of each connection."""
        return self._codec_factory

    def with_codec_factory(self, factory: Callable[[], WireCodec]) -> Self:
        """A copy of this provider whose connections use codecs from ``factory``;
        everything else (target, key, policy) is shared. This provider is unchanged."""
        twin = copy.copy(self)
        twin._codec_factory = factory
        return twin

    @property
    def name(self) -> str:
        """A short human-readable provider name, used in logs and errors."""
        return self._name

    @property
    def input_format(self) -> AudioFormat:
        """The audio format the codec expects to receive."""
        return self._codec.input_format

    @property
    def output_format(self) -> AudioFormat:
        """The audio format of the reply audio the codec decodes."""
        return self._codec.output_format

    @property
    def input_frame_ms(self) -> FrameMs:
        """The duration, in milliseconds, of each input frame sent upstream."""
        return self._input_frame_ms

    @property
    def capabilities(self) -> Capabilities:
        """What the provider can do, as its wire codec declares it."""
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
        base_instructions: str | None = None,
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
            base_instructions=base_instructions,
            policy=self.reconnect,
            seed=self._seed,
            live_input=live_input,
            task_status=task_status,
        )


class ApiKeyProvider(WebsocketProvider):
    """A :class:`WebsocketProvider` that authenticates with an API key.

    The key comes from ``api_key`` or, when that is None, from the first of
    ``key_variables`` set in the environment, read when the session opens. It travels
    only in the handshake headers ``auth_headers(key)`` makes, and is redacted from
    everything the link reports; it never appears in a repr.

    Args:
        name: the provider's name.
        codec_factory: makes a fresh codec (see :class:`WebsocketProvider`).
        url: the websocket URL (without the key).
        api_key: the key, or None for the environment.
        key_variables: environment variables to read the key from, in order.
        auth_headers: the handshake headers for a key; raises ``ValueError`` for a
            malformed one (without echoing it).
        missing_key: the message of the :class:`MissingApiKeyError` raised when no
            key is found.
        reconnect, seed, input_frame_ms: as for :class:`WebsocketProvider`.
        ssl_context: for ``wss://`` (a verifying default context when None).
        max_message_size: the largest server message accepted, in bytes (>= 1024).
        allow_insecure: accept ``ws://`` to a non-loopback host (the key then
            travels unencrypted; see :mod:`voxtrio.actors.link.guard`).

    Raises:
        ValueError: a malformed ``api_key``, an invalid option, or a ``ws://`` URL
            to a non-loopback host without ``allow_insecure``, at construction.
    """

    def __init__(
        self,
        name: str,
        codec_factory: Callable[[], WireCodec],
        *,
        url: str,
        api_key: str | None,
        key_variables: tuple[str, ...],
        auth_headers: Callable[[str], tuple[tuple[bytes, bytes], ...]],
        missing_key: str,
        reconnect: ReconnectPolicy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int = 16 * 1024 * 1024,
        allow_insecure: bool = False,
        seed: int | None = None,
        input_frame_ms: FrameMs = 20,
    ) -> None:
        check_cleartext(url, allow_insecure)
        if api_key is not None:
            auth_headers(api_key)  # a malformed key fails here (without echoing it)
        if isinstance(max_message_size, bool) or not (
            isinstance(max_message_size, int) and max_message_size >= 1024
        ):
            raise ValueError(f"max_message_size must be an int >= 1024, got {max_message_size!r}")
        super().__init__(
            name,
            codec_factory,
            self.target,
            reconnect=reconnect,
            seed=seed,
            input_frame_ms=input_frame_ms,
        )
        self._url = url
        self._api_key = api_key
        self._key_variables = key_variables
        self._auth_headers = auth_headers
        self._missing_key = missing_key
        self._ssl_context = ssl_context
        self._max_message_size = max_message_size
        self._allow_insecure = allow_insecure

    def check(self) -> None:
        """Fail now, with a clear message, if the session could not connect.

        Raises:
            MissingApiKeyError: no ``api_key`` and none in the environment.
            ValueError: a malformed key (the message never contains it).
        """
        self._resolve_key()

    def _resolve_key(self) -> str:
        key = self._api_key
        if key is None:
            key = next((os.environ[v] for v in self._key_variables if os.environ.get(v)), None)
        if not key:
            raise MissingApiKeyError(self._missing_key)
        self._auth_headers(key)
        return key

    def target(self) -> ConnectTarget:
        """Where the link connects, with the key in the handshake headers."""
        key = self._resolve_key()
        return ConnectTarget(
            url=self._url,
            headers=self._auth_headers(key),
            secrets=(key,),
            ssl_context=self._ssl_context,
            max_message_size=self._max_message_size,
            allow_insecure=self._allow_insecure,
        )
