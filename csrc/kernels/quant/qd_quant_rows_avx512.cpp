// AVX-512 row quantizer: two passes over each row (statistics, then
// quantization), 16 floats at a time, recomputing x * smooth in the second
// pass instead of storing it. Same operations, same rounding as the reference.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "compile with -mavx512f -mavx512bw -mavx512vl"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "qd_quant_rows.h"

namespace qdev::kernels {
namespace {

inline __m512 load16(const QuantRowsArgs& a, int64_t r, int64_t i, __mmask16 m) {
  const int64_t at = r * a.ldx + i;
  switch (a.type) {
    case FloatType::kF16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(a.x) + at));
    case FloatType::kBF16: {
      const __m256i b = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(a.x) + at);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
    }
    default:
      return _mm512_maskz_loadu_ps(m, static_cast<const float*>(a.x) + at);
  }
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

}  // namespace

void quant_rows_avx512(const QuantRowsArgs& a, int64_t row_begin, int64_t row_end) {
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m512 vmax = _mm512_set1_ps(-INFINITY), vmin = _mm512_set1_ps(INFINITY);
    __m512 vamax = _mm512_setzero_ps();
    for (int64_t i = 0; i < a.h; i += 16) {
      const __mmask16 m = tail_mask(a.h - i);
      __m512 v = load16(a, r, i, m);
      if (a.smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, a.smooth + i));
      // v first: max/min return their second operand for a NaN, so a NaN v keeps the
      // accumulator, as std::max(acc, v) does in the reference.
      vmax = _mm512_mask_max_ps(vmax, m, v, vmax);
      vmin = _mm512_mask_min_ps(vmin, m, v, vmin);
      vamax = _mm512_mask_max_ps(vamax, m, _mm512_abs_ps(v), vamax);
    }
    const float mx = _mm512_reduce_max_ps(vmax), mn = _mm512_reduce_min_ps(vmin);
    const float amax = _mm512_reduce_max_ps(vamax);
    float scale, offset;
    row_params(a, mx, mn, amax, &scale, &offset);
    int8_t* q = a.q + r * a.ldq;
    if (scale == 0.0f) {
      std::fill(q, q + a.h, int8_t{0});
    } else {
      const __m512 vs = _mm512_set1_ps(scale), vo = _mm512_set1_ps(offset);
      const __m512 lo = _mm512_set1_ps(a.dst_min), hi = _mm512_set1_ps(a.dst_max);
      for (int64_t i = 0; i < a.h; i += 16) {
        const __mmask16 m = tail_mask(a.h - i);
        __m512 v = load16(a, r, i, m);
        if (a.smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, a.smooth + i));
        v = _mm512_div_ps(v, vs);
        if (a.asymmetric) v = _mm512_add_ps(v, vo);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);  // NaN -> 0, as the reference
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        _mm512_mask_cvtsepi32_storeu_epi8(q + i, m, _mm512_cvtps_epi32(v));
      }
    }
    a.scale[r] = scale;
    if (a.offset) a.offset[r] = offset;
  }
}

}  // namespace qdev::kernels
