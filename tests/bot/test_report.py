"""The run report: that run's own final handoff, verbatim (fenced), and the rounds counted."""

from __future__ import annotations

import sys

from bot.report import build_report, fence
from tests.bot.conftest import CHAT, Served
from tests.conftest import write_chain

AGENT = ("import os, sys\nh = os.environ['LLMAUTO_HANDOFF']\n"
         "open(h, 'a').write(f'run {sys.argv[1]}:\\n```python\\nprint(1)\\n```\\n')\n")


async def test_the_report_shows_its_runs_own_handoff_fenced_and_the_rounds(served: Served) -> None:
    write_chain(served.home, "fenced", {"max_rounds": 2, "links": [
        {"name": "w", "command": [sys.executable, "-c", AGENT, "one"]}]})
    await served.engine.start_chain("fenced", origin="test")
    await served.engine.wait("fenced")
    sent = await served.api.wait_for(lambda api: next((m for m in api.messages(CHAT) if m.document), None))
    doc = sent.document[1].decode()
    assert "- rounds done: 2 / 2" in doc
    assert "\n````\n" in doc and "```python\nprint(1)\n```" in doc  # the handoff's fence kept as it is
    assert "ʼʼʼ" not in doc
    await served.engine.reset_chain("fenced")
    write_chain(served.home, "fenced", {"max_rounds": 1, "links": [
        {"name": "w", "command": [sys.executable, "-c", AGENT, "two"]}]})
    await served.engine.start_chain("fenced", origin="test")
    await served.engine.wait("fenced")
    report = await build_report(served.engine.store, 1)  # rebuilt after run 2 changed the handoff
    assert report is not None
    assert "run one:" in report[1] and "run two:" not in report[1]
    assert "- rounds done: 2 / 2" in report[1]
    assert report[2] == "fenced: run #1 COMPLETED, 2 links, $0.0000"  # a cent's fraction shows, as in every view


def test_fence_is_longer_than_any_backtick_run() -> None:
    assert fence("plain") == "```"
    assert fence("a ``` b") == "````"
    assert fence("`````x") == "``````"
