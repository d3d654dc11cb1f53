#!/usr/bin/env bash
# Interleaved rounds of the CSR suite: every round times every implementation, each in its own process,
# so that a drift of this shared machine's speed during the run hits all of them alike; the report takes
# each implementation's median over the rounds.
#   bench/csr_rounds.sh [ROUNDS] [RESULTS_DIR]    (defaults: 3 rounds, bench/results; about 6 minutes a round)
#   EXTRA_K="4096x4096 and s0.90" bench/csr_rounds.sh 3 /tmp/quick    # a subset (pytest -k expression)
set -euo pipefail
rounds=${1:-3}
dir=${2:-bench/results}
raw="$dir/csr-rounds"
mkdir -p "$raw"
run() {  # run IMPL TAG [env ...]: one implementation's suite in a fresh process
    local impl=$1 tag=$2
    shift 2
    "$@" python -m pytest bench/test_bench_csr.py -k "$impl ${EXTRA_K:+and $EXTRA_K}" -p no:cacheprovider -q \
        --benchmark-json="$raw/csr_${tag}_r$r.json" > "$raw/csr_${tag}_r$r.log" 2>&1 || {
        echo "$impl (round $r) failed: see $raw/csr_${tag}_r$r.log" >&2
        exit 1
    }
}
for r in $(seq "$rounds"); do
    for impl in numaccel numpy scipy torch mkl; do
        run "$impl" "$impl" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
    done
    run numpy numpy_blasenv env  # the dense anchor under the other BLAS configuration
    echo "round $r done"
done
# Keep each benchmark's statistics and drop its per-call times (the files shrink about sixfold).
python bench/strip_stats.py "$raw"/csr_*_r*.json
note="Interleaved rounds ($rounds), $(date -u +%Y-%m-%d) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; \
2 threads (Numba $(python -c 'from numaccel import _config; print(_config.threading_layer())'), \
OpenBLAS 2 threads); one process per implementation and round; each implementation's median over the rounds."
python bench/report.py "$raw"/csr_*_r*.json --combine median --out "$dir/csr" \
    --title "numaccel CSR linear (median of rounds)" --note "$note"
python bench/report.py "$raw"/csr_*_r*.json --combine median --stat min --out "$dir/csr_min" \
    --title "numaccel CSR linear (min)" --note "$note"
