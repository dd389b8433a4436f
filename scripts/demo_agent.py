#!/usr/bin/env python3
"""A stand-in agent for the demo chain: no account, no network, just the handoff protocol.

Run by `chains/demo.json` as a command link. It reads the handoff ($LLMAUTO_HANDOFF), does a tiny
piece of "work" (counting words of a sentence, one word per round), and writes the handoff back the
way a real agent would. The controller declares ALL_DONE when the sentence is complete.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

SENTENCE = ["every", "marble", "rolls", "from", "link", "to", "link", "until", "the", "run", "is", "done"]


def main() -> int:
    role = sys.argv[1] if len(sys.argv) > 1 else "worker"
    pause = float(os.environ.get("DEMO_PAUSE_S", "0.3"))
    handoff = Path(os.environ["LLMAUTO_HANDOFF"])
    state = Path(os.environ["LLMAUTO_STATE_DIR"])
    rnd = int(os.environ.get("LLMAUTO_ROUND", "1"))
    text = handoff.read_text(encoding="utf-8") if handoff.exists() else ""
    done = re.findall(r"^- word \d+: (\S+)$", text, re.M)
    time.sleep(pause)
    if role == "controller":
        if len(done) >= len(SENTENCE) or rnd > 4:
            handoff.write_text(text.rstrip() + "\n\n## Status: DONE\nThe sentence is complete: " + " ".join(done) + "\n")
            (state / "status.txt").write_text("ALL_DONE\n")
            print("controller: all done")
            return 0
        next_words = SENTENCE[len(done) : len(done) + 3]
        body = re.sub(r"\n(ASSIGNED|NEXT): .*", "", text).rstrip()
        handoff.write_text(f"{body}\n\nASSIGNED: demo-worker\nNEXT: {' '.join(next_words)}\n")
        print(f"controller: round {rnd}, assigned {len(next_words)} words")
    elif role == "worker":
        match = re.search(r"^NEXT: (.*)$", text, re.M)
        words = match.group(1).split() if match else []
        lines = [f"- word {len(done) + i + 1}: {w}" for i, w in enumerate(words)]
        handoff.write_text(text.rstrip() + "\n" + "\n".join(lines) + "\n")
        print(f"worker: wrote {len(words)} words")
    else:
        ok = all(done[i] == SENTENCE[i] for i in range(len(done)))
        handoff.write_text(text.rstrip() + f"\n<!-- review round {rnd}: {'ok' if ok else 'mismatch'} -->\n")
        print(f"reviewer: {len(done)} words, {'ok' if ok else 'mismatch'}")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
