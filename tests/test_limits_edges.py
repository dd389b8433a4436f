"""Reset times from usage-limit messages (engine/limits.py) in the cases tests/test_pure.py's
table leaves out: an hour or minute out of range, a zone claude names that this machine does not
know, a date that does not exist, and a date early in the year read in December (next year's)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.limits import parse_reset_text

BERLIN = ZoneInfo("Europe/Berlin")
DECEMBER = datetime(2026, 12, 20, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


@pytest.mark.parametrize(("text", "expected"), [
    ("resets 24:00", None),
    ("resets 7:75", None),
    ("resets 23:59", datetime(2026, 12, 20, 23, 59, tzinfo=BERLIN)),
    ("limit reached · resets 3pm (Atlantis/Capital)", datetime(2026, 12, 20, 15, 0, tzinfo=BERLIN)),
    ("limit reached · resets 3pm (Europe)", datetime(2026, 12, 20, 15, 0, tzinfo=BERLIN)),
    ("weekly limit reached · resets Feb 30, 5pm", None),
    ("weekly limit reached · resets Jan 2, 5pm", datetime(2027, 1, 2, 17, 0, tzinfo=BERLIN)),
    ("weekly limit reached · resets Dec 19, 5pm", datetime(2026, 12, 19, 17, 0, tzinfo=BERLIN)),
])
def test_reset_times_at_the_edges(text: str, expected: datetime | None) -> None:
    """Red with parse_reset_text's range check removed (24:00 raises in datetime.replace), its
    unknown-zone fallback removed or narrowed (ZoneInfoNotFoundError, or for "Europe", a folder of
    the zone database, IsADirectoryError escapes: it did before this test), its bad-date
    `except ValueError` removed (Feb 30 raises), or its year roll-over removed (Jan 2 read in
    December would be eleven months ago)."""
    assert parse_reset_text(text, DECEMBER, BERLIN) == expected
