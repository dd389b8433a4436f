#!/usr/bin/env bash
# Mutation testing (mutmut 3.8.1) of the pure decision modules issue #16 names: policy, limits,
# handoff, prompts, redact, cron, and chains' loading and validation (the display and listing
# helpers of chains.py carry `# pragma: no mutate block`). Each mutant (a flipped comparison, a
# changed constant, ...) must make a test fail; survivors are listed in tests/MUTATION.md with the
# test that now kills them or why no input can tell them apart.
#
#   bash scripts/mutation.sh                 the issue's modules, one at a time (the headline figure)
#   bash scripts/mutation.sh redact cron     only these modules (figures per module)
#   bash scripts/mutation.sh --all           also approvals, permissions, routing, tasks (not in the figure)
#   bash scripts/mutation.sh --keep limits   reuse the scratch copy: only the modules named are rerun
#                                            (after adding a test: its statistics are collected anew)
#   bash scripts/mutation.sh --keep 'engine.redact.x__grow*'   rerun only the mutants named (fnmatch)
#
# Works in a scratch copy (MUTATION_DIR, default .cache/mutation) so the mutmut settings and its
# mutants/ folder stay out of the repository. MUTATION_JOBS (default 2) workers. Prints per module
# the counts, the killed share (killed + timeouts over every mutant; "no tests" counts as
# survived) and every survivor. `mutmut show NAME` in the scratch copy prints a mutant's diff.
set -euo pipefail
# The whole script in one block: bash reads it before running, so editing the file mid-run is safe.
{
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MUTMUT=${MUTMUT:-$(dirname "$PY")/mutmut}
jobs=${MUTATION_JOBS:-2}
work=${MUTATION_DIR:-.cache/mutation}
in_scope=(policy limits handoff prompts redact cron chains)
extra=(approvals permissions routing tasks)

all=0 keep=0 picked=() named=()
for arg in "$@"; do
    case $arg in
        --all) all=1 ;;
        --keep) keep=1 ;;
        -*) echo "unknown option $arg (expected --all, --keep, module names or mutant names)" >&2; exit 2 ;;
        engine.*) named+=("$arg") ;;
        *) picked+=("$arg") ;;
    esac
done
modules=("${in_scope[@]}")
[ "$all" = 1 ] && modules+=("${extra[@]}")
for m in "${picked[@]}"; do
    case " ${modules[*]} " in *" $m "*) ;; *) echo "unknown module $m (known: ${modules[*]}; --all adds ${extra[*]})" >&2; exit 2 ;; esac
done
[ ${#picked[@]} -gt 0 ] || [ ${#named[@]} -gt 0 ] || picked=("${modules[@]}")

sources=$(printf '"engine/%s.py", ' "${modules[@]}")
if [ "$keep" = 1 ] && [ -f "$work/pyproject.toml" ]; then
    # Fresh sources and tests; mutmut keeps the verdicts of the modules not named.
    rm -rf "$work"/{engine,bot,llmauto,tests,chains,prompts}
    cp -r engine bot llmauto tests chains prompts "$work"/
else
    rm -rf "$work" && mkdir -p "$work"
    cp -r engine bot llmauto tests chains prompts pyproject.toml "$work"/
    cat >> "$work/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = [${sources%, }]
# The fast table tests only (a few seconds each); the run-loop and subprocess tests are too slow
# to run once per mutant.
pytest_add_cli_args_test_selection = [
    "tests/test_pure.py", "tests/test_policy.py", "tests/test_cron.py", "tests/test_mutation_kills.py",
    "tests/test_redact.py", "tests/bot/test_pure.py", "tests/test_chains.py", "tests/test_routing.py",
    "tests/test_approvals.py", "tests/test_taskpool.py", "tests/test_redact_exact.py",
]
# The two property tests of cron (a reference reading of cron against thousands of fire times:
# 10 to 20 s each) and its timing test are left out: they would make cron's 880 mutants take
# hours; the tables of tests/test_cron.py and tests/test_mutation_kills.py stand in for them.
pytest_add_cli_args = [
    "-p", "no:cacheprovider", "-q", "-p", "tests.mutation_plugin",  # cron's parse cache emptied per test
    "--deselect", "tests/test_cron.py::test_fire_times_match_the_fields_and_none_is_missed",
    "--deselect", "tests/test_cron.py::test_fire_times_in_a_dst_zone",
    "--deselect", "tests/test_cron.py::test_catching_up_a_week_of_minutely_slots_across_a_transition_is_quick",
]
also_copy = ["chains", "prompts"]  # the shipped chains, loaded by a test of test_routing.py
TOML
fi
cd "$work"
if [ ${#named[@]} -gt 0 ]; then
    "$MUTMUT" run --max-children "$jobs" "${named[@]}" > run-named.log 2>&1 || echo "mutmut run failed: see $work/run-named.log"
fi
for m in "${picked[@]}"; do
    start=$(date +%s)
    "$MUTMUT" run --max-children "$jobs" "engine.$m.*" > "run-$m.log" 2>&1 || echo "mutmut run $m failed: see $work/run-$m.log"
    echo "$m: $(( $(date +%s) - start )) s" | tee -a times.txt
done
"$MUTMUT" results --all true > results.txt || true
# One line per mutant: "    engine.MODULE.function__mutmut_N: status".
awk -F': ' -v scope="${in_scope[*]}" '
    BEGIN { n = split(scope, s, " "); for (i = 1; i <= n; i++) headline[s[i]] = 1 }
    NF == 2 {
        split($1, part, "."); m = part[2]; st = $2; mods[m] = 1; all[m]++; count[m, st]++
        if (st == "killed" || st == "timeout") k[m]++
    }
    END {
        printf "%-12s %7s %7s %7s %8s %8s %11s %7s\n", "module", "mutants", "killed", "timeout", "survived", "no tests", "unchecked", "killed%"
        for (m in mods) {
            printf "%-12s %7d %7d %7d %8d %8d %11d %6.1f%%%s\n", m, all[m], count[m, "killed"], count[m, "timeout"],
                count[m, "survived"], count[m, "no tests"], count[m, "not checked"], 100 * k[m] / all[m],
                (m in headline) ? "" : "  (--all, not in the headline)"
            if (m in headline) { N += all[m]; K += k[m]; U += count[m, "not checked"] }
        }
        if (N) printf "headline (%s): %d of %d killed (timeouts included): %.1f%%%s\n", scope, K, N, 100 * K / N,
            U ? sprintf(", %d not checked yet", U) : ""
    }' results.txt
echo "survivors and mutants no selected test reaches:"
grep -E ': (survived|no tests|suspicious|skipped|segfault|not checked)$' results.txt || echo "  none"
exit
}
