#!/usr/bin/env python3
"""Set up a virtualenv and run a job; needs only python3.

    python3 dev.py demo    # set up, then run a session end to end (loopback provider)
    python3 dev.py test    # set up, then lint, type-check and run the whole test suite
    python3 dev.py bench   # set up, then run the benchmarks

The test job starts a throwaway PostgreSQL (scripts/pg_cluster.py) for the tests marked
``postgres`` and removes it afterwards; VOXTRIO_SKIP_PG=1 skips those tests instead, and a
VOXTRIO_TEST_PG_DSN already set names a server to use.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def setup(extras: str) -> None:
    """Create .venv and install the project with ``extras``, once per pyproject change."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{digest[:16]}"
    if stamp.exists():
        return
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]")
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def pytest_with_postgres(rest: list[str]) -> None:
    """Run pytest with a throwaway PostgreSQL cluster (scripts/pg_cluster.py) for the
    tests marked ``postgres``, stopped and removed afterwards, pass or fail.

    Not started when VOXTRIO_SKIP_PG=1 (those tests are then skipped, loudly) or when
    VOXTRIO_TEST_PG_DSN already names a server. If it cannot start, pytest still runs
    and those tests fail, saying why (VOXTRIO_TEST_PG_ERROR).
    """
    if os.environ.get("VOXTRIO_SKIP_PG") == "1" or os.environ.get("VOXTRIO_TEST_PG_DSN"):
        run(PY, "-m", "pytest", *rest)
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    import pg_cluster

    started = time.monotonic()
    try:
        cluster = pg_cluster.Cluster()
        cluster.start()
    except (pg_cluster.ClusterError, OSError, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        print(f"dev.py: could not start PostgreSQL: {reason}", file=sys.stderr, flush=True)
        os.environ["VOXTRIO_TEST_PG_ERROR"] = reason
        run(PY, "-m", "pytest", *rest)
        return
    os.environ[pg_cluster.DSN_ENV] = cluster.dsn
    took = time.monotonic() - started
    print(f"dev.py: PostgreSQL on 127.0.0.1:{cluster.port}, up in {took:.1f} s", flush=True)
    try:
        run(PY, "-m", "pytest", *rest)
    finally:
        del os.environ[pg_cluster.DSN_ENV]
        cluster.stop()


def main(argv: list[str]) -> int:
    job = argv[1] if len(argv) > 1 else "test"
    rest = argv[2:]
    try:
        if job == "demo":
            setup("test")
            # The voxtrio command on the bundled recording (loopback provider, no network).
            wav = ROOT / "voxtrio" / "data" / "hello_48k_stereo.wav"
            demo = ("run", wav.relative_to(ROOT), "--provider", "loopback", "--out", "out")
            run(PY, "-m", "voxtrio", *demo, *rest)
        elif job == "test":
            setup("test,bench")
            run(PY, "-m", "ruff", "check", "voxtrio", "tests", "benchmarks", "examples")
            run(PY, "-m", "mypy")
            # pytest exits 5 when it collects nothing: that is a failure here too.
            pytest_with_postgres(rest)
        elif job == "bench":
            setup("test,bench")
            run(PY, "-m", "benchmarks", *rest)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
