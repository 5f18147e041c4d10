// A8W4 (npu_quant_matmul with int8 x1 and int4 x2) as the NPU computes it: per k-group j
// the int32 sums of the int4 split of x against W_j are scaled and accumulated over the
// groups in float16 (torch_npu's a8w4_quant_golden). This is that accumulation step:
//   acc[r][c] = f16(f32(acc[r][c]) + f32(f16(float(sums[r][c]) * scale[c])))
// with round-to-nearest-even conversions, acc held as float16 bits.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

void a8w4_accumulate_group(Isa isa, const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc);
void a8w4_accumulate_group_ref(const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc);
void a8w4_accumulate_group_avx512(const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc);

}  // namespace qdev::kernels
