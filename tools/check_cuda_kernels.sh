#!/usr/bin/env bash
# Compile-only check of the CUDA kernels (csrc/kernels/cuda), for machines
# without a GPU: every .cu is built for sm_80 and sm_90 (the Hopper-only
# *_sm90a.cu for sm_90a) with warnings as errors, and the torch-free kernel header is compiled as plain C++ (it must
# stay usable without the CUDA toolkit). Nothing is run. Without nvcc the
# CUDA part is skipped with a message; the host-only part needs only g++/c++.
#
#   tools/check_cuda_kernels.sh            (NVCC=/path/to/nvcc, JOBS=2 to override)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build/cuda-check
mkdir -p "$OUT"
JOBS=${JOBS:-2}
start=$(date +%s)

CXX_HOST=${CXX:-$(command -v g++ || command -v c++ || true)}
if [[ -n "$CXX_HOST" ]]; then
  "$CXX_HOST" -std=c++17 -Wall -Wextra -Werror -fsyntax-only -I csrc/kernels tools/cuda_header_check.cpp
  echo "[cuda-check] host-only: csrc/kernels/cuda/qd_cuda_kernels.h compiles as plain C++17 (no CUDA toolkit)"
else
  echo "[cuda-check] host-only check skipped (no C++ compiler found)"
fi

# The CUDA op glue (csrc/aten/cuda), type-checked against the installed torch's
# headers (its c10/cuda headers ship with the CPU wheel too) and the CUDA
# runtime headers; -fsyntax-only: nothing is linked, so a CPU-only torch works.
NVCC=${NVCC:-$(command -v nvcc || true)}
if [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
CUDA_INC=""
for d in ${CUDA_HOME:+"$CUDA_HOME/include"} ${NVCC:+"$(dirname "$(readlink -f "$NVCC")")/../include"} /usr/local/cuda/include; do
  if [[ -f "$d/cuda_runtime_api.h" ]]; then CUDA_INC=$d; break; fi
done
PY=${PYTHON:-.venv/bin/python}
[[ -x "$PY" ]] || PY=$(command -v python3 || true)
TORCH_INC=$([[ -n "$PY" ]] && "$PY" -c "import torch, pathlib; print(pathlib.Path(torch.__file__).parent / 'include')" 2>/dev/null || true)
if [[ -n "$CXX_HOST" && -n "$CUDA_INC" && -n "$TORCH_INC" && -f "$TORCH_INC/c10/cuda/CUDAGuard.h" ]]; then
  glue_defs=()
  # A CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h (it only
  # sets export macros); c10 has a switch for building without it.
  [[ -f "$TORCH_INC/c10/cuda/impl/cuda_cmake_macros.h" ]] || glue_defs+=(-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE)
  for src in csrc/aten/cuda/*.cpp; do
    "$CXX_HOST" -std=c++17 -fsyntax-only -Werror -Wall -Wextra -Wno-unused-parameter -Wno-c++20-extensions \
      "${glue_defs[@]}" -I "$TORCH_INC" -I "$TORCH_INC/torch/csrc/api/include" -I "$CUDA_INC" -I csrc/include "$src"
  done
  echo "[cuda-check] glue: csrc/aten/cuda/*.cpp type-checks against $("$PY" -c 'import torch; print("torch", torch.__version__)') headers (not linked)"
else
  echo "[cuda-check] glue check skipped (needs a C++ compiler, CUDA runtime headers and torch's c10/cuda headers)"
fi

if [[ -z "$NVCC" ]]; then
  echo "[cuda-check] skipped: nvcc not found (set NVCC=... to point at one); CUDA kernels were NOT compiled"
  exit 0
fi
echo "[cuda-check] $("$NVCC" --version | tail -1)"
export NVCC OUT
compile_one() {
  local src=$1 obj targets label
  obj="$OUT/$(basename "${src%.cu}").o"
  if [[ "$src" == *_sm90a.cu ]]; then  # Hopper-only (wgmma): the arch-specific target, as CMake builds it
    targets=(-gencode arch=compute_90a,code=sm_90a); label="sm_90a"
  else  # QD_HAVE_WGMMA: also compile the dispatch to the sm_90a kernel
    targets=(-DQD_HAVE_WGMMA=1 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90); label="sm_80, sm_90"
  fi
  if ! "$NVCC" -std=c++17 -O3 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
      "${targets[@]}" -c "$src" -o "$obj"; then
    echo "[cuda-check] FAILED: $src" >&2
    return 1
  fi
  echo "[cuda-check] ok: $src ($label)"
}
export -f compile_one
ls csrc/kernels/cuda/*.cu | xargs -P "$JOBS" -I{} bash -c 'compile_one "$@"' _ {}
echo "[cuda-check] all CUDA kernels compile for sm_80 and sm_90 (+ sm_90a for *_sm90a.cu) ($(( $(date +%s) - start )) s)"
