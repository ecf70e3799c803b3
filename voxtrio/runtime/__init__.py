"""Supervision, event fan-out and the session."""

from ..errors import SessionClosedError
from .hub import EventHub, Subscription
from .provider import Provider
from .session import EdgeStats, Session, SessionStats, open_session

__all__ = [
    "EdgeStats",
    "EventHub",
    "Provider",
    "Session",
    "SessionClosedError",
    "SessionStats",
    "Subscription",
    "open_session",
]
