// Weight-only quantized GEMV (npu_weight_quant_batchmatmul for decode-sized M):
//   y[m, n] = sum_k x[m, k] * W'[k, n],  W'[k, n] = rnd(rnd(w[k, n] + off[g, n]) * scale[g, n])
// with rnd = rounding to the activation dtype (fp16 or bf16, round to nearest even)
// and g = k / group (group = k: per channel). Accumulation in fp32.
// Weights are int8 stored row per output column (n, k) — the layout of an
// nn.Linear weight, i.e. x2 = weight.t() — so each column is one contiguous stream.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

struct WqGemvArgs {
  int64_t m = 0, n = 0, k = 0, group = 0;  // group == k: one scale per column
  const uint16_t* x = nullptr;  // fp16 or bf16 bits, rows of ldx
  int64_t ldx = 0;
  bool bf16 = false;
  const int8_t* w = nullptr;    // (n, k), row stride ldw
  int64_t ldw = 0;
  const float* scale = nullptr;   // [groups][n] (values of the x dtype, widened)
  const float* offset = nullptr;  // [groups][n] or null
  float* y = nullptr;             // fp32 (m, n), row stride ldy
  int64_t ldy = 0;
};

void wq_gemv(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
void wq_gemv_ref(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
void wq_gemv_avx512(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);

}  // namespace qdev::kernels
