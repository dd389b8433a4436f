"""Who may do what. Pure: the allow-lists come from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# What viewers may do: read, and press Cancel.
READ_ONLY = frozenset({"status", "handoff", "log", "chains", "help", "schedules", "tasks", "start", "noop", "workers"})


class Role(Enum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2


@dataclass(frozen=True)
class Access:
    operators: frozenset[int]
    viewers: frozenset[int]

    def role(self, user_id: int | None) -> Role:
        if user_id is None:
            return Role.NONE
        if user_id in self.operators:
            return Role.OPERATOR
        if user_id in self.viewers:
            return Role.VIEWER
        return Role.NONE

    def may(self, user_id: int | None, action: str) -> bool:
        """`action` is a command name (buttons map to one, see bot.callbacks); viewers may only
        read; anyone else, nothing."""
        role = self.role(user_id)
        if role is Role.OPERATOR:
            return True
        return role is Role.VIEWER and action in READ_ONLY
