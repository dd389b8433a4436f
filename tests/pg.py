"""A real PostgreSQL on loopback for the distributed mode's tests (issue #15), without root and
without internet: the `pgserver` wheel (PostgreSQL 16 binaries inside a Python package; run as root,
it starts the server as an unprivileged user it creates). One server per test session, listening on
a Unix socket in a temporary folder; each test gets a database of its own (`pg_url`), dropped after.

Without `pgserver` the tests that need PostgreSQL are skipped with the reason; `.ci/run` installs it
(the `test` extra), so CI always runs them.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (any CI machine).
        warnings.simplefilter("ignore")
        import pgserver  # type: ignore[import-untyped]
    return pgserver


def with_database(url: str, name: str) -> str:
    """`url` with its database part replaced by `name` (the query, e.g. `?host=/socket/dir`, kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    try:
        pgserver = _pgserver()
    except ImportError:
        pytest.skip("PostgreSQL tests need the pgserver wheel: pip install -e '.[test]'")
    folder = tempfile.mkdtemp(prefix="llmauto-pg-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's server."""
    name = "t_" + uuid.uuid4().hex[:12]
    pg_server.psql(f"CREATE DATABASE {name};")
    try:
        yield with_database(pg_server.get_uri(), name)
    finally:
        pg_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
