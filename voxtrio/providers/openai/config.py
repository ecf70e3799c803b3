"""The OpenAI Realtime session configuration, as the provider package names it.

The classes live with the sans-IO codec (:mod:`voxtrio.codecs.openai_realtime.config`),
which is all that reads them; this module is where an app configuring the provider
finds them.
"""

from ...codecs.openai_realtime.config import (
    FunctionTool,
    OpenAIRealtimeConfig,
    SemanticVad,
    ServerVad,
    TurnDetection,
)

__all__ = ["FunctionTool", "OpenAIRealtimeConfig", "SemanticVad", "ServerVad", "TurnDetection"]
