"""Child processes of tests and benchmarks (:mod:`voxtrio.testing.processes`), with real
subprocesses (``sys.executable -c ...``): the listening line is read and nothing
after it; a child that exits first, or never prints, is a ``ChildFailed`` naming it,
its exit code and the end of its stderr; the load harness stops at once when its
server child dies mid-run, instead of waiting for lines that never come."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from benchmarks import load_harness
from benchmarks.load_harness import LoadPlan, run_load
from voxtrio.testing.processes import TAIL_CHARS, ChildFailed, StderrFile, first_line


@asynccontextmanager
async def child(
    code: str, secrets: tuple[str, ...] = ()
) -> AsyncIterator[tuple[trio.Process, StderrFile]]:
    """``python -c code`` with its stdout piped and its stderr in a StderrFile (that
    redacts ``secrets``); killed (if still running) and reaped on the way out."""
    with StderrFile(secrets) as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr.file
        )
        try:
            yield proc, stderr
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


async def test_the_listening_line_is_read_and_nothing_after_it() -> None:
    code = "print('listening ws://127.0.0.1:1234', flush=True); print('next', flush=True)"
    with trio.fail_after(30):
        async with child(code) as (proc, stderr):
            line = await first_line(proc, "the child", stderr, timeout_s=20)
            assert line == b"listening ws://127.0.0.1:1234\n"
            assert proc.stdout is not None
            rest = b""
            async for chunk in proc.stdout:
                rest += chunk
            assert rest == b"next\n"  # first_line took no byte past its line


async def test_a_child_that_exits_first_names_its_code_and_stderr() -> None:
    code = (
        "import sys; sys.stderr.write('x' * 5000 + '\\nTraceback (most recent call last):\\n"
        "ValueError: no port for you\\n'); sys.exit(3)"
    )
    with trio.fail_after(30):
        async with child(code) as (proc, stderr):
            with pytest.raises(ChildFailed) as caught:
                await first_line(proc, "the provider process", stderr, timeout_s=20)
    failed = caught.value
    assert (failed.name, failed.returncode) == ("the provider process", 3)
    message = str(failed)
    assert message.startswith("the provider process exited with code 3")
    assert "ValueError: no port for you" in message
    assert failed.stderr.endswith("ValueError: no port for you")
    assert len(failed.stderr) <= TAIL_CHARS  # the tail, not all 5,000 x's
    assert failed.stderr.startswith("x")


async def test_a_child_that_never_prints_times_out() -> None:
    """A child that never prints a line: ChildFailed once the timeout is over, the
    child left running (the caller's cleanup ends it)."""
    with trio.fail_after(30):
        async with child("import time; time.sleep(60)") as (proc, stderr):
            with pytest.raises(ChildFailed) as caught:
                await first_line(proc, "the worker", stderr, timeout_s=0.2)
            assert proc.returncode is None
    failed = caught.value
    assert failed.returncode is None
    assert str(failed).startswith("the worker printed no line within 0.2 s")


async def test_the_secrets_it_was_given_are_never_quoted() -> None:
    """A child that writes a password to its stderr and exits: the ChildFailed quotes
    its stderr with ``***`` where the password was; nor is it in the StderrFile's repr."""
    secret = "pw-Zq81xK-secret"
    code = f"import sys; sys.stderr.write('FATAL: dsn=u:{secret}@db\\n'); sys.exit(3)"
    with trio.fail_after(30):
        async with child(code, secrets=(secret, "")) as (proc, stderr):
            assert secret not in repr(stderr)
            with pytest.raises(ChildFailed) as caught:
                await first_line(proc, "the worker", stderr, timeout_s=20)
    assert caught.value.returncode == 3
    assert caught.value.stderr == "FATAL: dsn=u:***@db"
    assert secret not in str(caught.value)
    assert "dsn=u:***@db" in str(caught.value)


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (the apps' sessions
    wait on it: the dead server is the only way the run can end)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_the_load_harness_fails_fast_when_its_server_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening_port: int
) -> None:
    """The server child gives its port, then dies (exit code 3, a traceback on its
    stderr) in the middle of a 600 s run: ``run_load`` raises ChildFailed with both
    at once, and cancels its sessions (no wait for the run's end)."""
    code = (
        f"import json, sys; print(json.dumps({{'port': {listening_port}}}), flush=True); "
        "sys.stderr.write('Traceback (most recent call last):\\nMemoryError: load server\\n'); "
        "sys.exit(3)"
    )
    monkeypatch.setattr(load_harness, "_server_command", lambda plan: [sys.executable, "-c", code])
    plan = LoadPlan(sessions=1, seconds=600)
    with trio.fail_after(30), pytest.raises(ChildFailed) as caught:
        await run_load(plan, tmp_path / "load.sqlite3")
    failed = caught.value
    assert (failed.name, failed.returncode) == (load_harness.SERVER, 3)
    assert "exited with code 3 before the harness let it stop" in str(failed)
    assert failed.stderr.endswith("MemoryError: load server")
