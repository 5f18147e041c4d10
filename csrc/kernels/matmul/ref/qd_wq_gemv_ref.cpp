#include "../qd_wq_dequant.h"

namespace qdev::kernels {
void wq_gemv_ref(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  for (int64_t j = n_begin; j < n_end; ++j) {
    for (int64_t r = 0; r < a.m; ++r) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < a.k; ++kk) {
        const float w = wq_dequant_at(a, j, kk);
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
      const float w = wq_dequant_at(a, j, kk);  // already representable: the conversion is exact
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

int64_t wq_gemv_max_rows(Isa isa, const WqGemvArgs& args) {
#if defined(QD_HAVE_AVX512VNNI) && defined(QD_HAVE_AVX512BF16)
  if (isa == Isa::kAvx512Vnni && cpu_avx512_bf16() && wq_gemv_avx512bf16_takes(args)) return args.int4 ? 16 : 8;
#endif
  (void)isa, (void)args;
  return 4;
}

void wq_gemv(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end) {
#if defined(QD_HAVE_AVX512VNNI) && defined(QD_HAVE_AVX512BF16)
  if (isa == Isa::kAvx512Vnni && cpu_avx512_bf16() && wq_gemv_avx512bf16_takes(args)) {
    return wq_gemv_avx512bf16(args, n_begin, n_end);
  }
#endif
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
