"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from .pg_helpers import require_dsn


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test PostgreSQL server's DSN; fails the test if there is none (see pg_helpers)."""
    return require_dsn()
