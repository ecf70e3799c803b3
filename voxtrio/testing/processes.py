"""Child processes of tests and benchmarks (a loopback provider, ``voxtrio serve``
workers -- :mod:`voxtrio.testing.serve_worker` --, the load harness's servers): their
stderr kept to quote, their "listening" line read, and their death turned into one
exception that says who died, how, and what it said.

* :class:`StderrFile` -- a child's stderr goes to a temporary file, not a pipe:
  nobody has to read it while the child runs (a full pipe would block the child),
  and its tail can be quoted when the child fails (with the secrets it was given,
  such as a DSN's password, replaced by ``***``).
* :func:`first_line` -- the child's first stdout line (its address), with a
  timeout; a child that exits (or stays silent) first is a :class:`ChildFailed`.
* :func:`failure` -- the :class:`ChildFailed` for a child that died.
* :func:`checkout_env` -- the environment for a child that must run this same
  voxtrio (its directory first on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import trio

__all__ = ["PACKAGE_ROOT", "ChildFailed", "StderrFile", "checkout_env", "failure", "first_line"]

#: The directory holding the ``voxtrio`` package this module belongs to (a source
#: checkout's root, where ``benchmarks`` lives too).
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

#: How much of a failed child's stderr a :class:`ChildFailed` quotes (its end).
TAIL_CHARS = 2000


def checkout_env(**extra: str) -> dict[str, str]:
    """``os.environ`` with :data:`PACKAGE_ROOT` first on ``PYTHONPATH`` (so a child
    runs the same voxtrio, and finds ``benchmarks``), plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, **extra)


class ChildFailed(RuntimeError):
    """A child process died (or never said it was listening).

    Attributes:
        name: who it was (``"the provider process"``).
        returncode: its exit code; None if it is still running (it timed out).
        stderr: the end of what it wrote to stderr ("" if not captured).
    """

    def __init__(self, name: str, returncode: int | None, stderr: str, what: str) -> None:
        self.name = name
        self.returncode = returncode
        self.stderr = stderr
        message = f"{name} {what}"
        message += f"; its stderr ends:\n{stderr}" if stderr else "; it wrote nothing to stderr"
        super().__init__(message)


class StderrFile:
    """A temporary file to pass as a child's ``stderr`` (use it as a context manager:
    the file is closed and gone on exit); :meth:`tail` reads what the child wrote.

    ``secrets`` (say, a DSN's password) are replaced by ``***`` in whatever this
    quotes (:meth:`redact`), so a child that prints one does not put it in an
    exception message. They are kept only in a private attribute, never in a repr."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __repr__(self) -> str:
        return f"<StderrFile fd={self.file.fileno() if not self.file.closed else None}>"

    def redact(self, text: str) -> str:
        """``text`` with each secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def tail(self, chars: int = TAIL_CHARS) -> str:
        """The last ``chars`` characters written so far, stripped, secrets redacted."""
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        # bytes enough for ``chars`` UTF-8 characters, and for a secret cut at the start
        extra = max((len(s.encode()) for s in self._secrets), default=0)
        start = max(0, size - 4 * chars - extra)
        text = self.redact(os.pread(fd, size - start, start).decode("utf-8", "replace"))
        return text[-chars:].strip()

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> StderrFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def failure(
    proc: trio.Process, name: str, stderr: StderrFile | None, what: str | None = None
) -> ChildFailed:
    """The exception for ``proc`` having died (``what`` happened: by default, it
    exited with its code), quoting the tail of ``stderr``."""
    code = proc.returncode
    if what is None:
        what = f"exited with code {code}" if code is not None else "closed its stdout"
    return ChildFailed(name, code, stderr.tail() if stderr is not None else "", what)


async def first_line(
    proc: trio.Process,
    name: str,
    stderr: StderrFile | None = None,
    *,
    timeout_s: float = 60.0,
    exit_wait_s: float = 5.0,
) -> bytes:
    """The first line ``proc`` prints on its stdout (its "listening" line), read a
    byte at a time so nothing after it is taken from the stream.

    Raises:
        ChildFailed: the child closed its stdout first (it exited: its code and the
            tail of its stderr are quoted; it gets ``exit_wait_s`` to be reaped), or
            printed no whole line within ``timeout_s`` (it is left running: the
            caller's cleanup ends it).
    """
    stdout = proc.stdout
    assert stdout is not None, "start the child with stdout=subprocess.PIPE"
    line = b""
    with trio.move_on_after(timeout_s):
        while not line.endswith(b"\n"):
            chunk = await stdout.receive_some(1)
            if not chunk:
                with trio.move_on_after(exit_wait_s):
                    await proc.wait()
                raise failure(proc, name, stderr, None) from None
            line += chunk
        return line
    said = ""
    if line:
        printed = line[-200:].decode("utf-8", "replace")
        if stderr is not None:
            printed = stderr.redact(printed)
        said = f" (it printed {printed!r})"
    raise failure(proc, name, stderr, f"printed no line within {timeout_s:g} s{said}")
