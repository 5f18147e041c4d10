// The scalar parts of the qai8dx row quantizer, shared by every variant so that they
// agree bit for bit (scalar fp32, compiled without contraction everywhere): the row's
// scale, reciprocal and nudged zero point, and the quantization of one value (the
// reference's loop, the SIMD variants' row tails). static: each ISA's object keeps
// its own copy, so a copy compiled with -mavx2 is never the one the reference calls.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../common/qd_common.h"
#include "../matmul/qd_w4a8.h"

namespace qdev::kernels {

struct Qai8dxRowParams {
  float scale, recip;
  int32_t zp;
};

// mn, mx: the row's min and max (NaN ignored; +-inf for an empty row).
static inline Qai8dxRowParams qai8dx_row_params(float mn, float mx) {
  const float rmin = std::min(0.0f, mn), rmax = std::max(0.0f, mx);  // the range contains 0
  const float scale = rmin == rmax ? 1.0f : 255.0f / (rmax - rmin);
  const float recip = scale != 0.0f ? 1.0f / scale : 0.0f;
  const float dmin = rmin * scale, dmax = rmax * scale;
  float zpf = ((-128.0f + dmin) + (127.0f + dmax) > 0.0f) ? (-128.0f - dmin) : (127.0f - dmax);
  zpf = std::min(std::max(zpf, -128.0f), 127.0f);
  return {scale, recip, static_cast<int32_t>(std::nearbyint(zpf))};  // TFLite nudging: half to even
}

// x[r, i] as fp32 (bf16 widens exactly).
static inline float qai8dx_x_at(const Qai8dxArgs& a, int64_t r, int64_t i) {
  return a.x_bf16 ? bf16_to_f32(static_cast<const uint16_t*>(a.x)[r * a.ldx + i])
                  : static_cast<const float*>(a.x)[r * a.ldx + i];
}

// q of one value: x * scale in fp32, rounded half away from zero, + zp, saturated to int8.
// A NaN or out-of-range product converts to INT32_MIN and the zero point adds with 32-bit
// wrap-around, as the SIMD variants do (cvttps2dq, vpaddd); written out, because the plain
// casts would be undefined behaviour.
static inline int32_t qai8dx_quantize(float x, const Qai8dxRowParams& rp) {
  const float r = std::round(x * rp.scale);
  const int32_t v = r >= -2147483648.0f && r < 2147483648.0f ? static_cast<int32_t>(r) : INT32_MIN;
  const int32_t s = static_cast<int32_t>(static_cast<uint32_t>(v) + static_cast<uint32_t>(rp.zp));
  return std::min(std::max(s, -128), 127);
}

}  // namespace qdev::kernels
