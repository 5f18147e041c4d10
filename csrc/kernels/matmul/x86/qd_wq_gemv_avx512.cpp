// AVX-512 weight-only GEMV: each column's int8 weights stream once; 16 k per
// step are dequantized with the activation dtype's roundings (vcvtps2ph /
// integer bf16 rounding) and multiplied with up to 4 activation rows.
#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "compile with -mavx512f -mavx512bw -mavx512vl"
#endif

#include <immintrin.h>

#include <algorithm>

#include "../qd_wq_gemv.h"

namespace qdev::kernels {
namespace {

inline __m512 round_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

inline __m512 round_to(__m512 f, bool bf16) {
  return bf16 ? round_bf16(f) : _mm512_cvtph_ps(_mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

inline __m512 load_x(const uint16_t* p, __mmask16 m, bool bf16) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

constexpr int kRows = 4;

}  // namespace

void wq_gemv_avx512(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t groups = a.group == a.k ? 1 : a.k / a.group;
  const int64_t step = groups == 1 ? 16 : std::min<int64_t>(16, a.group);
  for (int64_t j = n_begin; j < n_end; ++j) {
    const int8_t* wj = a.w + j * a.ldw;
    for (int64_t r0 = 0; r0 < a.m; r0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, a.m - r0));
      __m512 acc[kRows] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t kk = 0; kk < a.k; kk += step) {
        const int64_t left = std::min<int64_t>(step, a.k - kk);
        const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
        const int64_t g = groups == 1 ? 0 : kk / a.group;
        __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, wj + kk)));
        if (a.offset) w = round_to(_mm512_add_ps(w, _mm512_set1_ps(a.offset[g * a.n + j])), a.bf16);
        w = round_to(_mm512_mul_ps(w, _mm512_set1_ps(a.scale[g * a.n + j])), a.bf16);
        for (int r = 0; r < rows; ++r) {
          acc[r] = _mm512_fmadd_ps(load_x(a.x + (r0 + r) * a.ldx + kk, m, a.bf16), w, acc[r]);
        }
      }
      for (int r = 0; r < rows; ++r) a.y[(r0 + r) * a.ldy + j] = _mm512_reduce_add_ps(acc[r]);
    }
  }
}

}  // namespace qdev::kernels
