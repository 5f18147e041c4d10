// One weight-only element, dequantized exactly as every variant must: the reference kernel and
// the SIMD kernels' k tails share these. static: each ISA's object gets its own copy, so a copy
// compiled with -mavx2 can never be the one the reference calls.
#pragma once

#include <cstdint>

#include "../common/qd_common.h"
#include "qd_wq_gemv.h"

namespace qdev::kernels {

static inline float wq_round_to(float v, bool bf16) {
  return bf16 ? bf16_to_f32(f32_to_bf16_rne(v)) : f16_to_f32(f32_to_f16_rne(v));
}

// The stored weight value at (k = kk, column j): int8, or the signed nibble (even k low).
static inline int wq_weight_at(const WqGemvArgs& a, int64_t j, int64_t kk) {
  if (!a.int4) return a.w[j * a.ldw + kk];
  const uint8_t byte = static_cast<uint8_t>(a.w[j * a.ldw + kk / 2]);
  const int nibble = (kk & 1) ? byte >> 4 : byte & 0xF;
  return (nibble ^ 8) - 8;
}

// W'[kk, j]: (w + offset) then * scale, each rounded to the activation dtype.
static inline float wq_dequant_at(const WqGemvArgs& a, int64_t j, int64_t kk) {
  const int64_t g = a.group == a.k ? 0 : kk / a.group;
  float w = static_cast<float>(wq_weight_at(a, j, kk));
  if (a.offset) w = wq_round_to(w + a.offset[g * a.n + j], a.bf16);
  return wq_round_to(w * a.scale[g * a.n + j], a.bf16);
}

}  // namespace qdev::kernels
