#!/usr/bin/env bash
# Interleaved rounds of the W8A8/AMX suite (bench/test_bench_amx.py): every round times every
# implementation, each in its own process, so that a drift of this shared machine's speed hits all of them
# alike; the report takes each implementation's median over the rounds.
#   bench/amx_rounds.sh [ROUNDS] [RESULTS_DIR]     (defaults: 3 rounds, bench/results)
set -euo pipefail
rounds=${1:-3}
dir=${2:-bench/results}
raw="$dir/amx-rounds"
mkdir -p "$raw"
python bench/roofline.py > "$raw/roofline.txt"
for r in $(seq "$rounds"); do
    for impl in numaccel-w8a8-amx numaccel-w8a8-vnni torch-onednn torch-fbgemm; do
        NUMACCEL_BENCH_IMPLS=$impl python -m pytest bench/test_bench_amx.py -p no:cacheprovider -q \
            --benchmark-json="$raw/amx_${impl}_r$r.json" > "$raw/amx_${impl}_r$r.log" 2>&1 || {
            echo "$impl (round $r) failed: see $raw/amx_${impl}_r$r.log" >&2
            exit 1
        }
    done
    echo "round $r done"
done
python bench/strip_stats.py "$raw"/amx_*_r*.json
python bench/amx_report.py "$raw" --out "$dir/amx.md"
