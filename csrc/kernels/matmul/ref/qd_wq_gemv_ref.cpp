#include "../../common/qd_common.h"
#include "../qd_wq_gemv.h"

namespace qdev::kernels {
namespace {

float round_to(float v, bool bf16) {
  return bf16 ? bf16_to_f32(f32_to_bf16_rne(v)) : f16_to_f32(f32_to_f16_rne(v));
}

int weight_at(const WqGemvArgs& a, int64_t j, int64_t kk) {
  if (!a.int4) return a.w[j * a.ldw + kk];
  const uint8_t byte = static_cast<uint8_t>(a.w[j * a.ldw + kk / 2]);
  const int nibble = (kk & 1) ? byte >> 4 : byte & 0xF;
  return (nibble ^ 8) - 8;
}

// W'[kk, j]: (w + offset) then * scale, each rounded to the activation dtype.
float dequant_at(const WqGemvArgs& a, int64_t j, int64_t kk) {
  const int64_t g = a.group == a.k ? 0 : kk / a.group;
  float w = static_cast<float>(weight_at(a, j, kk));
  if (a.offset) w = round_to(w + a.offset[g * a.n + j], a.bf16);
  return round_to(w * a.scale[g * a.n + j], a.bf16);
}

}  // namespace

void wq_gemv_ref(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  for (int64_t j = n_begin; j < n_end; ++j) {
    for (int64_t r = 0; r < a.m; ++r) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < a.k; ++kk) {
        const float w = dequant_at(a, j, kk);
        acc = acc + a.x[r * a.ldx + kk] * w;
      }
      a.y[r * a.ldy + j] = acc;
    }
  }
}

void wq_dequant_rows_ref(const WqGemvArgs& a, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo) {
  for (int64_t j = n_begin; j < n_end; ++j) {
    uint16_t* row = out + (j - n_begin) * ldo;
    for (int64_t kk = 0; kk < a.k; ++kk) {
      const float w = dequant_at(a, j, kk);  // already representable: the conversion is exact
      row[kk] = a.bf16 ? f32_to_bf16_rne(w) : f32_to_f16_rne(w);
    }
  }
}

void wq_dequant_rows(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end, uint16_t* out,
                     int64_t ldo) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return wq_dequant_rows_avx512(args, n_begin, n_end, out, ldo);
#endif
#ifdef QD_HAVE_AVX2
  if (isa == Isa::kAvx2) return wq_dequant_rows_avx2(args, n_begin, n_end, out, ldo);
#endif
  (void)isa;
  wq_dequant_rows_ref(args, n_begin, n_end, out, ldo);
}

void wq_gemv(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return wq_gemv_avx512(args, n_begin, n_end);
#endif
#ifdef QD_HAVE_AVX2
  if (isa == Isa::kAvx2) return wq_gemv_avx2(args, n_begin, n_end);
#endif
  (void)isa;
  wq_gemv_ref(args, n_begin, n_end);
}

}  // namespace qdev::kernels
