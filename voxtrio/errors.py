"""voxtrio's exceptions: a small tree, split like h11's local and remote errors.

* :class:`UsageError` -- the caller asked for something wrong: an operation on a
  closed session, or one the provider cannot do (:class:`UnsupportedError`). Bad
  argument values stay plain ``ValueError`` / ``TypeError``, raised at the call.
* :class:`RemoteError` -- the other side misbehaved or refused. Inside a session such
  faults arrive as :class:`~voxtrio.messages.ErrorEvent` messages and the session goes
  on; this exception is for the places that must end instead (a command line run
  whose provider rejected the key, say).
* :class:`SessionError` -- a bug in one of the session's actors: it names the actor,
  and the original exception is its ``__cause__``.

Nothing here imports the rest of voxtrio.
"""

from __future__ import annotations

__all__ = [
    "MissingApiKeyError",
    "RemoteError",
    "SessionClosedError",
    "SessionError",
    "UnsupportedError",
    "UsageError",
    "VoxtrioError",
]


class VoxtrioError(Exception):
    """The base of every exception voxtrio raises on purpose."""


class UsageError(VoxtrioError):
    """The caller used voxtrio in a way it does not allow (the local side's fault)."""


class UnsupportedError(UsageError):
    """The session's provider cannot do this (see its ``capabilities``).

    Raised at the call, before anything is sent, instead of a request that would go
    nowhere.
    """


class SessionClosedError(UsageError, RuntimeError):
    """The session (or its audio input) was closed; nothing more can be sent."""


class MissingApiKeyError(UsageError, ValueError):
    """No API key was given and none is set in the environment."""


class RemoteError(VoxtrioError):
    """The provider (or another peer) misbehaved or refused (the remote side's fault).

    Attributes:
        code: a machine-readable code, as in ``ErrorEvent.code``.
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class SessionError(VoxtrioError):
    """An actor of the session failed with an exception that is not the app's.

    The session's other actors were cancelled; the original exception is this one's
    ``__cause__``.

    Attributes:
        actor: the actor that failed (``capture``, ``convert``, ``link``, ``hub``,
            ``store``, ``playback``).
    """

    def __init__(self, actor: str, cause: BaseException) -> None:
        super().__init__(f"the session's {actor} actor failed: {type(cause).__name__}: {cause}")
        self.actor = actor
