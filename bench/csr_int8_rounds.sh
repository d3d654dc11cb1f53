#!/usr/bin/env bash
# Pruned-int8 (weight-only and W8A8) against numaccel's fp32 CSR kernel: 4096 x 4096, 90 % unstructured, cold weights (rotated
# through more than twice the host's last-level cache), batches 1, 8, 64 and 256, all cores, in interleaved
# rounds, each implementation in its own process; bench/pair_report.py gives the ratios.
#   bench/csr_int8_rounds.sh [ROUNDS] [DIR]        (defaults: 3 rounds, /tmp/csr_int8)
#   python bench/pair_report.py /tmp/csr_int8 numaccel numaccel-int8
#   python bench/pair_report.py /tmp/csr_int8 numaccel numaccel-int8-w8a8
#   python bench/csr_int8_plot.py /tmp/csr_int8 bench/results/csr_int8.png
set -euo pipefail
rounds=${1:-3}
dir=${2:-/tmp/csr_int8}
mkdir -p "$dir"
for r in $(seq "$rounds"); do
    for impl in numaccel numaccel-int8 numaccel-int8-w8a8; do
        sel="numaccel and not int8"
        [ "$impl" = numaccel-int8 ] && sel="numaccel-int8 and not w8a8"
        [ "$impl" = numaccel-int8-w8a8 ] && sel="numaccel-int8-w8a8"
        NUMACCEL_BENCH_QUICK=1 python -m pytest bench/test_bench_csr.py -k "$sel and 4096x4096-s0.90 and cold" \
            -p no:cacheprovider -q --benchmark-json="$dir/csr_${impl}_r$r.json" > "$dir/csr_${impl}_r$r.log" 2>&1 \
            || { echo "$impl round $r failed: $dir/csr_${impl}_r$r.log" >&2; exit 1; }
    done
    echo "round $r done"
done
