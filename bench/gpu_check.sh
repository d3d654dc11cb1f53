#!/usr/bin/env bash
# GPU check for an H100/H200 machine: versions and device, the CUDA tests on the real GPU, then the GPU
# benchmarks against cuBLAS, cuSPARSE and torch._int_mm. Runs from the source tree (no install, no
# network) and stays under 6 minutes. Everything it prints also goes to $OUT/gpu_check.log; the
# benchmark results are $OUT/gpu.json (pytest-benchmark schema), $OUT/gpu.md and $OUT/targets.md, and
# $OUT/compare.md / compare.png put them beside any CPU results found in bench/results/.
#
#   OUT=/some/folder bash bench/gpu_check.sh      # OUT defaults to bench/results/gpu
set -u
cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT" || exit 1
PY="${PYTHON:-python3}"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export NUMACCEL_REAL_GPU=1          # tests/conftest.py then leaves the simulator off
unset NUMBA_ENABLE_CUDASIM
export PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"
START=$(date +%s)
status=0

step() { echo; echo "== $* ($(( $(date +%s) - START )) s)"; }

{
  step "versions"
  "$PY" - <<'PYEOF'
import importlib.metadata as md, platform, sys
print("python", sys.version.split()[0], platform.platform())
for name in ("numpy", "numba", "numba-cuda", "cuda-python", "cuda-bindings", "nvidia-cuda-nvrtc",
             "cupy-cuda13x", "cupy-cuda12x", "cupy", "torch", "scipy", "pytest", "hypothesis"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
PYEOF
  command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi \
    --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  timeout 60 "$PY" -c "from numba import cuda; cuda.detect()" || { echo "numba sees no GPU"; status=1; }

  step "CUDA tests on the device (kernels compiled for this GPU)"
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml" \
    tests/test_csr_cuda.py tests/test_int8_cuda.py tests/test_csr_int8_cuda.py tests/test_cuda_ptx.py tests/test_cuda_absent.py
  rc=$?; echo "tests exit code: $rc"; [ "$rc" -eq 0 ] || status=1

  step "GPU benchmarks"
  # whatever the steps before took, the whole check ends within 6 minutes (320 s here + 30 s below)
  left=$(( 320 - ($(date +%s) - START) ))
  [ "$left" -gt 60 ] || left=60
  timeout "$left" "$PY" bench/bench_gpu.py --out "$OUT" --budget $(( left - 40 ))
  rc=$?; echo "benchmark exit code: $rc (124: stopped by the time limit; results so far are kept)"
  [ "$rc" -eq 0 ] || status=1

  step "comparison with the CPU results"
  timeout 30 "$PY" bench/compare.py --gpu "$OUT/gpu.json" --out "$OUT/compare" || echo "compare.py failed"
  [ -f "$OUT/targets.md" ] && cat "$OUT/targets.md"
  step "done, exit status $status; results in $OUT"
  exit "$status"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
