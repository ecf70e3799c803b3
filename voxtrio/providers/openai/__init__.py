"""OpenAI Realtime (GA) as a session provider: configuration and factory.

The wire format itself is the sans-IO codec :mod:`voxtrio.codecs.openai_realtime`.
"""

from .provider import DEFAULT_TURN_DETECTION, OpenAIRealtime

__all__ = ["DEFAULT_TURN_DETECTION", "OpenAIRealtime"]
