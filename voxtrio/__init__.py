"""voxtrio: a trio-native runtime for realtime voice-AI sessions."""

from .codecs import (
    AudioFormat,
    AudioFrame,
    Reframer,
    StreamResampler,
    downmix,
    read_wav,
    upmix,
    write_wav,
)
from .messages import (
    AudioDropped,
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    ReplyAudio,
    ReplyDone,
    ReplyTextDelta,
    ReplyTextDone,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    SpeechStarted,
    SpeechStopped,
    SubscriberLagged,
)

__version__ = "0.1.0"

__all__ = [
    "AudioDropped",
    "AudioFormat",
    "AudioFrame",
    "ErrorEvent",
    "Event",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "Reframer",
    "ReplyAudio",
    "ReplyDone",
    "ReplyTextDelta",
    "ReplyTextDone",
    "SessionConnected",
    "SessionReconnected",
    "SessionReconnecting",
    "SpeechStarted",
    "SpeechStopped",
    "StreamResampler",
    "SubscriberLagged",
    "__version__",
    "downmix",
    "read_wav",
    "upmix",
    "write_wav",
]
