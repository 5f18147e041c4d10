#!/usr/bin/env bash
# Cross-compiles the torch-free kernels and their C++ tests for aarch64 and runs
# them under qemu-aarch64 on three CPU models, so that every Arm variant meets
# the scalar reference:
#   max         dotprod + i8mm: neon_dotprod and neon_i8mm against ref
#   cortex-a76  dotprod, no i8mm: neon_dotprod against ref (and i8mm must not be picked)
#   cortex-a72  neither: the reference alone (against a naive loop)
# plus the QDEV_CPU_ISA cap, and the device runtime's (qdrt) torch-free ctest
# suite. Installs the cross compiler and qemu-user with apt when they are
# missing. Usage: tools/test_kernels_aarch64.sh [build dir of the kernels]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build/kernels-aarch64}
qdrt_build_dir=build/qdrt-aarch64
toolchain="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake"

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user)
if ((${#missing[@]})); then
  echo "[arm] installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
cmake=$(command -v cmake || echo .venv/bin/cmake)  # run.py installs one into .venv

# Static: the test binary then needs no aarch64 loader or libraries under qemu.
"$cmake" -S csrc/kernels -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DCMAKE_EXE_LINKER_FLAGS=-static >/dev/null
"$cmake" --build "$build_dir" -j2 >/dev/null
tests="$build_dir/qdev_kernel_tests"

step() {  # step CPU EXPECTED_ISA [ENV=VALUE...]: the probe picks EXPECTED_ISA, then every check passes
  local cpu=$1 expect=$2
  shift 2
  echo "[arm] qemu-aarch64 -cpu $cpu $*"
  env "$@" "$qemu" -cpu "$cpu" "$tests" --expect-isa "$expect"
  env "$@" "$qemu" -cpu "$cpu" "$tests"
}
step max neon_i8mm
step cortex-a76 neon_dotprod
step cortex-a72 ref
# The cap: a lower variant, ref, and the other architecture's name (ignored).
env QDEV_CPU_ISA=neon_dotprod "$qemu" -cpu max "$tests" --expect-isa neon_dotprod
env QDEV_CPU_ISA=ref "$qemu" -cpu max "$tests" --expect-isa ref
env QDEV_CPU_ISA=avx512vnni "$qemu" -cpu cortex-a76 "$tests" --expect-isa neon_dotprod

echo "[arm] qdrt ctest under qemu-aarch64"
"$cmake" -S third_party/qdrt -B "$qdrt_build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DQDRT_BUILD_TESTS=ON "-DCMAKE_CROSSCOMPILING_EMULATOR=$qemu;-cpu;max;-L;/usr/aarch64-linux-gnu" >/dev/null
"$cmake" --build "$qdrt_build_dir" -j2 >/dev/null
ctest=$(dirname "$cmake")/ctest
"$ctest" --test-dir "$qdrt_build_dir" --output-on-failure
echo "[arm] all aarch64 tests passed"
