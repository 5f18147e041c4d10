#include <algorithm>
#include <cmath>

#include "../common/qd_common.h"
#include "qd_quant_rows.h"

namespace qdev::kernels {

namespace {

float load(const QuantRowsArgs& a, int64_t r, int64_t i) {
  const int64_t at = r * a.ldx + i;
  switch (a.type) {
    case FloatType::kF16: return f16_to_f32(static_cast<const uint16_t*>(a.x)[at]);
    case FloatType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(a.x)[at]);
    default: return static_cast<const float*>(a.x)[at];
  }
}

}  // namespace

void row_params(const QuantRowsArgs& a, float mx, float mn, float amax, float* scale, float* offset) {
  if (a.asymmetric) {
    *scale = (mx - mn) / (a.dst_max - a.dst_min);
    *offset = *scale == 0.0f ? 0.0f : a.dst_max - mx / *scale;
  } else {
    *scale = amax * (1.0f / a.dst_max);
    *offset = 0.0f;
  }
}

void quant_rows_ref(const QuantRowsArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    float mx = -INFINITY, mn = INFINITY, amax = 0.0f;
    for (int64_t i = 0; i < a.h; ++i) {
      float v = load(a, r, i);
      if (a.smooth) v = v * a.smooth[i];
      mx = std::max(mx, v);
      mn = std::min(mn, v);
      amax = std::max(amax, std::fabs(v));
    }
    float scale, offset;
    row_params(a, mx, mn, amax, &scale, &offset);
    for (int64_t i = 0; i < a.h; ++i) {
      float v = 0.0f;
      if (scale != 0.0f) {
        float x = load(a, r, i);
        if (a.smooth) x = x * a.smooth[i];
        v = x / scale;
        if (a.asymmetric) v = v + offset;
        // A NaN quotient (a NaN input, or inf / inf) quantizes to 0 in every variant.
        v = std::isnan(v) ? 0.0f : std::min(std::max(std::nearbyint(v), a.dst_min), a.dst_max);
      }
      a.q[r * a.ldq + i] = static_cast<int8_t>(v);
    }
    a.scale[r] = scale;
    if (a.offset) a.offset[r] = offset;
  }
}

void quant_rows(Isa isa, const QuantRowsArgs& args, int64_t row_begin, int64_t row_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return quant_rows_avx512(args, row_begin, row_end);
#endif
  (void)isa;
  quant_rows_ref(args, row_begin, row_end);
}

}  // namespace qdev::kernels
