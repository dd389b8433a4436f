#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the pure decision modules: policy, limits, prompts, cron. Each
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
cp -r engine bot llmauto tests pyproject.toml "$work"/
cat >> "$work/pyproject.toml" <<'TOML'

[tool.mutmut]
source_paths = ["engine/policy.py", "engine/limits.py", "engine/prompts.py", "engine/cron.py"]
pytest_add_cli_args_test_selection = ["tests/test_pure.py", "tests/test_cron.py", "tests/test_mutation_kills.py"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
TOML
cd "$work"
"$MUTMUT" run --max-children "${MUTATION_JOBS:-2}" || true
"$MUTMUT" results --all true > results.txt || true
echo "mutants by outcome:"
awk -F': ' 'NF == 2 {print $2}' results.txt | sort | uniq -c
echo "survivors:"
grep ': survived' results.txt || echo "  none"
