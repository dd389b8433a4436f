"""Secrets never leave for Telegram: the one place that scrubs what the bot sends.

Agents write anything into their handoffs and results, the bot token or an API key included (an
agent that prints its environment). Every text, caption, file name and document the bot sends
(the outbox sender and the command replies) passes through a `Redactor` built from
`Settings.secrets()`, which replaces each secret, raw or HTML-escaped, with `[redacted]`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

MASK = "[redacted]"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        found = {form for s in secrets if s for form in (s, html.escape(s, quote=False), html.escape(s))}
        # Longest first: a secret that contains another is masked whole.
        self.secrets = tuple(sorted(found, key=len, reverse=True))
        self._encoded = tuple(s.encode("utf-8") for s in self.secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, data: bytes) -> bytes:
        """A document's bytes (whatever their encoding, the secrets are ASCII in practice)."""
        for secret in self._encoded:
            if secret in data:
                data = data.replace(secret, MASK.encode())
        return data
