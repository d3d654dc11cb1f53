#!/usr/bin/env bash
# Before/after check of a change: numaccel's quick CSR and int8 suites (NUMACCEL_BENCH_QUICK=1) on two
# source trees, in interleaved rounds (before, after, before, after, ...), each suite in its own process;
# bench/pair_report.py then gives each case's median per tree and the after/before ratio.
#   git worktree add /tmp/before <commit>
#   bench/trees_rounds.sh /tmp/before . 3 /tmp/trees     # BEFORE_TREE AFTER_TREE [ROUNDS] [DIR]
#   python bench/pair_report.py /tmp/trees
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds=${3:-3}
dir=${4:-/tmp/trees}
mkdir -p "$dir"
for r in $(seq "$rounds"); do
    for tag in before after; do
        tree=$before
        [ "$tag" = after ] && tree=$after
        for suite in csr int8; do
            (cd "$tree" && NUMACCEL_BENCH_QUICK=1 PYTHONPATH="$tree" python -m pytest "bench/test_bench_$suite.py" \
                -k "numaccel and not numaccel-int8" -p no:cacheprovider -q --benchmark-json="$dir/${suite}_${tag}_r$r.json") \
                > "$dir/${suite}_${tag}_r$r.log" 2>&1 || { echo "$suite $tag round $r failed: $dir/${suite}_${tag}_r$r.log" >&2; exit 1; }
        done
    done
    echo "round $r done"
done
