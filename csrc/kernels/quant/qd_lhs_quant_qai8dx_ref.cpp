// Per-row asymmetric int8 quantization of activations, exactly as PyTorch's
// reference (and KleidiAI's scalar packer): range widened to contain 0,
// TFLite-style nudged zero point (round half even), values rounded half away.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../common/qd_common.h"
#include "../matmul/qd_w4a8.h"

namespace qdev::kernels {

void quant_rows_qai8dx(const Qai8dxArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    auto x_at = [&](int64_t i) {
      return a.x_bf16 ? bf16_to_f32(static_cast<const uint16_t*>(a.x)[r * a.ldx + i])
                      : static_cast<const float*>(a.x)[r * a.ldx + i];
    };
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < a.k; ++i) {
      const float v = x_at(i);
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    const float rmin = std::min(0.0f, mn), rmax = std::max(0.0f, mx);
    const float scale = rmin == rmax ? 1.0f : 255.0f / (rmax - rmin);
    const float recip = scale != 0.0f ? 1.0f / scale : 0.0f;
    const float dmin = rmin * scale, dmax = rmax * scale;
    float zpf = ((-128.0f + dmin) + (127.0f + dmax) > 0.0f) ? (-128.0f - dmin) : (127.0f - dmax);
    zpf = std::min(std::max(zpf, -128.0f), 127.0f);
    const int32_t zp = static_cast<int32_t>(std::nearbyint(zpf));
    int8_t* q = a.q + r * a.ldq;
    for (int64_t i = 0; i < a.k; ++i) {
      const int32_t v = static_cast<int32_t>(std::round(x_at(i) * scale)) + zp;
      q[i] = static_cast<int8_t>(std::min(std::max(v, -128), 127));
    }
    std::memset(q + a.k, 0, static_cast<size_t>(a.ldq - a.k));
    for (int64_t g = 0; g < a.groups; ++g) {
      const int64_t k0 = g * a.group, k1 = std::min(a.k, k0 + a.group);
      int32_t sum = 0;
      for (int64_t i = k0; i < k1; ++i) sum += q[i];
      a.rowsum[r * a.groups + g] = sum;
    }
    a.recip[r] = recip;
    a.zp[r] = zp;
  }
}

}  // namespace qdev::kernels
