"""The Redactor's and `cut`'s exact output, by table: which characters a mask covers, not only
that no 12-character run of a secret is left (tests/test_redact.py checks that). Written against
the survivors of `scripts/mutation.sh` in engine/redact.py (tests/MUTATION.md): mutants that
masked one character too many or too few, joined pieces across whitespace without a line
break, missed a piece at the edge of the text or in the middle of a secret. Each mutant named in
a docstring below is killed by this table in the mutation run (mutmut reports it killed)."""

from __future__ import annotations

import pytest

from engine.redact import MASK, Redactor, cut, forms

S = "abcdefghijklmnopqrstuvwxyz0123"  # 30 characters, none repeated: every piece has one place
L = "ABCDEFGHIJKLMNOPQRSTUVWXYZ!?"  # 28: its last aligned anchor (21) is not its last one (22)
M = "mnbvcxzlkjhg"  # 12: exactly MIN_RUN, so only the whole of it counts
T = "98765432:XYZwvu_tsr-qpo"  # shaped like a bot token (and it has a dot-free fake id)
X = MASK


def redactor() -> Redactor:
    """Built inside each test, never at import: mutmut forks each mutant's run from a process that
    imported this module, so a module-level Redactor would hold anchors made by unmutated code."""
    return Redactor([S, L, M, "tiny5", T])


def test_forms_and_their_order() -> None:
    """Kills forms' `quote=False` -> None/dropped/True, `safe=""` dropped or changed, the token's
    part never added, and the order of `Redactor.secrets` (longest first, then by text) -> plain
    `sorted`."""
    assert forms('a<b>&"c\'d:e/f g') == {
        'a<b>&"c\'d:e/f g', 'a&lt;b&gt;&amp;"c\'d:e/f g', "a&lt;b&gt;&amp;&quot;c&#x27;d:e/f g",
        "a%3Cb%3E%26%22c%27d%3Ae%2Ff%20g",
    }
    assert forms(T) == {T, "98765432%3AXYZwvu_tsr-qpo", "XYZwvu_tsr-qpo"}
    assert forms("") == set()
    assert redactor().secrets == (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ%21%3F", S, L, "98765432%3AXYZwvu_tsr-qpo", T, "XYZwvu_tsr-qpo", M, "tiny5",
    )


