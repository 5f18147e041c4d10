#!/usr/bin/env bash
# Sanitizer runs of the torch-free layers (CI runs this; a finding is a failure):
#   1. AddressSanitizer + UndefinedBehaviorSanitizer: the kernel library (csrc/kernels) and its C++
#      tests, every ISA variant the CPU has plus the QDEV_CPU_ISA=ref cap;
#   2. the same for the device runtime (third_party/qdrt) and its whole ctest suite;
#   3. ThreadSanitizer: qdrt's stream, event and concurrency tests (worker threads, events, host
#      tasks, many host threads at once).
# Each is its own small CMake build (-O1 -g, only what the tests need) under build/sanitizers/,
# reused between runs. Findings abort at once (-fno-sanitize-recover=all, halt_on_error=1).
# The Python extension under ASan is not run here: see README ("Sanitizers") for why.
# Usage: tools/run_sanitizers.sh [asan|tsan]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/sanitizers
cmake=$(command -v cmake || echo "$PWD/.venv/bin/cmake")  # run.py installs one into .venv
ctest=$(command -v ctest || echo "$PWD/.venv/bin/ctest")
generator=()
if command -v ninja >/dev/null || [ -x .venv/bin/ninja ]; then
  generator=(-G Ninja)
  command -v ninja >/dev/null || generator+=("-DCMAKE_MAKE_PROGRAM=$PWD/.venv/bin/ninja")
fi
jobs=${MAX_JOBS:-2}
steps=("$@")
((${#steps[@]})) || steps=(asan tsan)

# float-cast-overflow is not part of GCC's -fsanitize=undefined; a NaN or huge float converted to an
# integer in the scalar reference would be exactly the silent wrong result the issue is about.
asan_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all"
tsan_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:detect_invalid_pointer_pairs=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

configure() {  # configure SOURCE BUILD FLAGS [extra cmake args...]
  local src=$1 dir=$2 flags=$3
  shift 3
  # A build type of its own: only the flags given here (no -O3 -DNDEBUG on top; asserts stay on).
  "$cmake" -S "$src" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Sanitize \
    "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=${flags#-O1 -g }" \
    "-DCMAKE_SHARED_LINKER_FLAGS=${flags#-O1 -g }" "$@" >/dev/null
}

# TSan needs the low-entropy address layout older kernels gave by default; with a newer kernel's
# mmap_rnd_bits it aborts at start ("unexpected memory mapping"). setarch -R turns ASLR off for it.
tsan_run() {
  if setarch "$(uname -m)" -R true 2>/dev/null; then setarch "$(uname -m)" -R "$@"; else "$@"; fi
}

for step in "${steps[@]}"; do
  case $step in
  asan)
    t0=$SECONDS
    echo "[san] ASan+UBSan: kernels"
    configure csrc/kernels "$root/kernels-asan" "$asan_flags" -DQDEV_BUILD_TESTS=ON
    "$cmake" --build "$root/kernels-asan" -j"$jobs" --target qdev_kernel_tests >/dev/null
    "$ctest" --test-dir "$root/kernels-asan" --output-on-failure
    echo "[san] ASan+UBSan: qdrt"
    configure third_party/qdrt "$root/qdrt-asan" "$asan_flags" -DQDRT_BUILD_TESTS=ON
    "$cmake" --build "$root/qdrt-asan" -j"$jobs" >/dev/null
    "$ctest" --test-dir "$root/qdrt-asan" --output-on-failure
    echo "[san] ASan+UBSan clean ($((SECONDS - t0)) s)"
    ;;
  tsan)
    t0=$SECONDS
    echo "[san] TSan: qdrt streams and events"
    configure third_party/qdrt "$root/qdrt-tsan" "$tsan_flags" -DQDRT_BUILD_TESTS=ON
    "$cmake" --build "$root/qdrt-tsan" -j"$jobs" --target qdrt_test_stream qdrt_test_event qdrt_test_concurrency >/dev/null
    for t in stream event concurrency; do
      echo "[san] qdrt_test_$t"
      tsan_run "$root/qdrt-tsan/qdrt_test_$t"
    done
    echo "[san] TSan clean ($((SECONDS - t0)) s)"
    ;;
  *)
    echo "usage: $0 [asan|tsan]..." >&2
    exit 2
    ;;
  esac
done
