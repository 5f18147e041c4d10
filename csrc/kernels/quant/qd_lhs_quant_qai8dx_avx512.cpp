// AVX-512 qai8dx row quantizer: min/max pass, then quantize + per-group sums,
// 16 values at a time. Bit-identical to the reference: the same fp32 product
// x * scale, rounded half away from zero exactly (trunc, then +-1 where the
// exact fraction is >= 0.5: no "v + 0.5" that could round up), the same
// saturating clamp after adding the zero point in int32.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "compile with -mavx512f -mavx512bw -mavx512vl"
#endif

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "../matmul/qd_w4a8.h"
#include "qd_qai8dx_row_params.h"

namespace qdev::kernels {
namespace {

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

inline __m512 load16(const Qai8dxArgs& a, int64_t r, int64_t i, __mmask16 m) {
  const int64_t at = r * a.ldx + i;
  if (a.x_bf16) {  // bf16 -> fp32 is exact: the bits move up 16 places
    const __m256i b = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(a.x) + at);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
  }
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(a.x) + at);
}

// int32(round half away from zero (v)); NaN and out-of-range give INT32_MIN as cvttss2si does.
inline __m512i round_half_away_epi32(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(v, t);  // exact
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(frac), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512i ti = _mm512_cvttps_epi32(t);
  const __m512i sign = _mm512_srai_epi32(_mm512_castps_si512(v), 31);  // 0 or -1
  return _mm512_mask_add_epi32(ti, up, ti, _mm512_or_si512(sign, _mm512_set1_epi32(1)));
}

}  // namespace

void quant_rows_qai8dx_avx512(const Qai8dxArgs& a, int64_t row_begin, int64_t row_end) {
  // Group sums by 16-value blocks need blocks that never straddle two groups.
  if (a.groups > 1 && a.group % 16 != 0) return quant_rows_qai8dx_ref(a, row_begin, row_end);
  const __m512i lo = _mm512_set1_epi32(-128), hi = _mm512_set1_epi32(127);
  const __m128i flip = _mm_set1_epi8(a.q_unsigned ? static_cast<char>(0x80) : 0);
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m512 vmin = _mm512_set1_ps(INFINITY), vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t i = 0; i < a.k; i += 16) {
      const __mmask16 m = tail_mask(a.k - i);
      const __m512 v = load16(a, r, i, m);
      // (v, acc) order: a NaN v keeps acc, as std::min(acc, v) in the reference
      vmin = _mm512_mask_min_ps(vmin, m, v, vmin);
      vmax = _mm512_mask_max_ps(vmax, m, v, vmax);
    }
    const Qai8dxRowParams rp = qai8dx_row_params(_mm512_reduce_min_ps(vmin), _mm512_reduce_max_ps(vmax));
    const __m512 scale = _mm512_set1_ps(rp.scale);
    const __m512i zp = _mm512_set1_epi32(rp.zp);
    int8_t* q = a.q + r * a.ldq;
    int32_t* rowsum = a.rowsum + r * a.groups;
    __m512i gsum = _mm512_setzero_si512();
    int64_t g = 0, group_end = a.groups > 1 ? a.group : a.k;
    for (int64_t i = 0; i < a.k; i += 16) {
      const __mmask16 m = tail_mask(a.k - i);
      const __m512 v = _mm512_mul_ps(load16(a, r, i, m), scale);
      // int32 add wraps for the INT32_MIN of a NaN, as the reference's int arithmetic on x86
      __m512i qi = _mm512_add_epi32(round_half_away_epi32(v), zp);
      qi = _mm512_maskz_min_epi32(m, _mm512_max_epi32(qi, lo), hi);
      gsum = _mm512_add_epi32(gsum, qi);
      _mm_mask_storeu_epi8(q + i, m, _mm_xor_si128(_mm512_cvtepi32_epi8(qi), flip));
      if (i + 16 >= group_end || i + 16 >= a.k) {
        rowsum[g++] = _mm512_reduce_add_epi32(gsum);
        gsum = _mm512_setzero_si512();
        group_end += a.group;
      }
    }
    for (; g < a.groups; ++g) rowsum[g] = 0;  // groups wholly in the zero padding
    std::memset(q + a.k, a.q_unsigned ? 0x80 : 0, static_cast<size_t>(a.ldq - a.k));
    a.recip[r] = rp.recip;
    a.zp[r] = rp.zp;
  }
}

}  // namespace qdev::kernels
