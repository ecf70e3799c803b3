"""voxtrio: a trio-native runtime for realtime voice-AI sessions."""

from .actors.capture import ArrayCapture, ByteStreamCapture, MicCapture, WavCapture
from .actors.playback import WavSink
from .actors.provider_link import ReconnectPolicy
from .audio import AudioFormat, AudioFrame
from .codecs import (
    Reframer,
    StreamResampler,
    downmix,
    read_wav,
    upmix,
    write_wav,
)
from .codecs.transcript import instructions_with_context, render_context_as_text
from .codecs.wire import Capabilities
from .errors import (
    MissingApiKeyError,
    RemoteError,
    SessionClosedError,
    SessionError,
    UnsupportedError,
    UsageError,
    VoxtrioError,
)
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
    ToolResult,
)
from .providers import OpenAIRealtime
from .runtime import Session, SessionStats, Subscription, open_session
from .runtime.provider import Provider
from .stores import (
    MemoryTranscriptStore,
    PostgresTranscriptStore,
    SqliteTranscriptStore,
    TranscriptStore,
)

__version__ = "0.1.0"

__all__ = [
    "ArrayCapture",
    "AudioDropped",
    "AudioFormat",
    "AudioFrame",
    "ByteStreamCapture",
    "Capabilities",
    "ErrorEvent",
    "Event",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "MemoryTranscriptStore",
    "MicCapture",
    "MissingApiKeyError",
    "OpenAIRealtime",
    "PostgresTranscriptStore",
    "Provider",
    "ReconnectPolicy",
    "Reframer",
    "RemoteError",
    "ReplyAudio",
    "ReplyAudioDone",
    "ReplyDone",
    "ReplyInterrupted",
    "ReplyPlayed",
    "ReplyStarted",
    "ReplyTextDelta",
    "ReplyTextDone",
    "SendText",
    "Session",
    "SessionClosedError",
    "SessionConnected",
    "SessionError",
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
    "TranscriptStore",
    "UnsupportedError",
    "UsageError",
    "VoxtrioError",
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
