"""A ``voxtrio serve`` worker as a child process, for tests and benchmarks.

:func:`open_serve_worker` starts ``python -m voxtrio serve`` on a free port against an
OpenAI-protocol provider (a loopback), reads its ``listening ws://...`` line, yields
its media-stream URL and the process, and at the end sends SIGTERM (drain) and waits
for it to exit -- optionally requiring exit code 0. A worker that dies first, prints
something else, or does not exit is a :class:`~voxtrio.testing.processes.ChildFailed`
quoting its exit code and the end of its stderr.

The transcript store (``db``: a SQLite path or a ``postgresql://`` DSN, which can hold
a password) goes to the child in ``$VOXTRIO_DB``, never in its argv (``ps`` shows argv
to every user), and its password is redacted from whatever the errors quote.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator

import trio

from .processes import StderrFile, checkout_env, failure, first_line

__all__ = ["open_serve_worker"]

def _db_secrets(db: str) -> list[str]:
    """What of ``db`` must not be quoted: a DSN's password (in URL or key=value form)."""
    if "password" not in db and "@" not in db:
        return []  # a SQLite path, or a DSN without a password
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(db).get("password")
    except Exception:  # no psycopg, or not a DSN it can parse: hide all of it
        return [db]
    return [str(password)] if password else []


@contextlib.asynccontextmanager
async def open_serve_worker(
    base_url: str,
    db: str,
    max_calls: int = 50,
    *,
    drain_timeout_s: float = 5.0,
    require_clean_exit: bool = False,
    listening_timeout_s: float = 60.0,
    exit_timeout_s: float = 20.0,
    api_key: str = "test",
    name: str = "the worker",
) -> AsyncIterator[tuple[str, trio.Process]]:
    """A ``voxtrio serve --provider openai --base-url base_url`` child process.

    Args:
        base_url: the provider's websocket URL (an OpenAI loopback's ``url``).
        db: the transcript store, passed in ``$VOXTRIO_DB`` (never in argv).
        max_calls: ``--max-calls``.
        drain_timeout_s: ``--drain-timeout``: how long live calls may go on after SIGTERM.
        require_clean_exit: after the SIGTERM at the end, the worker must exit with
            code 0 (it drained); any other code is a ChildFailed. Otherwise its exit
            status is only available as ``process.returncode`` after the block.
        listening_timeout_s: how long it may take to print its listening line.
        exit_timeout_s: how long it may take to exit after the final SIGTERM.
        api_key: ``$OPENAI_API_KEY`` for the child (a loopback's key).
        name: what errors call it.

    Yields:
        ``(url, process)``: its ``ws://127.0.0.1:PORT/...`` URL and the process,
        once it listens; ``voxtrio serve`` handles SIGTERM before it says so, so a
        SIGTERM from then on drains it rather than killing it. The
        block may signal it itself (the process's stdout is still a pipe to read what
        it says after the listening line, such as ``draining: ...``).

    Raises:
        ChildFailed: it exited (or said something else, or nothing) before listening;
            it did not exit within ``exit_timeout_s`` of SIGTERM (it is then killed);
            or, with ``require_clean_exit``, it exited with a code other than 0.

    If the block raises, the worker is killed (no drain) and reaped.
    """
    env = checkout_env(VOXTRIO_DB=db, OPENAI_API_KEY=api_key)  # the same voxtrio
    cmd = [sys.executable, "-m", "voxtrio", "serve", "--port", "0", "--max-calls",
           str(max_calls), "--provider", "openai", "--base-url", base_url,
           "--drain-timeout", f"{drain_timeout_s:g}"]  # fmt: skip
    with StderrFile(secrets=_db_secrets(db)) as stderr:
        proc = await trio.lowlevel.open_process(
            cmd, env=env, stdout=subprocess.PIPE, stderr=stderr.file
        )
        try:
            line = await first_line(proc, name, stderr, timeout_s=listening_timeout_s)
            if not line.startswith(b"listening ws://"):
                printed = stderr.redact(line[:200].decode("utf-8", "replace"))
                raise failure(proc, name, stderr, f"printed {printed!r}, not its listening line")
            yield line.split()[1].decode(), proc
            proc.terminate()  # SIGTERM: drain (nothing if the block already ended it)
            with trio.move_on_after(exit_timeout_s):
                await proc.wait()
            if proc.returncode is None:
                what = f"did not exit within {exit_timeout_s:g} s of SIGTERM"
                raise failure(proc, name, stderr, what)
            if require_clean_exit and proc.returncode != 0:
                what = f"exited with code {proc.returncode} after SIGTERM, not 0 (drained)"
                raise failure(proc, name, stderr, what)
        finally:
            with trio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                assert proc.stdout is not None
                await proc.stdout.aclose()
