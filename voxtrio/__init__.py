"""voxtrio: a trio-native runtime for realtime voice-AI sessions."""

from .actors.capture import ArrayCapture, ByteStreamCapture, MicCapture, WavCapture
from .actors.playback import WavSink
from .actors.provider_link import ReconnectPolicy
from .actors.transcript_store import MemoryTranscriptStore, SqliteTranscriptStore
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
from .codecs.transcript import instructions_with_context, render_context_as_text
from .messages import (
    AudioDropped,
    ErrorEvent,
    Event,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    ReplyAudio,
    ReplyAudioDone,
    ReplyDone,
    ReplyInterrupted,
    ReplyStarted,
    ReplyTextDelta,
    ReplyTextDone,
    SessionConnected,
    SessionReconnected,
    SessionReconnecting,
    SpeechStarted,
    SpeechStopped,
    SubscriberLagged,
    ToolCall,
    ToolResult,
)
from .runtime import Session, SessionClosedError, SessionStats, Subscription, open_session
from .runtime.providers import MissingApiKeyError, OpenAIRealtime

__version__ = "0.1.0"

__all__ = [
    "ArrayCapture",
    "AudioDropped",
    "AudioFormat",
    "AudioFrame",
    "ByteStreamCapture",
    "ErrorEvent",
    "Event",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "MemoryTranscriptStore",
    "MicCapture",
    "MissingApiKeyError",
    "OpenAIRealtime",
    "ReconnectPolicy",
    "Reframer",
    "ReplyAudio",
    "ReplyAudioDone",
    "ReplyDone",
    "ReplyInterrupted",
    "ReplyStarted",
    "ReplyTextDelta",
    "ReplyTextDone",
    "Session",
    "SessionClosedError",
    "SessionConnected",
    "SessionReconnected",
    "SessionReconnecting",
    "SessionStats",
    "SpeechStarted",
    "SpeechStopped",
    "SqliteTranscriptStore",
    "StreamResampler",
    "SubscriberLagged",
    "Subscription",
    "ToolCall",
    "ToolResult",
    "WavCapture",
    "WavSink",
    "downmix",
    "instructions_with_context",
    "open_session",
    "read_wav",
    "render_context_as_text",
    "upmix",
    "write_wav",
    "__version__",
]
