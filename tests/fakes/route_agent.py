"""A stand-in agent for routing chains, run as a `command` link: `route_agent.py ROLE BOX [VERDICTS]`.

Each call counts itself in BOX/ROLE.count and appends `- ROLE N` to the handoff; a reviewer also
appends `VERDICT: V`, V being the N-th of the comma-separated VERDICTS (the last one repeats). The
worker's second call (N == 1) first writes its pid to BOX/worker-waits and then waits until BOX/go
exists (at most a minute): a test sees the bounced round's worker running, looks at the card or
kills the runner, and lets it go on when it wants to."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

WAIT_LIMIT_S = 60.0


def main() -> None:
    role, box = sys.argv[1], Path(sys.argv[2])
    counter = box / f"{role}.count"
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    if role == "worker" and n == 1:
        (box / "worker-waits").write_text(str(os.getpid()))
        deadline = time.monotonic() + WAIT_LIMIT_S
        while not (box / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    line = f"- {role} {n}\n"
    if role == "reviewer":
        verdicts = sys.argv[3].split(",")
        line += f"VERDICT: {verdicts[min(n, len(verdicts) - 1)]}\n"
    with open(os.environ["LLMAUTO_HANDOFF"], "a", encoding="utf-8") as handoff:
        handoff.write(line)


if __name__ == "__main__":
    main()
