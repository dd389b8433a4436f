"""`LLMAUTO_DATABASE_URL`: which PostgreSQL server holds the store, checked and told without its
password. Pure (no psycopg): the settings read it on every start, SQLite or not.

The URL may carry a password (`postgresql://user:pw@host/db`, or `?password=pw`); it never reaches
a log, a message or an agent: `mask` is how every text names the URL, and `password` joins the
settings' secrets so the redactor takes it out of anything else.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

VARIABLE = "LLMAUTO_DATABASE_URL"
SCHEMES = ("postgresql", "postgres")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")


def check(url: str) -> str | None:
    """None when `url` looks like a PostgreSQL URL, else what is wrong (without the password)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"{VARIABLE}: not a URL ({exc}): {mask(url)}"
    if parts.scheme not in SCHEMES:
        return f"{VARIABLE}: expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE, got {mask(url)}"
    return None


def password(url: str) -> str | None:
    """The password the URL carries, in its netloc or its query, decoded; None when none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return unquote(parts.password)
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password" and value:
            return value
    return None


def mask(url: str) -> str:
    """The URL as messages show it: its password replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    masked = url
    if parts.password is not None:
        userinfo, _, host = parts.netloc.rpartition("@")
        masked = masked.replace(f"//{parts.netloc}", f"//{userinfo.split(':', 1)[0]}:***@{host}", 1)
    if parts.query:
        masked = masked.replace(parts.query, _QUERY_PASSWORD.sub(r"\1***", parts.query), 1)
    return masked
