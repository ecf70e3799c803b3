"""The vocabulary of voxtrio: every message that travels between actors and to apps.

Each class is a frozen attrs class, one per fact, with units in field names. Nothing
here imports trio, so codecs, actors, runtime and apps all speak the same types.

Closed unions name what each kind of channel carries, so ``match`` is exhaustive:

* :data:`Event` -- what the session reports to apps and to the transcript store;
* :data:`Control` -- the controls that travel in order with the input audio;
* :data:`ConvertInput` / :data:`LinkInput` -- what the convert actor and the provider
  link consume (audio and controls);
* :data:`PlaybackInput` -- what the playback actor consumes.

Stream positions: ``pts`` fields count samples of the provider's *input* stream (the
converted audio the provider heard) since the session started, so a transcript or a
speech boundary can be tied to audio. They are ``None`` where the provider gives no
position.
"""

from __future__ import annotations

# The vocabulary lives in two modules (events, controls) and is one namespace here.
# The ground-floor names below were importable from here before the split; kept so.
from ..audio import AudioFrame, FrameMs, pcm_equal  # noqa: F401
from ..function_tool import FunctionTool  # noqa: F401
from .controls import (
    CancelReply,
    ClearInput,
    CommitInput,
    Control,
    ConvertInput,
    CreateReply,
    EndOfInput,
    FrameBatch,
    LinkInput,
    PlaybackInput,
    Reframe,
    TruncateItem,
    UpdateSession,
)
from .events import (
    AudioDropped,
    DtmfReceived,
    ErrorEvent,
    Event,
    InputCommitted,
    InputIdleTimeout,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyPlayed,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SendText,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    SpeechStarted,
    SpeechStopped,
    SubscriberLagged,
    ToolCall,
    ToolCallCancelled,
    ToolResult,
    TurnMetrics,
)

__all__ = [
    "AudioDropped",
    "CancelReply",
    "ClearInput",
    "CommitInput",
    "Control",
    "ConvertInput",
    "CreateReply",
    "DtmfReceived",
    "EndOfInput",
    "ErrorEvent",
    "Event",
    "FrameBatch",
    "InputCommitted",
    "InputIdleTimeout",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "LinkInput",
    "PlaybackInput",
    "Reframe",
    "ReplyAudio",
    "ReplyAudioDone",
    "ReplyDone",
    "ReplyInterrupted",
    "ReplyPlayed",
    "ReplyStarted",
    "ReplyTextDelta",
    "ReplyTextDone",
    "SendText",
    "SessionConnected",
    "SessionReconnected",
    "SessionReconnecting",
    "SpeechStarted",
    "SpeechStopped",
    "SubscriberLagged",
    "ToolCall",
    "ToolCallCancelled",
    "ToolResult",
    "TruncateItem",
    "UpdateSession",
    "TurnMetrics",
]

# Each class says it comes from ``voxtrio.messages``, where apps import it (and where
# it was defined before the split), so reprs, pickles and module checks are unchanged.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
