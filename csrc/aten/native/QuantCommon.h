// Numerics shared by the quantized ops: torch_npu's packed int64 scale
// (npu_trans_quant_param) and its decoding, and small tensor helpers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../../kernels/common/qd_common.h"

namespace at::native::qdev {

constexpr uint32_t kScaleMask = 0xFFFFE000u;  // keep sign, exponent and 10 mantissa bits
constexpr int64_t kQuantFlag = int64_t{1} << 46;

using ::qdev::kernels::f32_bits;
inline uint32_t float_bits(float f) { return f32_bits(f); }
inline float bits_float(uint32_t u) { return ::qdev::kernels::f32_from_bits(u); }

// float32 -> FP19 (1/8/10) bits in a float32 frame: truncation (round_mode 0) or
// round-to-nearest-even on the 13 dropped bits (round_mode 1).
inline uint32_t fp19_bits(float scale, int64_t round_mode) {
  uint32_t u = float_bits(scale);
  if (round_mode == 1) {
    const uint32_t exp = (u >> 23) & 0xFFu;
    if (exp == 0) return u & 0x80000000u;  // zero and subnormals: signed zero
    if (exp != 0xFFu) {
      const bool round = u & 0x1000u, sticky = u & 0x0FFFu, lsb = u & 0x2000u;
      if (round && (sticky || lsb)) u += 0x2000u;  // a carry may reach the exponent (up to inf)
    }
  }
  return u & kScaleMask;
}

// 9-bit offset: round half to even, then clamp to [-256, 255].
inline int32_t offset9(float offset) {
  float r = std::nearbyint(offset);
  r = std::min(std::max(r, -256.0f), 255.0f);
  return static_cast<int32_t>(r);
}

inline int64_t pack_quant_param(float scale, float offset, bool has_offset, int64_t round_mode) {
  int64_t v = static_cast<int64_t>(fp19_bits(scale, round_mode)) | kQuantFlag;
  if (has_offset) v |= static_cast<int64_t>(offset9(offset) & 0x1FF) << 37;
  return v;
}

inline float unpack_scale(int64_t packed) {
  return bits_float(static_cast<uint32_t>(packed) & kScaleMask);
}
inline int32_t unpack_offset(int64_t packed) {
  int32_t o = static_cast<int32_t>((packed >> 37) & 0x1FF);
  return o >= 256 ? o - 512 : o;  // sign-extend 9 bits
}

}  // namespace at::native::qdev
