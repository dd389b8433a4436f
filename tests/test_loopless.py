"""`engine.loopless.run_loopless`: a coroutine that never waits runs to its end without an event
loop; one that waits is refused with where it waited, after its `finally` blocks ran."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from engine.loopless import NeedsEventLoop, run_loopless


async def _value(n: int) -> int:
    async def inner() -> int:
        return n * 2

    return await inner() + 1


class _Suspend:
    def __await__(self) -> Generator[str, None, None]:
        yield "a future"


async def _raises() -> None:
    raise LookupError("nope")


def test_a_coroutine_that_never_waits_gives_its_value_or_its_exception() -> None:
    assert run_loopless(_value(20)) == 41
    with pytest.raises(LookupError, match="nope"):
        run_loopless(_raises())


def test_a_coroutine_that_waits_is_refused_after_its_cleanup() -> None:
    """Broken once: `coro.close()` dropped from run_loopless: the `finally` below did not run (the
    store's connection would stay open): red."""
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await _Suspend()  # what awaiting a loop's future does: hand something to the loop
        finally:
            cleaned.append("closed")

    with pytest.raises(NeedsEventLoop, match=r"waited on 'a future' at .*test_loopless\.py:\d+ \(waits\).*needs an event loop") as caught:
        run_loopless(waits())
    # checked while `caught` keeps the exception, its frames and so the coroutine alive: garbage
    # collection would close it too, later
    assert caught.value is not None and cleaned == ["closed"]
