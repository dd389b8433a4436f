"""A pytest plugin for `scripts/mutation.sh` only (loaded with `-p tests.mutation_plugin`).

mutmut 3 forks each mutant's test run from a process that already ran the tests once (to learn
which tests reach which function). `cron._parse_fields` is cached (`functools.cache`), so in that
fork a schedule parsed before came from the cache, computed by the unmutated code: a mutant of
`_parse_field`, `_value` or `_day_list` was never run and "survived". Emptying the cache before
every test makes each test parse with the code under test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import cron


@pytest.fixture(autouse=True)
def _fresh_parse_cache() -> Iterator[None]:
    cron._parse_fields.cache_clear()
    yield
