"""How validation messages name a value a person wrote ("a number (5)", "a string ('x')", "a list"),
shared by every loader that reports 'file: field.path: reason'."""

from __future__ import annotations

import math
from typing import Any


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})" if not isinstance(value, float) or math.isfinite(value) else f"{value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
