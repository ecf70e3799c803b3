"""Gemini Live as a session provider: configuration and factory.

The wire format itself is the sans-IO codec :mod:`voxtrio.codecs.gemini_live`.
"""

from .provider import DEFAULT_GEMINI_TURN_DETECTION, GeminiLive

__all__ = ["DEFAULT_GEMINI_TURN_DETECTION", "GeminiLive"]
