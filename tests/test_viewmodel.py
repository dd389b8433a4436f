"""The facts both views show (engine/viewmodel.py), decided once: the chat's note and the
terminal's line agree on a link's outcome, its refusals and its hop, and on the rounds done."""

from __future__ import annotations

import pytest

from bot import render
from engine import event_types as et
from engine import viewmodel as vm
from engine.events import Event
from llmauto import textview


def _line(finished: et.LinkFinished) -> str:
    event = Event(id=1, kind=finished.KIND, chain="c", run_id=1, ts="2026-01-01T00:00:00+00:00", data=finished.to_data())
    return textview.event_line(event) or ""


@pytest.mark.parametrize(("finished", "refused_shown", "error_shown"), [
    (et.LinkFinished(link="w", error_class="ok", refusals="Bash ×2", refused=2, error="x"), True, False),
    (et.LinkFinished(link="w", error_class="denied", refusals="Bash ×2", refused=2, error="could not act"), False, True),
    (et.LinkFinished(link="w", error_class="timeout", error="took too long"), False, True),
])
def test_both_views_tell_the_same_outcome(finished: et.LinkFinished, refused_shown: bool, error_shown: bool) -> None:
    """A `denied` link's refusals are its outcome, not an extra line; an ok link's error is not
    shown. Checked: with `if e.error_class != "denied"` in viewmodel.link_end dropped, the denied
    row fails in both views at once."""
    end = vm.link_end(finished)
    note, line = render.link_note("c", finished), _line(finished)
    assert ("claude was refused" in note) is refused_shown is ("claude was refused" in line) is bool(end.refused)
    assert (finished.error in note) is error_shown is (finished.error in line)


def test_rounds_done_and_counted() -> None:
    """Checked: with `counted=... if rounds_counted != done else None` made unconditional, the
    first assert fails (a note saying 2 of 2 rounds counted)."""
    assert vm.rounds(3, 10, 2, running=True).counted_note == ""
    assert vm.rounds(3, None, 1, running=False).counted_note == "1 counted toward max_rounds"
    assert [vm.rounds_done(n) for n in (None, 0, 1, 4)] == [0, 0, 0, 3]


def test_every_view_says_money_alike() -> None:
    """One formatter for the chat, the terminal, the run report and the overnight summary: a run of
    $0.0038 was "$0.00" in the report's caption while its stop message said "$0.0038"."""
    assert [vm.money(v) for v in (None, 0.0038, 0.99994, 1.0, 12.345)] == ["$0.0000", "$0.0038", "$0.9999", "$1.00", "$12.35"]
    assert render.money is vm.money and textview.money is vm.money


@pytest.mark.parametrize(("error", "said"), [
    ("invalid chain:\n  chains/night.json: prompts.a.path: no prompt file 'prompts/_private/a.txt' in prompts/ or the home folder\n"
     "  chains/night.json: prompts.b.path: no prompt file 'prompts/_private/b.txt' in prompts/ or the home folder\n"
     "  chains/night.json: links[0].model: must be a string",
     "prompts.a.path: no prompt file 'prompts/_private/a.txt' in prompts/ or the home folder (+2 more)"),
    ("invalid chain:\n  chains/night.json: links: must not be empty", "links: must not be empty"),
    ("invalid chain:\n  links: must not be empty", "links: must not be empty"),
    ("chains/night.json: not valid JSON: Expecting ',' delimiter (line 3, column 5)",
     "chains/night.json: not valid JSON: Expecting ',' delimiter (line 3, column 5)"),
])
def test_an_invalid_chain_in_a_list_says_its_first_problem_and_how_many_more(error: str, said: str) -> None:
    """The terminal's `chain list` said only "invalid chain:" (the message's first line) and the
    chat's /chains its last problem, without the count. Red with either rule dropped."""
    assert vm.definition_problem(error) == said
