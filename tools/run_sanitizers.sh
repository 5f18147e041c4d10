#!/usr/bin/env bash
# Sanitizer runs of the torch-free layers (CI runs this; a finding is a failure):
#   1. AddressSanitizer + UndefinedBehaviorSanitizer: the kernel library (csrc/kernels) and its C++
#      tests, every ISA variant the CPU has plus the QDEV_CPU_ISA=ref cap;
#   2. the same for the device runtime (third_party/qdrt) and its whole ctest suite;
#   3. ThreadSanitizer: qdrt's stream, event and concurrency tests (worker threads, events, host
#      tasks, many host threads at once).
#   4. the Python extension under ASan: a slice of pytest with libasan preloaded (see "python" below).
# Each is its own small CMake build (-O1 -g, only what the tests need) under build/sanitizers/,
# reused between runs. Findings abort at once (-fno-sanitize-recover=all, halt_on_error=1).
# Usage: tools/run_sanitizers.sh [asan|tsan|python|python-instrumented]...   (default: asan tsan python)
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
# The pytest slice for the python steps (QDEV_SAN_PYTEST overrides): copies, memory, streams,
# formats, DLPack and the quantized ops with their error paths.
# Three tests assert the caching allocator's block reuse, which the slice turns off.
python_slice="tests/test_copy_views.py tests/test_memory.py tests/test_streams_events.py tests/test_dlpack.py
  tests/test_errors.py tests/test_format_cast.py tests/test_quant_ops.py tests/test_w4a8.py tests/test_weight_quant.py
  tests/test_a8w4.py --deselect tests/test_memory.py::test_freed_blocks_are_cached_and_reused
  --deselect tests/test_memory.py::test_oom_frees_cache_and_retries
  --deselect tests/test_streams_events.py::test_record_stream_delays_reuse_until_the_stream_is_done"
steps=("$@")
((${#steps[@]})) || steps=(asan tsan python)

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
  python | python-instrumented)
    # The Python extension under ASan, in the uninstrumented interpreter: libasan is preloaded, with
    # libstdc++ (else its __cxa_throw interceptor finds nothing to wrap and aborts at the first C++
    # exception). PYTORCH_NO_QDEV_MEMORY_CACHING=1 makes every qdev tensor its own allocation with
    # redzones, and freed blocks go to ASan's quarantine instead of the cache. "python" uses the
    # normal build (run.py test's), so only what ASan intercepts is checked (memcpy/memset/free:
    # copies, the allocator, the runtime); "python-instrumented" first builds the whole extension
    # with ASan+UBSan (slow: ~5 min of CPU to compile, 31 min on the shared machine) and checks every access.
    t0=$SECONDS
    py=$PWD/.venv/bin/python
    [ -x "$py" ] || { echo "[san] $py missing: run python3 run.py test first" >&2; exit 1; }
    pythonpath=${PYTHONPATH:-}
    if [ "$step" = python-instrumented ]; then
      echo "[san] building the extension with ASan+UBSan"
      pkg=$PWD/$root/pkg
      mkdir -p "$pkg"
      rm -rf "$pkg/torch_qdev"
      cp -r torch_qdev "$pkg/torch_qdev"
      rm -rf "$pkg/torch_qdev/lib" "$pkg"/torch_qdev/_C*.so
      configure . "$root/ext-asan" "$asan_flags -fno-sanitize=vptr" -DQDEV_BUILD_TESTS=OFF -DQDEV_TORCH_CUDA= \
        "-DCMAKE_PREFIX_PATH=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
        "-DPython_EXECUTABLE=$py" "-DCMAKE_INSTALL_PREFIX=$pkg/torch_qdev"
      "$cmake" --build "$root/ext-asan" -j"$jobs" >/dev/null
      "$cmake" --install "$root/ext-asan" >/dev/null
      pythonpath=$pkg${pythonpath:+:$pythonpath}
    fi
    preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
    # -P: the source tree (cwd) must not shadow PYTHONPATH's instrumented copy. --capture=sys: a
    # report written to fd 2 reaches the log (pytest's fd capture would swallow it with the process).
    # Leaks are not checked: the interpreter and torch keep their globals at exit.
    echo "[san] pytest slice under ASan: ${QDEV_SAN_PYTEST:-$python_slice}"
    # shellcheck disable=SC2086
    env LD_PRELOAD="$preload" PYTHONPATH="$pythonpath" PYTORCH_NO_QDEV_MEMORY_CACHING=1 \
      ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
      "$py" -P -m pytest -q -p no:cacheprovider --capture=sys ${QDEV_SAN_PYTEST:-$python_slice}
    echo "[san] Python extension under ASan clean ($((SECONDS - t0)) s)"
    ;;
  *)
    echo "usage: $0 [asan|tsan|python|python-instrumented]..." >&2
    exit 2
    ;;
  esac
done
