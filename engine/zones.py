"""Time zone names: found in any case, and the machine's own (no scheduler imports: settings use it)."""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

_NOT_ZONES = frozenset({"localtime", "posixrules"})  # ZoneInfo loads them, but they are no IANA names


def find_zone(name: str) -> str | None:
    """The zone's proper name ('europe/berlin' -> 'Europe/Berlin'), or None when there is none."""
    if name not in _NOT_ZONES:
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    return _zones_by_lower_name().get(name.lower())


@cache
def _zones_by_lower_name() -> dict[str, str]:
    return {z.lower(): z for z in available_timezones() if z not in _NOT_ZONES}


def local_timezone_name() -> str:
    """The machine's IANA zone: $TZ, else the /etc/localtime link, else /etc/timezone, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":"), os.path.realpath("/etc/localtime")]
    with contextlib.suppress(OSError, UnicodeError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        if "zoneinfo/" in name:  # /usr/share/zoneinfo/[posix/]Europe/Berlin
            name = name.rsplit("zoneinfo/", 1)[1].removeprefix("posix/")
        if name and find_zone(name) == name:
            return name
    return "UTC"
