#include "../../common/qd_common.h"
#include "../qd_wq_gemv.h"

namespace qdev::kernels {
namespace {

float round_to(float v, bool bf16) {
  return bf16 ? bf16_to_f32(f32_to_bf16_rne(v)) : f16_to_f32(f32_to_f16_rne(v));
}

}  // namespace

void wq_gemv_ref(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t groups = a.group == a.k ? 1 : a.k / a.group;
  for (int64_t j = n_begin; j < n_end; ++j) {
    for (int64_t r = 0; r < a.m; ++r) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < a.k; ++kk) {
        const int64_t g = groups == 1 ? 0 : kk / a.group;
        float w = static_cast<float>(a.w[j * a.ldw + kk]);
        if (a.offset) w = round_to(w + a.offset[g * a.n + j], a.bf16);
        w = round_to(w * a.scale[g * a.n + j], a.bf16);
        const uint16_t xb = a.x[r * a.ldx + kk];
        const float x = a.bf16 ? bf16_to_f32(xb) : f16_to_f32(xb);
        acc = acc + x * w;
      }
      a.y[r * a.ldy + j] = acc;
    }
  }
}

void wq_gemv(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return wq_gemv_avx512(args, n_begin, n_end);
#endif
  (void)isa;
  wq_gemv_ref(args, n_begin, n_end);
}

}  // namespace qdev::kernels
