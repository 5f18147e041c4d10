// Reference row kernels of the MoE / norm ops (see qd_moe_rows.h). Plain loops the
// compiler vectorizes; every result is elementwise fp32 except the two reductions.
#include "qd_moe_rows.h"

#include <algorithm>
#include <cmath>

namespace qdev::kernels {

float rms_norm_row(const float* x, int64_t h, const float* gamma, const float* beta, float eps, float* y) {
  float ss = 0.0f;
  for (int64_t i = 0; i < h; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(h) + eps);
  for (int64_t i = 0; i < h; ++i) y[i] = x[i] * inv * gamma[i];
  if (beta) {
    for (int64_t i = 0; i < h; ++i) y[i] += beta[i];
  }
  return inv;
}

void swiglu_row(const float* x, int64_t h, bool activate_left, float* y) {
  const float* a = activate_left ? x : x + h;
  const float* b = activate_left ? x + h : x;
  for (int64_t i = 0; i < h; ++i) y[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

static inline int8_t sat8(float v) {
  // NaN saturates to 0 (std::nearbyint keeps it NaN; the comparison chain maps it to 0).
  const float r = std::nearbyint(v);
  if (!(r >= -128.0f)) return r != r ? 0 : -128;
  if (r > 127.0f) return 127;
  return static_cast<int8_t>(r);
}

float quant_row_dynamic(const float* y, int64_t h, const float* smooth, int8_t* q) {
  float amax = 0.0f;
  for (int64_t i = 0; i < h; ++i) amax = std::max(amax, std::fabs(smooth ? y[i] * smooth[i] : y[i]));
  const float scale = amax * (1.0f / 127.0f);
  for (int64_t i = 0; i < h; ++i) {
    const float v = smooth ? y[i] * smooth[i] : y[i];
    q[i] = scale == 0.0f ? 0 : sat8(v / scale);
  }
  return scale;
}

void quant_row_static(const float* y, int64_t h, const float* scale, const float* zp, bool div_mode, int8_t* q) {
  for (int64_t i = 0; i < h; ++i) {
    const float v = div_mode ? y[i] / scale[i] : y[i] * scale[i];
    q[i] = sat8(zp ? v + zp[i] : v);
  }
}

const MoeRowKernels& moe_row_kernels(Isa isa) {
  static const MoeRowKernels ref{rms_norm_row, swiglu_row, quant_row_dynamic, quant_row_static};
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return moe_row_kernels_avx512();
#endif
  (void)isa;
  return ref;
}

}  // namespace qdev::kernels
