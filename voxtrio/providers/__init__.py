"""One package per realtime provider: its configuration and the factory the session
runs a link with. The wire formats are sans-IO codecs in :mod:`voxtrio.codecs`; the
websocket, retries and buffering are the shared link (:mod:`voxtrio.actors`)."""

from .gemini import GeminiLive
from .openai import OpenAIRealtime

__all__ = ["GeminiLive", "OpenAIRealtime"]
