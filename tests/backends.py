"""The store on both backends (issue #15): `backend` gives a way to open Stores on one database,
the home's SQLite file or a fresh PostgreSQL database of the session's server (tests/pg.py).

`recorded` keeps, per backend, the public Store methods a test called through `tracing`: the tour
in tests/test_store_backends.py checks that each of them ran on PostgreSQL.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.store import Store

recorded: dict[str, set[str]] = {"sqlite": set(), "postgres": set()}


def public_methods() -> set[str]:
    """Every public method of Store (its coroutines, context managers and `stamp`)."""
    return {name for name, member in inspect.getmembers(Store) if not name.startswith("_") and callable(member)}


@dataclass
class Backend:
    name: str  # sqlite | postgres
    path: Path
    url: str | None

    def open(self, **kw: Any) -> AbstractAsyncContextManager[Store]:
        """One more connection to the same database (a second process, as far as the database sees)."""
        return self._open(**kw)

    @asynccontextmanager
    async def _open(self, **kw: Any) -> AsyncIterator[Store]:
        recorded[self.name].add("open")
        async with Store.open(self.path, url=self.url, **kw) as store:
            yield store

    def environ(self) -> dict[str, str]:
        """What a subprocess's environment needs to use this database."""
        return {"LLMAUTO_DATABASE_URL": self.url} if self.url else {}


def tracing(store: Store, backend: str) -> Store:
    """`store`, noting in `recorded[backend]` each public method called on it."""
    names = public_methods()

    class Traced(type(store)):  # type: ignore[misc]
        def __getattribute__(self, name: str) -> Any:
            if name in names:
                recorded[backend].add(name)
            return super().__getattribute__(name)

    store.__class__ = Traced
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return Backend(request.param, tmp_path / "state" / "llmauto.db", url)


OpenStore = Callable[..., AbstractAsyncContextManager[Store]]
