"""Fixtures shared by several test modules, and the ``long`` marker's rules.

``long`` marks the tests that take long (load, soak, crash tests): ``pytest -m "not
long"`` is the quick suite. They run at a bounded size by default (what ``.ci/run``
runs); ``VOXTRIO_LONG=1`` runs them at full size. ``slow`` is the marker's old name:
a test marked ``slow`` is marked ``long`` too, and so are the tests in
:data:`LONG_ELSEWHERE` (long, in modules whose owners have not marked them yet).
"""

from __future__ import annotations

import pytest

from .pg_helpers import require_dsn

#: Tests marked ``long`` from here (node ids): they take a minute or more on the
#: 2-core machine. Better marked in place, with ``@pytest.mark.long``.
LONG_ELSEWHERE = frozenset({"tests/test_cli.py::test_bench_quick_runs_the_benchmarks"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every ``slow`` test, and each of :data:`LONG_ELSEWHERE`, is ``long`` too (one
    marker to select them by)."""
    for item in items:
        if item.get_closest_marker("long") is not None:
            continue
        if item.get_closest_marker("slow") is not None or item.nodeid in LONG_ELSEWHERE:
            item.add_marker(pytest.mark.long)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test PostgreSQL server's DSN; fails the test if there is none (see pg_helpers)."""
    return require_dsn()
