#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the pure decision modules: policy, limits, handoff, prompts,
# redact, cron, chains (loading and validation), approvals, permissions, routing, tasks. Each
# mutant (a flipped comparison, a changed constant, ...) must make a test fail; survivors are
# listed in tests/MUTATION.md with the test that now kills them or why they cannot be killed.
# Works in a scratch copy (.cache/mutation) so the mutmut settings and its mutants/ folder stay
# out of the repository. Needs `pip install mutmut==3.8.1`. Prints the counts and the survivors.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MUTMUT=${MUTMUT:-$(dirname "$PY")/mutmut}
work=.cache/mutation
rm -rf "$work" && mkdir -p "$work"
cp -r engine bot llmauto tests chains prompts pyproject.toml "$work"/
cat >> "$work/pyproject.toml" <<'TOML'

[tool.mutmut]
source_paths = [
    "engine/policy.py", "engine/limits.py", "engine/handoff.py", "engine/prompts.py", "engine/redact.py",
    "engine/cron.py", "engine/chains.py", "engine/approvals.py", "engine/permissions.py",
    "engine/routing.py", "engine/tasks.py",
]
# The fast table tests only (a few seconds each); the run-loop and subprocess tests are too slow
# to run once per mutant.
pytest_add_cli_args_test_selection = [
    "tests/test_pure.py", "tests/test_policy.py", "tests/test_cron.py", "tests/test_mutation_kills.py",
    "tests/test_redact.py", "tests/bot/test_pure.py", "tests/test_chains.py", "tests/test_routing.py",
    "tests/test_approvals.py", "tests/test_taskpool.py",
]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
also_copy = ["chains", "prompts"]  # the shipped chains, loaded by a test of test_routing.py
TOML
cd "$work"
"$MUTMUT" run --max-children "${MUTATION_JOBS:-2}" || true
"$MUTMUT" results --all true > results.txt || true
echo "mutants by outcome:"
awk -F': ' 'NF == 2 {print $2}' results.txt | sort | uniq -c
awk -F': ' 'NF == 2 {n++; if ($2 == "killed" || $2 == "timeout") k++} END {
    if (n) printf "killed (timeouts included): %d of %d (%.1f%%)\n", k, n, 100 * k / n }' results.txt
echo "survivors and mutants no selected test reaches:"
grep -E ': (survived|no tests)' results.txt || echo "  none"
