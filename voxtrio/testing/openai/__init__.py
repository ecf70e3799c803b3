"""A fake OpenAI Realtime (GA) service, for tests and demos: a loopback server on
127.0.0.1 and, with no socket at all, a codec pair.

It speaks the real websocket protocol, so a session (or any websocket client) talks
to it exactly as it would to the service::

    async with open_openai_loopback() as server:
        provider = OpenAIRealtime(model="gpt-realtime", api_key="test",
                                  base_url=server.url)
        ...
        assert all(record.valid for record in server.connections[0].events)

What it does for every connection:

* answers the handshake (or rejects it: a scripted status, a wrong API key, a wrong
  path, no ``?model=``, or the retired ``OpenAI-Beta`` header), then sends
  ``session.created``;
* records every client event in order (:class:`ClientEventRecord`) and validates it:
  with the ``openai`` package's own models when it is installed (unknown fields are
  rejected too), and always with voxtrio's structural checks (e.g. the audio of an
  append must be base64 of whole 16-bit samples). An invalid event is recorded as
  such and answered with an ``error`` event; the server never crashes on input;
* keeps the decoded input audio per connection (:attr:`LoopbackConnection.audio`);
* acts like a small provider: ``session.update`` -> ``session.updated``; a built-in
  energy-threshold VAD (when the session's turn detection is on) turns speech in the
  audio into ``speech_started``/``speech_stopped``, a commit, a canned input
  transcription and, when the session asks for it, a canned reply (a 24 kHz tone
  plus its transcript); ``commit``, ``clear``, ``conversation.item.create``,
  ``.truncate``, ``.delete``, ``.retrieve``, ``response.create`` (with its
  ``output_modalities``, ``conversation: "none"``, ``metadata`` and
  ``instructions``) and ``response.cancel`` are answered as the service would;
* reports the conversation as the GA service does, which third-party clients rely
  on: ``conversation.item.added``/``.done`` for every item (after
  ``response.output_item.added``/``.done`` for replies and tool calls), a session
  ``id``/``object``/``expires_at``, synthetic ``usage`` in ``response.done``
  (:mod:`.conversation`); the input transcription can come before, during or after
  the reply (``ConnectionScript.transcript_timing``); ``?intent=transcription``
  opens a transcription session (transcripts, never responses);
* can be scripted (:class:`ConnectionScript`, one per connection in order): send
  events (or malformed JSON, binary frames, unknown types) after the N-th client
  message, drop the TCP connection or close it after N client messages, stall
  (stop reading), reject the handshake; and at any moment from the test with
  :meth:`LoopbackConnection.send_event`, :meth:`~LoopbackConnection.drop`,
  :meth:`~LoopbackConnection.close`, :meth:`~LoopbackConnection.stall`.

Every event the server sends validates against the ``openai`` server-event models.

Two ways to end a connection, with different guarantees:

* :meth:`LoopbackConnection.drop` closes the TCP stream at once, like a network
  failure: whatever the client had already sent but the server had not read is lost.
* :meth:`LoopbackConnection.close` sends a websocket close frame and goes on reading
  (and recording) until the client's close reply, so every message the client sent
  before it saw the close is recorded: nothing is lost.

The modules, bottom up: :mod:`.events` (server events and shared rules),
:mod:`.oracle` (validation), :mod:`.vad` (the energy VAD), :mod:`.scripts` (plain
script, record and output types), :mod:`.replies`, :mod:`.conversation` (the items,
usage and held transcripts, kept from the events sent), :mod:`.handlers` and :mod:`.service`
(the sans-IO fake service: no trio, no socket, no clock), :mod:`.connection` and :mod:`.server`
(wsproto over trio TCP, driving the service), :mod:`.pair` (the real client codec
wired to the service in memory, as :class:`OpenAICodecPair`).
"""

from .connection import LoopbackClosedError, LoopbackConnection
from .events import transcription_completed_event
from .oracle import openai_oracle_available, validate_client_event, validate_server_event
from .pair import OpenAICodecPair
from .scripts import (
    ClientEventRecord,
    Close,
    ConnectionScript,
    Drop,
    Outgoing,
    ScriptedToolCall,
    Send,
    ServiceOutput,
    SharedCounters,
    Stall,
    TranscriptTiming,
)
from .server import OpenAILoopback, open_openai_loopback
from .service import FakeRealtimeService
from .vad import EnergyVad

__all__ = [
    "ClientEventRecord",
    "Close",
    "ConnectionScript",
    "Drop",
    "ScriptedToolCall",
    "EnergyVad",
    "FakeRealtimeService",
    "LoopbackClosedError",
    "LoopbackConnection",
    "OpenAICodecPair",
    "OpenAILoopback",
    "Outgoing",
    "Send",
    "ServiceOutput",
    "SharedCounters",
    "Stall",
    "TranscriptTiming",
    "open_openai_loopback",
    "openai_oracle_available",
    "transcription_completed_event",
    "validate_client_event",
    "validate_server_event",
]
