"""Secrets out of everything llmauto keeps or sends: one `Redactor` for the store, the bot's
messages and the logs.

Agents write anything into their handoffs and results, the bot token or an API key included (an
agent that prints its environment). A `Redactor` built from `Settings.secrets()` masks, in text,
bytes and JSON-like values:

- every *form* of each secret, whole: raw, HTML-escaped, URL-encoded (`%3A` for a token's colon)
  and, for a bot token `<digits>:<secret>`, the part after the colon alone (the bot id is public,
  so that part is the whole secret);
- a form broken by line breaks (a newline plus indentation inserted anywhere, as a wrapped log
  line or a Markdown paragraph does it);
- any run of `MIN_RUN` (12) or more consecutive characters of a secret, wherever it is: what is
  left of a secret that a cut (`text[:300]`) split at the edge of a text, or any other partial
  leak. The part of a bot token before the colon is at most 10 digits, so the public bot id alone
  is never masked.

How it stays fast (the store redacts handoffs of up to 1 MiB after every link): whole forms go
first with `str.replace` (C speed, and it shrinks what follows); then each secret is cut into
aligned 6-character *anchors* (at positions 0, 7, 14, ... and the last 6). Any run of 12 characters
of a secret holds a whole aligned anchor, and a secret broken once by whitespace keeps one on one
side of the break, so one `str.find` per distinct anchor finds every candidate; only a hit is
grown, character by character, left and right (skipping whitespace that holds a line break), and
masked when it covers at least `MIN_RUN` characters of the secret, or all of a shorter one. The
limit: a secret broken into pieces all shorter than 6 characters is not recognised.

`cut()` is the one way to shorten a text for display: it never ends inside a long word (a
secret is one), so even a text cut before redaction cannot end in most of a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "[redacted]"
MIN_RUN = 12  # this many consecutive characters of a secret are masked wherever they appear
ANCHOR = 6  # anchors start every STEP characters: a run of STEP + ANCHOR - 1 <= MIN_RUN holds one
STEP = 7
_BOT_TOKEN = re.compile(r"(\d{3,}):([A-Za-z0-9_-]{8,})")
_WORD_TAIL = re.compile(r"\S+$")
_WORD_HEAD = re.compile(r"\S+")


def forms(secret: str) -> set[str]:
    """Every way a secret may appear in a text llmauto handles."""
    import html  # only with secrets to scrub; html.entities is a large table to import (#14)

    out = {secret, html.escape(secret, quote=False), html.escape(secret), quote(secret, safe="")}
    token = _BOT_TOKEN.fullmatch(secret)
    if token is not None:
        out.add(token.group(2))
    return {f for f in out if f}


class Redactor:
    def __init__(self, secrets: Iterable[str], *, mask: str = MASK) -> None:
        found = {form for s in secrets if s for form in forms(s)}
        # Longest first: a secret that contains another is masked whole.
        self.secrets: tuple[str, ...] = tuple(sorted(found, key=lambda s: (-len(s), s)))
        self.mask = mask
        # anchor text -> [(form, offset of the anchor in it)]
        self._anchors: dict[str, list[tuple[str, int]]] = {}
        for form in self.secrets:
            if len(form) < ANCHOR:
                continue
            starts = set(range(0, len(form) - ANCHOR + 1, STEP)) | {len(form) - ANCHOR}
            for start in sorted(starts):
                self._anchors.setdefault(form[start:start + ANCHOR], []).append((form, start))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __call__(self, text: str) -> str:
        if not self.secrets or not text:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, self.mask)
        spans = self._partial_spans(text)
        if not spans:
            return text
        out: list[str] = []
        last = 0
        for start, end in _merged(spans):
            out.append(text[last:start])
            out.append(self.mask)
            last = end
        out.append(text[last:])
        return "".join(out)

    def _partial_spans(self, text: str) -> list[tuple[int, int]]:
        """Text spans that hold a run of a secret (broken by line breaks or cut at an edge)."""
        spans: list[tuple[int, int]] = []
        for anchor, places in self._anchors.items():
            at = text.find(anchor)
            while at != -1:
                for form, offset in places:
                    span = _grow(text, at, form, offset)
                    if span is not None:
                        spans.append(span)
                at = text.find(anchor, at + 1)
        return spans

    def data(self, data: bytes) -> bytes:
        """A document's bytes, whatever their encoding: bytes that are not UTF-8 pass through
        unchanged (surrogateescape), the secrets (ASCII in practice) are masked."""
        if not self.secrets:
            return data
        text = data.decode("utf-8", "surrogateescape")
        clean = self(text)
        return data if clean == text else clean.encode("utf-8", "surrogateescape")

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


def _grow(text: str, at: int, form: str, offset: int) -> tuple[int, int] | None:
    """The span of `text` around `text[at:at + ANCHOR] == form[offset:offset + ANCHOR]` that
    matches `form` further on both sides (whitespace holding a line break may come between any two
    characters), or None when it covers too little of the secret to be one."""
    end, j = at + ANCHOR, offset + ANCHOR
    while j < len(form):
        if end < len(text) and text[end] == form[j]:
            end, j = end + 1, j + 1
            continue
        skip = _break_after(text, end)
        if skip and skip < len(text) and text[skip] == form[j]:
            end = skip
            continue
        break
    start, i = at, offset
    while i > 0:
        if start > 0 and text[start - 1] == form[i - 1]:
            start, i = start - 1, i - 1
            continue
        skip = _break_before(text, start)
        if skip and text[skip - 1] == form[i - 1]:
            start = skip
            continue
        break
    covered = j - i
    return (start, end) if covered >= min(MIN_RUN, len(form)) else None


def _break_after(text: str, pos: int) -> int:
    """Past the whitespace at `pos` if it holds a line break, else 0."""
    end = pos
    while end < len(text) and text[end] in " \t\r\n":
        end += 1
    return end if "\n" in text[pos:end] else 0


def _break_before(text: str, pos: int) -> int:
    """Before the whitespace that ends at `pos` if it holds a line break, else 0."""
    start = pos
    while start > 0 and text[start - 1] in " \t\r\n":
        start -= 1
    return start if start > 0 and "\n" in text[start:pos] else 0


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def cut(text: str, max_chars: int, *, ellipsis: str = "…") -> str:
    """`text` shortened to at most `max_chars` characters (the ellipsis included), never ending
    inside a word of `MIN_RUN` characters or more: such a word (a secret, perhaps) is dropped
    whole rather than cut. Redact first and cut afterwards where a redactor is
    at hand; this keeps a cut made before redaction from handing on most of a token."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(ellipsis))
    head = text[:keep]
    if keep < len(text) and not text[keep].isspace():
        tail = _WORD_TAIL.search(head)
        rest = _WORD_HEAD.match(text, keep)
        whole = (len(tail.group()) if tail else 0) + (len(rest.group()) if rest else 0)
        if tail is not None and whole >= MIN_RUN:
            head = head[: tail.start()]
    return head.rstrip() + ellipsis