@pytest.mark.parametrize(("text", "masked"), [
    # A secret broken by a line break (and indentation) is masked whole, wherever the break is.
    (f"x {S[:15]}\n    {S[15:]} y", f"x {X} y"),
    (f"{S[:3]}\n{S[3:]} y", f"{X} y"),  # the break near the start of the text
    (f"x {S[:27]}\n  {S[27:]}", f"x {X}"),  # near its end
    (f"x {S[:8]}\r\n\t{S[8:20]}\n {S[20:]} y", f"x {X} y"),  # twice, \r\n and a tab
    (f"{S[2:15]}\n \n{S[15:29]}", X),
    (f"q\n{S[:6]}\n  {S[6:12]}", f"q\n{X}"),
    (f"{M[:6]}\n{M[6:]}Z", f"{X}Z"),  # the 12-character secret broken in the middle
    # Whitespace without a line break does not join pieces: each is masked (or not) alone.
    (f"{S[:15]}  {S[15:]}", f"{X}  {X}"),
    (f"{S[:10]} \t{S[10:]}", f"{S[:10]} \t{X}"),
    (f"{S[:15]} \nx{S[16:]}", f"{X} \nx{X}"),  # a break, then a character that does not continue it
    # The line break itself stays when nothing of the secret follows it.
    (f"{S[:15]}\nzzz", f"{X}\nzzz"),
    (f"{S[:15]}\n", f"{X}\n"),
    (f"x{S[:12]}\n  \n", f"x{X}\n  \n"),
    (f"\n{S[5:20]}", f"\n{X}"),
    (f"  \n{S[3:18]} y", f"  \n{X} y"),
    (f"zz \n{S[14:]}", f"zz \n{X}"),
    # A run of exactly 12 characters is masked; 11 are not; the character after a run stays.
    (f"{S[18:]} tail", f"{X} tail"),
    (f"{S[19:]} tail", f"{S[19:]} tail"),
    (f"{S[:12]}q", f"{X}q"),
    (S[10:22], X),  # the middle of a secret
    (f"({L[15:27]})", f"({X})"),  # found by the anchor at 21 only
    # Two runs of different secrets that touch are one mask; repeated runs are each masked.
    (f"{S[:13]}{L[:13]}", X),
    (f"{S[:14]} and {S[:14]} and {S[:14]}", f"{X} and {X} and {X}"),
    ("a tiny5 b", f"a {X} b"),  # shorter than an anchor: masked only whole
    (T, X), (f"{T[9:]}!", f"{X}!"),
    (T[:8], T[:8]),  # the public bot id alone
    # Characters next to a piece that equal the secret's neighbouring characters do not join it.
    (f"3{S[:15]}", f"3{X}"),  # the secret's last character just before its start
    (f"{S[3:20]}c", f"{X}c"),  # the character before the piece, at the text's other end
    (f"zp {S[:15]}!", f"zp {X}!"),  # the character the piece needs next, at position 1
    (f"b {S[2:16]}", f"b {X}"),  # the one it needs before, at position 0, after a space
    (f"c\n{S[3:18]}", X),  # ... after a line break: joined
    (f"{S[:15]}X\n{S[15:]}", f"{X}X\n{X}"),  # an X is not whitespace
    (f"{S[:15]}\nX{S[15:]}", f"{X}\nX{X}"),
    ("", ""),
])
def test_exact_masks(text: str, masked: str) -> None:
    """Kills the survivors of _grow (a comparison flipped, `continue` -> `break`, the break
    skipped as None, an index moved by one, `covered >=` -> `>`), _break_after/_break_before
    (whitespace without a line break taken for one, a step of 2, `start > 0` -> `>= 0`/`> 1`, 0 ->
    1 returned), the anchors of `Redactor.__init__` (`|` -> `&`, the range's start, end and step
    changed, `(form, start)` -> None, `start + ANCHOR` -> `-`), `_partial_spans` (`find` ->
    `rfind`), `__call__`'s `secret in text` -> `not in`, and _merged's `<=` -> `<`."""
    r = redactor()
    assert r(text) == masked
    assert r.data(text.encode()) == masked.encode()


def test_data_keeps_bytes_that_are_not_utf8() -> None:
    assert redactor().data(b"\xff " + S.encode() + b" \xfe") == b"\xff " + X.encode() + b" \xfe"
    assert Redactor([]).data(b"\xff") == b"\xff"


@pytest.mark.parametrize(("text", "limit", "shown"), [
    ("abc", 3, "abc"),  # exactly the limit: not cut
    ("ab cd", 1, "…"),  # room for the ellipsis only
    ("a" * 12 + " bbb", 13, "a" * 12 + "…"),  # the cut falls on a space: the long word stays
    ("x " + "a" * 5 + "b" * 8 + " z", 9, "x…"),  # a 13-character word across the cut goes whole
    ("x " + "a" * 12, 7, "x…"),  # exactly 12: goes whole
    ("x " + "a" * 11, 7, "x aaaa…"),  # 11: cut
    ("  ab cd ef gh", 8, "  ab cd…"),  # leading spaces stay
    ("ab  cdef", 4, "ab…"),  # trailing spaces before the ellipsis go
])
def test_cut_exact(text: str, limit: int, shown: str) -> None:
    """Kills cut's `len(text) <= max_chars` -> `<`, `max(0, ...)` -> `max(1, ...)`, `keep <
    len(text) and ...` -> `or`, the word after the cut ignored (`rest = None`, matched from 0,
    `if rest` -> `and False`), `whole >= MIN_RUN` -> `>`, and `rstrip` -> `lstrip`."""
    assert cut(text, limit) == shown
