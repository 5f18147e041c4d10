// Per-row dynamic quantization of activations (npu_dynamic_quant's pertoken
// mode): for each row, xs = x * smooth, then
//   symmetric:  scale = max|xs| * (1 / dst_max),            q = rint(xs / scale)
//   asymmetric: scale = (max - min) / (dst_max - dst_min),  offset = dst_max - max / scale,
//               q = rint(xs / scale + offset)
// q saturates to [dst_min, dst_max]; a constant-zero row gets scale 0 and q = 0.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

enum class FloatType : int { kF32, kF16, kBF16 };

struct QuantRowsArgs {
  const void* x = nullptr;  // rows x h, row stride ldx elements
  FloatType type = FloatType::kF32;
  int64_t h = 0, ldx = 0;
  const float* smooth = nullptr;  // h values, or null
  float dst_max = 127.0f, dst_min = -128.0f;
  bool asymmetric = false;
  int8_t* q = nullptr;  // rows x h, row stride ldq
  int64_t ldq = 0;
  float* scale = nullptr;   // per row
  float* offset = nullptr;  // per row (asymmetric)
};

// scale (and offset) of one row from its max, min and max |x|; shared by every variant.
void row_params(const QuantRowsArgs& args, float mx, float mn, float amax, float* scale, float* offset);

void quant_rows(Isa isa, const QuantRowsArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_ref(const QuantRowsArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_avx512(const QuantRowsArgs& args, int64_t row_begin, int64_t row_end);

}  // namespace qdev::kernels
