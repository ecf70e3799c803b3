"""Fixtures shared by several test modules, and the ``long`` marker's rules.

``long`` marks the tests that take long (load, soak, crash tests): ``pytest -m "not
long"`` is the quick suite. They run at a bounded size by default (what ``.ci/run``
runs); ``VOXTRIO_LONG=1`` runs them at full size. ``slow`` is the marker's old name:
a test marked ``slow`` is marked ``long`` too. Long tests are marked in place, with
``@pytest.mark.long``.
"""

from __future__ import annotations

import pytest

from .pg_helpers import require_dsn


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every ``slow`` test is ``long`` too (one marker to select them by)."""
    for item in items:
        if item.get_closest_marker("long") is not None:
            continue
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.long)


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test PostgreSQL server's DSN; fails the test if there is none (see pg_helpers)."""
    return require_dsn()
