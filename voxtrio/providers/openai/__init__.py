"""OpenAI Realtime (GA) as a session provider: configuration and factory.

* :mod:`.config`: :class:`OpenAIRealtimeConfig` (every session option, validated
  once), turn detection and tools;
* :mod:`.provider`: :class:`OpenAIRealtime`, which builds one configuration and makes
  a codec per connection from it.

The wire format itself is the sans-IO codec :mod:`voxtrio.codecs.openai_realtime`.
"""

from .config import FunctionTool, OpenAIRealtimeConfig, SemanticVad, ServerVad, TurnDetection
from .provider import DEFAULT_TURN_DETECTION, OpenAIRealtime

__all__ = [
    "DEFAULT_TURN_DETECTION",
    "FunctionTool",
    "OpenAIRealtime",
    "OpenAIRealtimeConfig",
    "SemanticVad",
    "ServerVad",
    "TurnDetection",
]
