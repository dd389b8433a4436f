"""Secrets out of everything llmauto keeps or sends: one `Redactor` for the store, the bot's
messages and the logs.

Agents write anything into their handoffs and results, the bot token or an API key included (an
agent that prints its environment). A `Redactor` built from `Settings.secrets()` replaces each
secret, raw or HTML-escaped, by a mask, in text, bytes and JSON-like values.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "[redacted]"


class Redactor:
    def __init__(self, secrets: Iterable[str], *, mask: str = MASK) -> None:
        forms = {form for s in secrets if s for form in (s, html.escape(s, quote=False), html.escape(s))}
        # Longest first: a secret that contains another is masked whole.
        self.secrets: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self.mask = mask
        self._encoded = tuple(s.encode("utf-8") for s in self.secrets)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, self.mask)
        return text

    def data(self, data: bytes) -> bytes:
        """A document's bytes (whatever their encoding, the secrets are ASCII in practice)."""
        for secret in self._encoded:
            if secret in data:
                data = data.replace(secret, self.mask.encode())
        return data

    def value(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value (dict keys included), masked."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value
