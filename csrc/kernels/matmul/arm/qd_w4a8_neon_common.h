// Per-group and output stages shared by the aarch64 W4A8 kernels (dotprod and
// i8mm). `static inline` only: each including file is compiled with its own
// -march, and the linker must never merge one copy across them.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#include "../../common/qd_common.h"
#include "../qd_w4a8.h"

namespace qdev::kernels {

// The per-row terms of the zero-point correction for one group.
struct W4RowTerms {
  int32x4_t rowsum8;  // 8 * sum_k q over the group (the +8 of the stored nibbles)
  int32_t zp;
};

static inline W4RowTerms w4_row_terms(const W4A8Args& args, int64_t row, int64_t g) {
  return {vdupq_n_s32(8 * args.rowsum[row * args.L.groups + g]), args.zp[row]};
}

// acc + float(iacc) * scale for 4 columns whose group-sum/scale index starts at idx,
// where iacc = dot - 8 * rowsum - zp * colsum and dot = sum_k q * (w + 8).
static inline float32x4_t w4_accumulate_group(const W4A8Args& args, const W4RowTerms& row, int32x4_t dot,
                                              int64_t idx, float32x4_t acc) {
  const W4Layout& L = args.L;
  const int32x4_t colsum =
      w4_colsum16(L) ? vmovl_s16(vld1_s16(reinterpret_cast<const int16_t*>(args.packed + L.off_colsum) + idx))
                     : vld1q_s32(reinterpret_cast<const int32_t*>(args.packed + L.off_colsum) + idx);
  const float32x4_t scale =
      L.scales_bf16
          ? vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(args.packed + L.off_scales) + idx), 16))
          : vld1q_f32(reinterpret_cast<const float*>(args.packed + L.off_scales) + idx);
  const int32x4_t iacc = vmlsq_n_s32(vsubq_s32(dot, row.rowsum8), colsum, row.zp);
  return vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(iacc), scale));
}

// y = acc * recip (+ bias) for columns [j0, j0 + cols) of one row, cols <= 32;
// acc[c] holds columns j0 + 4c .. j0 + 4c + 3. bf16 output is truncated, as the reference.
static inline void w4_store_row(const W4A8Args& args, int64_t row, int64_t j0, int64_t cols,
                                const float32x4_t* acc) {
  const float32x4_t recip = vdupq_n_f32(args.recip[row]);
  const float* bias = args.L.has_bias ? reinterpret_cast<const float*>(args.packed + args.L.off_bias) + j0 : nullptr;
  const int quads = static_cast<int>((cols + 3) / 4);
  if (args.out_bf16) {
    uint16_t y[kW4PanelCols];
    for (int c = 0; c < quads; ++c) {
      float32x4_t v = vmulq_f32(acc[c], recip);
      if (bias) v = vaddq_f32(v, vld1q_f32(bias + c * 4));  // bias is padded to n_pad
      vst1_u16(y + c * 4, vshrn_n_u32(vreinterpretq_u32_f32(v), 16));
    }
    std::memcpy(static_cast<uint16_t*>(args.out) + row * args.ldo + j0, y, static_cast<size_t>(cols) * 2);
  } else {
    float y[kW4PanelCols];
    for (int c = 0; c < quads; ++c) {
      float32x4_t v = vmulq_f32(acc[c], recip);
      if (bias) v = vaddq_f32(v, vld1q_f32(bias + c * 4));
      vst1q_f32(y + c * 4, v);
    }
    std::memcpy(static_cast<float*>(args.out) + row * args.ldo + j0, y, static_cast<size_t>(cols) * 4);
  }
}

}  // namespace qdev::kernels
