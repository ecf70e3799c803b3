"""One exception out of a session: how the pipeline reports what went wrong.

trio's advice for a context manager that runs background tasks and yields to user
code ("Designing for multiple errors"): keep the concurrency an implementation
detail. The nursery inside ``open_session`` gathers whatever its tasks raised into an
exception group; this module turns that group back into the one exception that
explains it:

* ``KeyboardInterrupt`` stays itself (it means the same whoever was interrupted);
* an exception the app's own code raised in the ``async with`` block comes out as
  itself (``except ValueError:`` around the block works);
* a bug in an actor comes out as one :class:`~voxtrio.errors.SessionError` naming
  the actor, the original as its ``__cause__`` (later failures of other actors are
  noted on it);
* a cancellation from outside goes on as ``Cancelled``.

Nothing here depends on how trio groups exceptions (``strict_exception_groups``):
a bare exception and a group of any depth are read the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import trio

from ..errors import SessionError

__all__ = ["as_session_error", "nodes", "one_exception"]


def nodes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and, for a group, every exception inside it, depth first."""
    yield exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from nodes(inner)


def _leaves(exc: BaseException) -> list[BaseException]:
    return [e for e in nodes(exc) if not isinstance(e, BaseExceptionGroup)]


def _is(node: BaseException, original: BaseException) -> bool:
    """Whether ``node`` is ``original``, or a copy trio made of it (cancel scopes
    split groups to take their ``Cancelled`` out, which rebuilds nested groups)."""
    if node is original:
        return True
    return (
        isinstance(node, BaseExceptionGroup)
        and isinstance(original, BaseExceptionGroup)
        and type(node) is type(original)
        and node.message == original.message
        and [id(e) for e in _leaves(node)] == [id(e) for e in _leaves(original)]
    )


def as_session_error(actor: str, exc: BaseException) -> BaseException:
    """What an actor's failure becomes: a :class:`SessionError` for a bug, the
    exception itself when it holds only cancellations and interrupts (those are
    not the actor's bugs)."""
    if isinstance(exc, SessionError):
        return exc
    bugs = [e for e in _leaves(exc) if not isinstance(e, trio.Cancelled | KeyboardInterrupt)]
    if not bugs:
        return exc
    interrupt = next((e for e in _leaves(exc) if isinstance(e, KeyboardInterrupt)), None)
    if interrupt is not None:
        return interrupt
    error = SessionError(actor, bugs[0])
    error.__cause__ = bugs[0]
    return error


def one_exception(exc: BaseException, body_exc: BaseException | None) -> BaseException:
    """The one exception to raise for what came out of the session's nursery.

    Args:
        exc: what the nursery raised.
        body_exc: what the app's code in the block raised, if anything.
    """
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    # An actor that found its neighbour's channel broken failed because of that
    # neighbour: the others come first.
    failures = sorted(
        (e for e in leaves if isinstance(e, SessionError)),
        key=lambda e: isinstance(e.__cause__, trio.BrokenResourceError | trio.ClosedResourceError),
    )
    if (
        body_exc is not None
        and not isinstance(body_exc, trio.Cancelled)
        and any(_is(node, body_exc) for node in nodes(exc))
    ):
        for failure in failures:
            body_exc.add_note(f"meanwhile: {failure}")
        return body_exc
    if failures:
        for other in failures[1:]:
            failures[0].add_note(f"then: {other}")
        return failures[0]
    if all(isinstance(e, trio.Cancelled) for e in leaves):
        return leaves[0]
    return exc  # not ours to explain (a bug in the pipeline's own code): as it came
