"""Logging that never shows a secret. httpx logs every request URL at INFO, and the URL carries the
bot token: its loggers are kept at WARNING, and every secret is replaced by [REDACTED] in every
record, twice over: `protect()` installs a record factory (covers each record at birth, whichever
handler sees it later, pytest's caplog included) and `install()` puts a filter on the handlers
`serve` configures."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from engine.redact import Redactor

QUIET = ("httpx", "httpcore", "apscheduler.executors.default", "apscheduler.scheduler")
MASK = "[REDACTED]"


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets, mask=MASK)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redact:
            return True
        try:
            message = record.getMessage()
        except Exception:  # bad format args: keep what can be shown, masked
            message = f"{record.msg} {record.args!r}"
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_active: list[RedactingFilter] = []  # one per running `serve` (tests run several in one process)
_saved: dict[str, Any] = {}


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _saved["factory"](*args, **kwargs)
    for redactor in tuple(_active):
        redactor.filter(record)
    return record


@contextmanager
def protect(secrets: Iterable[str]) -> Iterator[RedactingFilter]:
    """While inside: every log record is born redacted, and httpx/httpcore stay at WARNING."""
    redactor = RedactingFilter(secrets)
    if not _active:
        _saved["factory"] = logging.getLogRecordFactory()
        _saved["levels"] = {name: logging.getLogger(name).level for name in QUIET}
        logging.setLogRecordFactory(_factory)
        for name in QUIET:
            if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)
    _active.append(redactor)
    try:
        yield redactor
    finally:
        _active.remove(redactor)
        if not _active:
            if logging.getLogRecordFactory() is _factory:
                logging.setLogRecordFactory(_saved["factory"])
            for name, level in _saved["levels"].items():
                logging.getLogger(name).setLevel(level)


def install(secrets: Iterable[str], level: int = logging.INFO) -> RedactingFilter:
    """Configure logging for `serve`: one stderr handler, redacting, httpx quiet."""
    root = logging.getLogger()
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stream)
    root.setLevel(level)
    redactor = RedactingFilter(secrets)
    for handler in root.handlers:
        handler.addFilter(redactor)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
