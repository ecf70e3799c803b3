#!/usr/bin/env python3
"""A throwaway PostgreSQL cluster for the tests (stdlib only).

    python3 scripts/pg_cluster.py run -- CMD ARGS...   # start, run CMD, stop; CMD's exit code
    python3 scripts/pg_cluster.py serve                # start, print the DSN, stop on Ctrl-C

The cluster lives in a fresh temporary directory: ``initdb`` there, the server listening
on a unix socket in that directory and on 127.0.0.1 at a free port, and everything
removed when it stops. PostgreSQL refuses to run as root, so as root the server runs as
the unprivileged user ``nobody``. If no PostgreSQL binaries are found and we are root,
they are installed from the system packages (``apt-get install -y postgresql``).

While CMD runs, ``VOXTRIO_TEST_PG_DSN`` holds a ``postgresql://`` DSN (TCP, with a
random password: the server asks for it, so the tests see real authentication).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DSN_ENV = "VOXTRIO_TEST_PG_DSN"
USER = "voxtrio"
RUN_AS = "nobody"  # when we are root
START_TIMEOUT_S = 30.0


class ClusterError(RuntimeError):
    """The cluster could not be set up or started (the message says why)."""


def log(message: str) -> None:
    print(f"pg_cluster: {message}", file=sys.stderr, flush=True)


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def _version_key(path: str) -> tuple[int, ...]:
    parts = Path(path).parent.name.split(".")
    return tuple(int(p) for p in parts if p.isdigit())


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: $VOXTRIO_PG_BINDIR, ``pg_config
    --bindir``, the newest /usr/lib/postgresql/*/bin, or the PATH; None if nowhere."""
    candidates: list[Path] = []
    if os.environ.get("VOXTRIO_PG_BINDIR"):
        candidates.append(Path(os.environ["VOXTRIO_PG_BINDIR"]))
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        candidates.append(Path(found))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return next((c for c in candidates if _has_server(c)), None)


def ensure_bindir() -> Path:
    """:func:`find_bindir`, installing PostgreSQL first if it is missing and we are root."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterError(
            "no PostgreSQL server binaries (initdb, postgres) found; install the "
            "'postgresql' system package or set VOXTRIO_PG_BINDIR"
        )
    log("PostgreSQL not found; installing it with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "postgresql"]):
        done = subprocess.run(cmd, env=env, stdout=sys.stderr, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed with exit code {done.returncode}")
    bindir = find_bindir()
    if bindir is None:
        raise ClusterError("installed 'postgresql' but still found no initdb/postgres")
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One throwaway cluster: :meth:`start` it, use :attr:`dsn`, then :meth:`stop`."""

    def __init__(self) -> None:
        self.bindir = ensure_bindir()
        # As root the server runs as nobody, who must reach the directory: use /tmp,
        # not a $TMPDIR that may be private to root.
        parent = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
        self.root = Path(tempfile.mkdtemp(prefix="voxtrio-pg-", dir=parent))
        self.data = self.root / "data"
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user: str | None = None
        if os.geteuid() == 0:
            self.as_user = RUN_AS
            entry = pwd.getpwnam(RUN_AS)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            user=self.as_user,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise ClusterError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_user is not None:
            entry = pwd.getpwnam(self.as_user)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--no-locale", "--no-sync", "--no-instructions",
            )  # fmt: skip
        finally:
            pwfile.unlink()

    def _launch(self) -> None:
        self.port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            # A throwaway cluster: a crash of this machine may lose it whole. Killing
            # a client (the tests' kill -9) is unaffected: commits still wait for WAL.
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "max_connections": "60",
            "logging_collector": "off",
        }
        argv = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        logfile = (self.root / "server.log").open("ab")
        with logfile:
            self.proc = subprocess.Popen(
                argv, user=self.as_user, stdout=logfile, stderr=logfile,
                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True,
            )  # fmt: skip

    def _wait_ready(self) -> bool:
        """True once the server accepts connections; False if it exited."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.data / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # The 8th line is the server's status; "ready" once it accepts.
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return True
            time.sleep(0.02)
        raise ClusterError(f"the server did not become ready in {START_TIMEOUT_S:g} s")

    def start(self) -> str:
        """Create and start the cluster; returns the DSN. Cleans up if it fails."""
        try:
            self._initdb()
            for _attempt in range(3):  # the free port may be taken before we bind it
                self._launch()
                if self._wait_ready():
                    return self.dsn
            raise ClusterError(f"the server would not start: {self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = (self.root / "server.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no server log)"

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and remove the directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started cluster, stopped and removed on exit (also on error or Ctrl-C)."""
    cluster = Cluster()
    started = time.monotonic()
    cluster.start()
    log(f"PostgreSQL up in {time.monotonic() - started:.2f} s on 127.0.0.1:{cluster.port}")
    try:
        yield cluster
    finally:
        cluster.stop()
        log("PostgreSQL stopped and removed")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "run":
        cmd = argv[3:] if argv[2:3] == ["--"] else argv[2:]
        if not cmd:
            print(__doc__, file=sys.stderr)
            return 2
        with running_cluster() as cluster:
            return subprocess.run(cmd, env={**os.environ, DSN_ENV: cluster.dsn}).returncode
    if argv[1:] == ["serve"]:
        with running_cluster() as cluster:
            print(f"export {DSN_ENV}='{cluster.dsn}'", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                signal.pause()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except ClusterError as exc:
        log(f"error: {exc}")
        sys.exit(1)
