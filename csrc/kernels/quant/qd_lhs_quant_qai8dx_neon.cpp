// NEON qai8dx row quantizer (aarch64; the neon_dotprod and neon_i8mm variants'):
// the AVX-512 variant's two passes on 4 lanes, 16 values a step. FRINTA-style
// conversion (vcvtaq: round to nearest, ties away from zero) is exactly the
// reference's std::round + int cast; min/max with the NaN-ignoring minNum/maxNum
// forms, as std::min(acc, v). The row's last k % 16 values run the reference's
// scalar operations. Bit-identical to the reference.
#if !defined(__aarch64__)
#error "aarch64 only"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "qd_qai8dx_row_params.h"

namespace qdev::kernels {
namespace {

inline float32x4_t load4(const Qai8dxArgs& a, int64_t r, int64_t i) {
  const int64_t at = r * a.ldx + i;
  if (a.x_bf16) {  // bf16 -> fp32 is exact: the bits move up 16 places
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(a.x) + at), 16));
  }
  return vld1q_f32(static_cast<const float*>(a.x) + at);
}


}  // namespace

void quant_rows_qai8dx_neon(const Qai8dxArgs& a, int64_t row_begin, int64_t row_end) {
  // Group sums by 16-value blocks need blocks that never straddle two groups.
  if (a.groups > 1 && a.group % 16 != 0) return quant_rows_qai8dx_ref(a, row_begin, row_end);
  const int64_t k16 = a.k / 16 * 16;
  const int32x4_t lo = vdupq_n_s32(-128), hi = vdupq_n_s32(127);
  const int8x16_t flip = vdupq_n_s8(a.q_unsigned ? static_cast<int8_t>(-128) : 0);
  for (int64_t r = row_begin; r < row_end; ++r) {
    float32x4_t vmin = vdupq_n_f32(INFINITY), vmax = vdupq_n_f32(-INFINITY);
    for (int64_t i = 0; i < k16; i += 4) {
      const float32x4_t v = load4(a, r, i);
      vmin = vminnmq_f32(vmin, v);  // a NaN v keeps the accumulator
      vmax = vmaxnmq_f32(vmax, v);
    }
    float mn = vminnmvq_f32(vmin), mx = vmaxnmvq_f32(vmax);
    for (int64_t i = k16; i < a.k; ++i) {
      mn = std::min(mn, qai8dx_x_at(a, r, i));
      mx = std::max(mx, qai8dx_x_at(a, r, i));
    }
    const Qai8dxRowParams rp = qai8dx_row_params(mn, mx);
    const float32x4_t scale = vdupq_n_f32(rp.scale);
    const int32x4_t zp = vdupq_n_s32(rp.zp);
    int8_t* q = a.q + r * a.ldq;
    int32_t* rowsum = a.rowsum + r * a.groups;
    const int64_t group = a.groups > 1 ? a.group : a.k;
    for (int64_t g = 0; g < a.groups; ++g) rowsum[g] = 0;
    int32x4_t gsum = vdupq_n_s32(0);
    for (int64_t i = 0; i < k16; i += 16) {
      int32x4_t v[4];
      for (int j = 0; j < 4; ++j) {
        const float32x4_t p = vmulq_f32(load4(a, r, i + 4 * j), scale);
        // NaN / out of range -> INT32_MIN, as the reference and the x86 variants (vcvtaq would give 0).
        const uint32x4_t in = vandq_u32(vcgeq_f32(p, vdupq_n_f32(-2147483648.0f)),
                                        vcltq_f32(p, vdupq_n_f32(2147483648.0f)));
        v[j] = vaddq_s32(vbslq_s32(in, vcvtaq_s32_f32(p), vdupq_n_s32(INT32_MIN)), zp);
        v[j] = vminq_s32(vmaxq_s32(v[j], lo), hi);
        gsum = vaddq_s32(gsum, v[j]);
      }
      const int16x8_t h0 = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
      const int16x8_t h1 = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
      vst1q_s8(q + i, veorq_s8(vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)), flip));
      if ((i + 16) % group == 0 || i + 16 == k16) {
        rowsum[i / group] += vaddvq_s32(gsum);
        gsum = vdupq_n_s32(0);
      }
    }
    for (int64_t i = k16; i < a.k; ++i) {  // the reference's scalar operations
      const int32_t v = qai8dx_quantize(qai8dx_x_at(a, r, i), rp);
      rowsum[i / group] += v;
      q[i] = static_cast<int8_t>(a.q_unsigned ? (v ^ 0x80) : v);
    }
    std::memset(q + a.k, a.q_unsigned ? 0x80 : 0, static_cast<size_t>(a.ldq - a.k));
    a.recip[r] = rp.recip;
    a.zp[r] = rp.zp;
  }
}

}  // namespace qdev::kernels
