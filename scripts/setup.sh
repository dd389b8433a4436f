#!/usr/bin/env bash
# Set up llmauto in ./.venv (idempotent). `--test` adds the test tools and the real Claude Code CLI
# (npm, into .cache/claude-cli) that the offline end-to-end tests drive against a loopback mock.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
if [ "$want_test" = 1 ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    if [ ! -x .cache/claude-cli/node_modules/.bin/claude ]; then
        if command -v npm >/dev/null 2>&1; then
            npm install --silent --no-audit --no-fund --prefix .cache/claude-cli @anthropic-ai/claude-code >/dev/null 2>&1 \
                || echo "setup: could not install @anthropic-ai/claude-code; the real-CLI tests will be skipped" >&2
        else
            echo "setup: npm not found; the real-CLI tests will be skipped" >&2
        fi
    fi
else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
