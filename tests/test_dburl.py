"""engine/dburl.py: LLMAUTO_DATABASE_URL checked and named without its password, also when the URL
cannot be read at all (an unclosed IPv6 bracket, a port that is not a number)."""

from __future__ import annotations

import pytest

from engine import dburl


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql://u:pw@h:port/db", "not a URL"),  # broken once: check() without the .port probe: None
    ("postgresql://u:pw@[::1/db", "not a URL"),  # broken once: the except ValueError removed: raises
    ("mysql://u:pw@h/db", "expected postgresql://"),
])
def test_a_bad_url_is_named_without_its_password(url: str, problem: str) -> None:
    """Broken once each (see the rows): the check passed or raised instead of saying what is wrong."""
    told = dburl.check(url)
    assert told is not None and problem in told and dburl.VARIABLE in told
    assert "pw" not in told


def test_an_unreadable_url_has_no_password_and_masks_whole() -> None:
    """Broken once: mask() without its except branch raised ValueError for the unclosed bracket."""
    assert dburl.password("postgresql://u:pw@[::1/db") is None
    assert dburl.mask("postgresql://u:pw@[::1/db") == "(unreadable URL)"


@pytest.mark.parametrize(("url", "password"), [
    ("postgresql://u@h/db?sslmode=require&password=s%40cret", "s@cret"),
    ("postgresql://u@h/db?password=", None),
    ("postgres://u:p%2Fw@h/db", "p/w"),
])
def test_the_password_is_found_where_libpq_takes_it(url: str, password: str | None) -> None:
    """Broken once: the query loop removed: the ?password= form was not a secret."""
    assert dburl.password(url) == password
    if password:
        assert password not in dburl.mask(url).replace("%40", "@").replace("%2F", "/")
