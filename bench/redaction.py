"""What the Redactor costs: `python -m bench.redaction`.

The store redacts every handoff version (up to 1 MiB) after every link, and every note and event
it writes; the bot redacts every message. Measured with the secrets of a typical home (a bot
token and three API keys, so about 30 distinct anchors) on: a 1 MiB handoff of prose and code with
no secret, the same with 50 tokens in it (whole, cut and line-wrapped), a 1 MiB base64 blob (one
long word, the worst case for the anchors' first characters), and a 300-character note.
"""

from __future__ import annotations

import base64
import os
import statistics
import time
from collections.abc import Callable

from engine.redact import Redactor

TOKEN = "7012345678:AAH.bench-secret-part-of-the-bot-token_x9"
KEYS = ("sk-ant-api03-bench-key-value-0123456789abcdef", "ghp_benchGitHubTokenValue0123456789", "hunter2-long-password")
PROSE = ("## Status: PARTIAL\nThe parser now handles nested quotes; tests in tests/test_parser.py pass.\n"
         "def parse(text: str) -> list[str]:\n    return [t for t in text.split() if t]\n")


def _mib(text: str) -> str:
    return (text * (1024 * 1024 // len(text) + 1))[: 1024 * 1024]


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def measure() -> dict[str, tuple[float, float]]:
    redact = Redactor((TOKEN, *KEYS))
    clean = _mib(PROSE)
    leaky = list(clean)
    step = len(clean) // 50
    for i in range(50):
        leak = (TOKEN, TOKEN[:30], TOKEN[:20] + "\n    " + TOKEN[20:])[i % 3]
        leaky[i * step: i * step + len(leak)] = leak
    leaky_text = "".join(leaky)[: 1024 * 1024]
    blob = base64.b64encode(os.urandom(786_432)).decode()
    note = (PROSE * 3)[:300]
    out = {
        "1 MiB handoff, no secret": _ms(lambda: redact(clean), 20),
        "1 MiB handoff, 50 leaks": _ms(lambda: redact(leaky_text), 20),
        "1 MiB base64 blob": _ms(lambda: redact(blob), 20),
        "300-char note": _ms(lambda: redact(note), 2000),
    }
    assert TOKEN not in redact(leaky_text) and TOKEN[5:25] not in redact(leaky_text)
    return out


def main() -> None:
    print("| input | median | max |\n|---|---|---|")
    for name, (median, worst) in measure().items():
        print(f"| {name} | {median:.3f} ms | {worst:.3f} ms |")


if __name__ == "__main__":
    main()
