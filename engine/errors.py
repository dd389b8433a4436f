"""The exception tree. Control flow (stop, pause) is not an error.

LlmautoError
 +-- ConfigError          a setting is missing or malformed
 +-- ChainError           a chain cannot be used
 |    +-- UnknownChain    no such chain in chains/
 |    +-- InvalidChain    the definition has errors (carries them all)
 |    +-- BadChainName    the name is not [A-Za-z0-9_.-]+ or leaves chains/
 +-- ChainBusy            the chain already runs (in this or another process)
 +-- ScheduleError        a schedule expression or id is wrong
 +-- StoreError           the database cannot be used (locked, disk full, corrupt)

A link that fails is not an exception either: its outcome carries an error class
(`engine.stream.ErrorClass`): ok, timeout, auth, rate_limited, overloaded, api_error, stalled,
crashed, not_found, killed, budget (claude stopped at --max-budget-usd, the chain's budget left).
"""

from __future__ import annotations

from collections.abc import Sequence


class LlmautoError(Exception):
    """Base of every error llmauto raises on purpose; its text is shown to the user as is."""


class ConfigError(LlmautoError):
    """A setting is missing or malformed."""


class ChainError(LlmautoError):
    """A chain cannot be used."""


class UnknownChain(ChainError):
    """No chain of that name exists."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        names = ", ".join(self.known) if self.known else "none"
        super().__init__(f"unknown chain {name!r} (chains: {names})")


class BadChainName(ChainError):
    """A chain name that could reach outside chains/."""


class InvalidChain(ChainError):
    """The chain definition has errors; `problems` lists each as 'file: field: reason'."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid chain:\n" + "\n".join(f"  {p}" for p in self.problems))


class ChainBusy(LlmautoError):
    """The chain is already running."""


class ScheduleError(LlmautoError):
    """A schedule expression, time zone or id is wrong."""


class StoreError(LlmautoError):
    """The database cannot be used."""
