#!/usr/bin/env bash
# Run the test suite under coverage, subprocesses included (every `llmauto` process a test starts,
# `serve` and `chain start` alike: [tool.coverage.run] patch = ["subprocess"]), then print the
# per-module table of engine/, bot/ and llmauto/, lowest first. Extra arguments go to pytest
# (`bash scripts/coverage.sh tests/bot -x`). It reports; it does not fail on a floor (yet).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=.cache/coverage
rm -rf "$out" && mkdir -p "$out"
export COVERAGE_FILE="$PWD/$out/data"
status=0
# Coverage slows every process a test starts: a longer per-test timeout than the suite's 60 s.
"$PY" -m coverage run -m pytest -p no:cacheprovider -q --timeout "${COVERAGE_TEST_TIMEOUT_S:-240}" "$@" || status=$?
"$PY" -m coverage combine --quiet
"$PY" -m coverage report --sort=cover
for package in engine bot llmauto; do
    "$PY" -m coverage report --include="$package/*" | grep '^TOTAL' | sed "s|^TOTAL |$package/ overall|"
done
"$PY" -m coverage html --quiet -d "$out/html" && echo "coverage: line by line in $out/html/index.html"
exit "$status"
