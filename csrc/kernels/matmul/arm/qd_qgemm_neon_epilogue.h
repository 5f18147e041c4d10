// NEON output stage of the int8 GEMM, shared by the dotprod and i8mm kernels:
// the operations of qgemm_epilogue_ref in the same order, 4 columns at a time
// (so the results are bit-identical); a ragged tail of fewer than 4 columns goes
// to the reference. `static inline` only: the including files are compiled with
// different -march flags.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "../qd_qgemm.h"

namespace qdev::kernels {

// float32 -> bfloat16 bits, round to nearest even, NaN kept quiet (f32_to_bf16_rne).
static inline uint16x4_t qgemm_neon_bf16_rne(float32x4_t f) {
  const uint32x4_t u = vreinterpretq_u32_f32(f);
  const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
  const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7FFF)), lsb), 16);
  const uint32x4_t quiet_nan = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(0x40));
  const uint32x4_t is_num = vceqq_f32(f, f);
  return vmovn_u32(vbslq_u32(is_num, rounded, quiet_nan));
}

static inline void qgemm_epilogue_neon(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0,
                                       int64_t rows, int64_t c0, int64_t cols) {
  const QGemmEpilogue& ep = args.ep;
  const int64_t vec_cols = cols / 4 * 4;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = r0 + r;
    for (int64_t c = 0; c < vec_cols; c += 4) {
      const int64_t j = c0 + c;
      const int64_t at = row * args.ldc + j;
      int32x4_t t = vld1q_s32(tile + r * ld_tile + c);
      if (ep.bias_i32) t = vaddq_s32(t, vld1q_s32(ep.bias_i32 + j));  // wraps, as the reference
      if (ep.out == QGemmOut::kInt32) {
        vst1q_s32(static_cast<int32_t*>(args.c) + at, t);
        continue;
      }
      float32x4_t f = vcvtq_f32_s32(t);
      if (ep.scale) f = vmulq_f32(f, ep.scale_stride ? vld1q_f32(ep.scale + j) : vdupq_n_f32(ep.scale[0]));
      if (ep.out == QGemmOut::kInt8) {
        f = vminq_f32(vmaxq_f32(f, vdupq_n_f32(-256.0f)), vdupq_n_f32(255.0f));
        int32x4_t q = vcvtnq_s32_f32(f);  // round to nearest, ties to even (nearbyint)
        if (ep.offset) q = vaddq_s32(q, ep.offset_stride ? vld1q_s32(ep.offset + j) : vdupq_n_s32(ep.offset[0]));
        q = vminq_s32(vmaxq_s32(q, vdupq_n_s32(-128)), vdupq_n_s32(127));
        const int16x4_t q16 = vmovn_s32(q);
        const int32_t bytes = vget_lane_s32(vreinterpret_s32_s8(vmovn_s16(vcombine_s16(q16, q16))), 0);
        std::memcpy(static_cast<int8_t*>(args.c) + at, &bytes, 4);
        continue;
      }
      if (ep.pertoken) f = vmulq_f32(f, vdupq_n_f32(ep.pertoken[row]));
      if (ep.bias_f) f = vaddq_f32(f, vld1q_f32(ep.bias_f + j));
      if (ep.out == QGemmOut::kFloat32) {
        vst1q_f32(static_cast<float*>(args.c) + at, f);
      } else if (ep.out == QGemmOut::kFloat16) {
        // fcvtn rounds to nearest even (FPCR default), subnormals kept, as f32_to_f16_rne.
        vst1_u16(static_cast<uint16_t*>(args.c) + at, vreinterpret_u16_f16(vcvt_f16_f32(f)));
      } else {
        vst1_u16(static_cast<uint16_t*>(args.c) + at, qgemm_neon_bf16_rne(f));
      }
    }
  }
  if (vec_cols < cols) qgemm_epilogue_ref(args, tile + vec_cols, ld_tile, r0, rows, c0 + vec_cols, cols - vec_cols);
}

}  // namespace qdev::kernels
