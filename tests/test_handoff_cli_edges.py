"""`chain handoff` and `chain reset` through the real CLI on the paths no test took (issue #16):
a chain with no handoff yet, a round with none recorded, a diff with one version only, a handoff
file an agent deleted (the last good version is shown, and says why), and a reset refused while
the chain runs in another process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.conftest import write_chain
from tests.helpers import wait_for_lease

WRITE = "import os; open(os.environ['LLMAUTO_HANDOFF'], 'w').write('## Headline\\nround done\\n')"
ONE_LINK = {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", WRITE]}]}


def test_handoff_before_any_and_after_an_agent_deleted_it(home: Path, cli: Any) -> None:
    """Red with handoff_text's fallback to the last stored version removed (the deleted file is an
    error), its no-handoff error removed (a None text is printed), handoff_after_round's missing
    round unchecked, or handoff_diff's two-version check removed (an unpacking error: exit 1 with
    a traceback instead of the reason)."""
    write_chain(home, "alpha", ONE_LINK)
    none = cli.run("chain", "handoff", "alpha")
    assert none.returncode == 1 and "alpha: no handoff yet" in none.stderr, none.stderr
    one = cli.run("chain", "handoff", "alpha", "diff")
    assert one.returncode == 1 and "fewer than two handoff versions recorded" in one.stderr, one.stderr
    assert cli.run("chain", "start", "alpha").returncode == 0
    (home / "state" / "alpha" / "handoff.md").unlink()
    shown = cli.run("chain", "handoff", "alpha")
    assert shown.returncode == 0, shown.stderr
    assert "alpha: last good handoff (" in shown.stderr and "round done" in shown.stdout
    missing = cli.run("chain", "handoff", "alpha", "9")
    assert missing.returncode == 1 and "alpha: no handoff recorded for round 9" in missing.stderr
    assert "+round done" in cli.run("chain", "handoff", "alpha", "diff").stdout
    assert "Traceback" not in one.stderr + missing.stderr + none.stderr


async def test_a_reset_is_refused_while_another_process_runs_the_chain(home: Path, cli: Any, tmp_path: Path) -> None:
    """Red with reset_chain's busy check dropped (the running chain's state would be wiped under
    it: exit 0)."""
    gate = tmp_path / "go"
    hold = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    write_chain(home, "alpha", {"max_rounds": 1, "links": [{"name": "w", "command": [sys.executable, "-c", hold]}]})
    proc = cli.spawn("chain", "start", "alpha")
    try:
        await wait_for_lease(home, "alpha", proc.pid)
        refused = cli.run("chain", "reset", "alpha")
        assert refused.returncode != 0 and "alpha is running: stop it before a reset" in refused.stderr, refused.stderr
    finally:
        gate.write_text("go")
        assert proc.wait(timeout=60) == 0
