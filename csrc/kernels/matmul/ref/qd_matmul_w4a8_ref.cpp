// Scalar reference of the W4A8 dynamic matmul (also the yardstick of the SIMD variants).
#include <algorithm>

#include "../../common/qd_common.h"
#include "../qd_qgemm_s4.h"
#include "../qd_w4a8.h"

namespace qdev::kernels {

void w4a8_panels_ref(const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
  const W4Layout& L = args.L;
  const uint8_t* nib = args.packed + L.off_weights;
  auto scale_at = [&](int64_t idx) {
    return L.scales_bf16 ? bf16_to_f32(reinterpret_cast<const uint16_t*>(args.packed + L.off_scales)[idx])
                         : reinterpret_cast<const float*>(args.packed + L.off_scales)[idx];
  };
  const float* bias = L.has_bias ? reinterpret_cast<const float*>(args.packed + L.off_bias) : nullptr;
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const uint8_t* panel = nib + p * w4_panel_bytes(L.k_pad);
    for (int64_t jc = 0; jc < kNzCols && p * kNzCols + jc < L.n; ++jc) {
      const int64_t j = p * kNzCols + jc;
      for (int64_t r = 0; r < args.m; ++r) {
        const int8_t* q = args.q + r * args.ldq;
        float acc = 0.0f;
        for (int64_t g = 0; g < L.groups; ++g) {
          const int64_t k0 = L.channelwise ? 0 : g * L.group, k1 = L.channelwise ? L.k : k0 + L.group;
          int32_t iacc = 0;
          for (int64_t kk = k0; kk < k1; ++kk) {
            const uint8_t byte = panel[w4_weight_offset(kk, jc)];
            const int32_t w = ((kk % 8 < 4) ? (byte & 0xF) : (byte >> 4)) - 8;
            iacc += (q[kk] - args.zp[r]) * w;
          }
          acc = acc + static_cast<float>(iacc) * scale_at(w4_group_index(L.groups, g, j));
          if (L.has_zeros) {
            const int32_t asum = args.rowsum[r * L.groups + g] - args.zp[r] * static_cast<int32_t>(w4_group_len(L));
            acc = acc + static_cast<float>(asum) * w4_zero_at(args.packed, L, g, j);
          }
        }
        float y = acc * args.recip[r];
        if (bias) y = y + bias[j];
        if (args.out_bf16) {
          static_cast<uint16_t*>(args.out)[r * args.ldo + j] = static_cast<uint16_t>(f32_bits(y) >> 16);
        } else {
          static_cast<float*>(args.out)[r * args.ldo + j] = y;
        }
      }
    }
  }
}

bool w4a8_lhs_unsigned(Isa isa, int64_t m, const W4Layout& L) {
#ifdef QD_HAVE_AVX512VNNI
  // 1-2 rows keep the decode tiles, which are bound by memory, not by ops.
  if (isa == Isa::kAvx512Vnni) return m > 2 && (L.channelwise ? L.k_pad : L.group) <= 65536;
#endif
  (void)isa, (void)m, (void)L;
  return false;
}

void w4a8_panels(Isa isa, const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return w4a8_panels_avx512vnni(args, panel_begin, panel_end);
#endif
#ifdef QD_HAVE_AVX2
  if (isa == Isa::kAvx2) return w4a8_panels_avx2(args, panel_begin, panel_end);
#endif
  // The Arm variants have no zero term yet: asymmetric buffers take the reference there.
  if (args.L.has_zeros && (isa == Isa::kNeonDotprod || isa == Isa::kNeonI8mm)) return w4a8_panels_ref(args, panel_begin, panel_end);
#ifdef QD_HAVE_NEON_DOTPROD
  if (isa == Isa::kNeonDotprod) return w4a8_panels_neon_dotprod(args, panel_begin, panel_end);
#endif
#if defined(QD_HAVE_NEON_I8MM) && defined(QD_HAVE_NEON_DOTPROD)
  if (isa == Isa::kNeonI8mm) return w4a8_panels_neon_i8mm(args, panel_begin, panel_end);
#endif
  (void)isa;
  w4a8_panels_ref(args, panel_begin, panel_end);
}

}  // namespace qdev::kernels
