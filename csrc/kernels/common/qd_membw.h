// A streaming-read probe: the reference "memory bandwidth" the benchmarks
// compare decode kernels with (torch reductions under-report it).
#pragma once

#include <cstddef>
#include <cstdint>

namespace qdev::kernels {

// Reads n bytes (a multiple of 64) as fast as the CPU allows; returns a checksum
// so the loads cannot be optimised away.
uint64_t read_stream(const void* data, size_t n);

}  // namespace qdev::kernels
