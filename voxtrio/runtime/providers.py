"""Where the providers used to live; kept so that old imports keep working.

New code imports them from :mod:`voxtrio` or :mod:`voxtrio.providers`.
"""

from ..errors import MissingApiKeyError
from ..providers.openai import DEFAULT_TURN_DETECTION, OpenAIRealtime

__all__ = ["DEFAULT_TURN_DETECTION", "MissingApiKeyError", "OpenAIRealtime"]
