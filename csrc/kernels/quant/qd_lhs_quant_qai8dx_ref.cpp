// Per-row asymmetric int8 quantization of activations, exactly as PyTorch's
// reference (and KleidiAI's scalar packer): range widened to contain 0,
// TFLite-style nudged zero point (round half even), values rounded half away.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../common/qd_common.h"
#include "../matmul/qd_w4a8.h"
#include "qd_qai8dx_row_params.h"

namespace qdev::kernels {

void quant_rows_qai8dx_ref(const Qai8dxArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    auto x_at = [&](int64_t i) { return qai8dx_x_at(a, r, i); };
    float mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < a.k; ++i) {
      const float v = x_at(i);
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    const Qai8dxRowParams rp = qai8dx_row_params(mn, mx);
    int8_t* q = a.q + r * a.ldq;
    for (int64_t i = 0; i < a.k; ++i) q[i] = static_cast<int8_t>(qai8dx_quantize(x_at(i), rp));
    std::memset(q + a.k, 0, static_cast<size_t>(a.ldq - a.k));
    for (int64_t g = 0; g < a.groups; ++g) {
      const int64_t k0 = g * a.group, k1 = std::min(a.k, k0 + a.group);
      int32_t sum = 0;
      for (int64_t i = k0; i < k1; ++i) sum += q[i];
      a.rowsum[r * a.groups + g] = sum;
    }
    if (a.q_unsigned) {
      for (int64_t i = 0; i < a.ldq; ++i) q[i] = static_cast<int8_t>(static_cast<uint8_t>(q[i]) ^ 0x80u);
    }
    a.recip[r] = rp.recip;
    a.zp[r] = rp.zp;
  }
}

void quant_rows_qai8dx(Isa isa, const Qai8dxArgs& args, int64_t row_begin, int64_t row_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return quant_rows_qai8dx_avx512(args, row_begin, row_end);
#endif
#ifdef QD_HAVE_AVX2
  if (isa == Isa::kAvx2) return quant_rows_qai8dx_avx2(args, row_begin, row_end);
#endif
#ifdef QD_HAVE_NEON_DOTPROD  // plain NEON: every Arm variant above the reference has it
  if (isa == Isa::kNeonDotprod || isa == Isa::kNeonI8mm) return quant_rows_qai8dx_neon(args, row_begin, row_end);
#endif
  (void)isa;
  quant_rows_qai8dx_ref(args, row_begin, row_end);
}

}  // namespace qdev::kernels
