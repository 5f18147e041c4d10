#!/usr/bin/env bash
# One call on a GPU machine (H100/H200, 16 cores; offline is fine): builds torch_qdev against that
# machine's own CUDA torch, runs the CUDA tests (the qdev:: ops on CUDA tensors = the Triton kernels,
# against the CPU ops), runs the interpreter tests in their own process, and prints the benchmark
# summary. Under 8 minutes on an H200: the steps' time limits add up to 480 s, and every step runs
# even when an earlier one failed (the summary says which failed).
#
#   tools/gpu_check.sh            (PYTHON=... picks the interpreter; OUT=dir keeps logs + bench CSV)
#
# For a device session: run(command="tools/gpu_check.sh", timeout_s=540); logs come back from $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOGS=${OUT:-build/gpu_check}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
start=$(date +%s)
declare -A rc

step() {  # step NAME LIMIT_S CMD...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "=== [gpu-check] $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  rc[$name]=${PIPESTATUS[0]}
  echo "=== [gpu-check] $name: rc=${rc[$name]} in $(( $(date +%s) - t0 ))s"
}

"$PY" - <<'PY'
import torch, sys
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton MISSING: the CUDA kernels cannot be registered")
PY

# 1. build the extension against this machine's torch (no downloads: --no-deps, no isolation)
step build 150 "$PY" -m pip install --no-build-isolation --no-deps --no-index -q -e .
# 2. the Triton kernels without the extension (works even if step 1 failed): bit-exact A8W8 and
#    dynamic quant against on-GPU goldens, and the issue's two targets timed
step standalone 90 "$PY" tools/triton_gpu_selfcheck.py
# 3. the qdev:: ops on CUDA tensors (= the Triton kernels) against the CPU ops
step cuda_tests 110 "$PY" -m pytest tests/test_cuda_ops.py -q -x -p no:cacheprovider
# 4. the benchmark beside cuBLASLt / tinygemm / cuBLAS (autotunes on first use of each shape)
step bench 100 "$PY" benchmarks/bench_cuda.py --quick --csv "$LOGS/bench_cuda.csv"
# 5. CI's interpreter tests, in their own process (TRITON_INTERPRET is read at import)
step interpreter_tests 30 env TRITON_INTERPRET=1 "$PY" -m pytest tests/test_triton_ops.py -q -x -p no:cacheprovider

echo "=== [gpu-check] done in $(( $(date +%s) - start ))s"
fail=0
for s in build standalone cuda_tests bench interpreter_tests; do
  echo "  $s: rc=${rc[$s]}"
  [[ ${rc[$s]} -ne 0 ]] && fail=1
done
grep "selfcheck\] A8W8 4096\|selfcheck\] W4A8" "$LOGS/standalone.log" || true
grep -A4 "^summary" "$LOGS/bench.log" || true
exit $fail
