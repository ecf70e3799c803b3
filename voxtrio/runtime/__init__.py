"""Supervision, event fan-out and the session."""

from .hub import EventHub, Subscription
from .session import EdgeStats, Session, SessionClosedError, SessionStats, open_session

__all__ = [
    "EdgeStats",
    "EventHub",
    "Session",
    "SessionClosedError",
    "SessionStats",
    "Subscription",
    "open_session",
]
