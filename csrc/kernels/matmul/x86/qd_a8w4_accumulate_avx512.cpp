// AVX-512 A8W4 float16 group accumulation (qd_a8w4.h): 16 values a step, the
// conversions as vcvtps2ph / vcvtph2ps with round to nearest even, as the reference.
#if !defined(__AVX512F__)
#error "compile with -mavx512f"
#endif

#include <immintrin.h>

#include "../qd_a8w4.h"

namespace qdev::kernels {

void a8w4_accumulate_group_avx512(const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc) {
  constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; c += 16) {
      const __mmask16 m = n - c >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - c)) - 1);
      const int64_t at = r * n + c;
      const __m512 prod = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, sums + at)),
                                        _mm512_maskz_loadu_ps(m, scale + c));
      const __m512 term = _mm512_cvtph_ps(_mm512_cvtps_ph(prod, kRne));
      const __m512 old = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, acc + at));
      _mm256_mask_storeu_epi16(acc + at, m, _mm512_cvtps_ph(_mm512_add_ps(old, term), kRne));
    }
  }
}

}  // namespace qdev::kernels
