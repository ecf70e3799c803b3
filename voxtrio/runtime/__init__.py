"""Supervision, event fan-out and the session."""

from ..errors import SessionClosedError, SessionError
from .hub import EventHub
from .provider import Provider
from .session import EdgeStats, Session, SessionStats, open_session
from .subscription import Subscription

__all__ = [
    "EdgeStats",
    "EventHub",
    "Provider",
    "Session",
    "SessionClosedError",
    "SessionError",
    "SessionStats",
    "Subscription",
    "open_session",
]
