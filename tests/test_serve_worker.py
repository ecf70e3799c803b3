"""``open_serve_worker`` (:mod:`voxtrio.testing.serve_worker`) with a real ``voxtrio
serve`` child and no PostgreSQL: it listens on the URL it gives, the store (a DSN with
a password) stays out of argv, reprs and errors, SIGTERM at the end drains it to exit
0, and a worker that exits before listening is a ChildFailed with its code and
stderr."""

from __future__ import annotations

import pytest
import trio

from voxtrio.testing import ChildFailed, ConnectionScript, open_openai_loopback, open_serve_worker

PASSWORD = "pw-7hQx2-never-shown"
#: A DSN nobody answers: ``voxtrio serve`` opens its store per call, so it still listens.
DSN = f"postgresql://voxtrio:{PASSWORD}@127.0.0.1:1/voxtrio"


async def test_a_worker_listens_keeps_the_dsn_out_of_argv_and_drains_to_exit_0() -> None:
    with trio.fail_after(60):
        async with (
            open_openai_loopback(default_script=ConnectionScript(), api_key="test") as loopback,
            open_serve_worker(loopback.url, DSN, 3, require_clean_exit=True) as (url, proc),
        ):
            assert url.startswith("ws://127.0.0.1:")
            assert isinstance(proc.args, list)
            assert not any(PASSWORD in str(arg) for arg in proc.args)
            assert PASSWORD not in repr(proc)
            host, port = url.removeprefix("ws://").split("/")[0].split(":")
            stream = await trio.open_tcp_stream(host, int(port))  # it listens there
            await stream.aclose()
        assert proc.returncode == 0  # SIGTERM at the end: drained


async def test_a_worker_that_exits_before_listening_is_a_child_failed() -> None:
    """``--max-calls 0`` is a usage error: exit code 2, said on stderr; quoted, and
    the DSN's password nowhere in the error."""
    with trio.fail_after(60), pytest.raises(ChildFailed) as caught:
        async with open_serve_worker("ws://127.0.0.1:1/v1/realtime", DSN, 0):
            pytest.fail("the worker listened with --max-calls 0")
    failed = caught.value
    assert (failed.name, failed.returncode) == ("the worker", 2)
    assert str(failed).startswith("the worker exited with code 2")
    assert "--max-calls" in failed.stderr
    assert PASSWORD not in str(failed)


async def test_a_sigterm_right_after_the_listening_line_drains() -> None:
    """``voxtrio serve`` handles SIGTERM before it prints its listening line: a
    SIGTERM at once drains it (exit 0), never kills it (-15). Before the fix the
    handler went in after the line, and about 4 in 10 such starts died with -15."""
    with trio.fail_after(120):
        async with open_openai_loopback(
            default_script=ConnectionScript(), api_key="test"
        ) as loopback:
            for _ in range(5):
                async with open_serve_worker(loopback.url, DSN, 3) as (_url, proc):
                    proc.terminate()
                    code = await proc.wait()
                assert code == 0, code
