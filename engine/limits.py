"""When does a usage limit reset? Pure functions over claude's messages and the time now.

Subscription logins print e.g. "5-hour limit reached ∙ resets 3pm (Europe/Berlin)" or emit a
`rate_limit_event` with `resetsAt` (epoch seconds); API-key logins say nothing about the reset.
`next_attempt_at()` turns that into the time to try again: the reset (plus a small margin) when it is
known, otherwise exponential backoff up to a cap. A runner left alone overnight waits for the reset
and carries on instead of burning its rounds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RESET_MARGIN = timedelta(seconds=60)
BACKOFF_BASE_S = 60.0
BACKOFF_CAP_S = 3600.0

_RESETS = re.compile(
    r"resets?\s+(?:at\s+)?"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm)?"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)\))?",
    re.IGNORECASE,
)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def parse_reset_text(text: str, now: datetime, default_tz: tzinfo) -> datetime | None:
    """The reset time named in a limit message, as the next such moment after `now` (aware)."""
    match = _RESETS.search(text)
    if not match:
        return None
    hour = int(match["hour"])
    minute = int(match["minute"] or 0)
    ampm = (match["ampm"] or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    zone: tzinfo = default_tz
    if match["tz"]:
        try:
            zone = ZoneInfo(match["tz"])
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "(Europe)" names a folder
            zone = default_tz
    local_now = now.astimezone(zone)
    if match["month"]:
        month = _MONTHS.index(match["month"][:3].lower()) + 1
        year = local_now.year
        try:
            when = datetime(year, month, int(match["day"]), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if when < local_now - timedelta(days=180):
            when = when.replace(year=year + 1)
        return when
    when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when <= local_now:
        when += timedelta(days=1)
    return when


def next_attempt_at(
    *,
    now: datetime,
    attempt: int,
    message: str = "",
    resets_at_epoch: float | None = None,
    default_tz: tzinfo,
) -> tuple[datetime, bool]:
    """When to re-run a link that hit a usage limit; the flag says whether the reset was known."""
    if resets_at_epoch is not None and resets_at_epoch > 0:
        when = datetime.fromtimestamp(resets_at_epoch, tz=now.tzinfo)
        if when > now:
            return when + RESET_MARGIN, True
    parsed = parse_reset_text(message, now, default_tz)
    if parsed is not None and parsed > now:
        return parsed + RESET_MARGIN, True
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** max(0, attempt)))
    return now + timedelta(seconds=delay), False
