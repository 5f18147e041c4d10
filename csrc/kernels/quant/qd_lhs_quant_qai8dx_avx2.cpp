// AVX2 qai8dx row quantizer: the AVX-512 variant's two passes on 8 lanes, the
// row's last k % 8 values in scalar code with the reference's operations.
// Bit-identical to the reference (exact round half away from zero, see the
// AVX-512 file).
#if !defined(__AVX2__)
#error "compile with -mavx2"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "qd_qai8dx_row_params.h"

namespace qdev::kernels {
namespace {

inline __m256 load8(const Qai8dxArgs& a, int64_t r, int64_t i) {
  const int64_t at = r * a.ldx + i;
  if (a.x_bf16) {  // bf16 -> fp32 is exact: the bits move up 16 places
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(a.x) + at));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(a.x) + at);
}


// int32(round half away from zero (v)); NaN and out-of-range give INT32_MIN as cvttss2si does.
inline __m256i round_half_away_epi32(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);  // exact
  const __m256 abs_frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), frac);
  const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(abs_frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
  const __m256i sign = _mm256_srai_epi32(_mm256_castps_si256(v), 31);  // 0 or -1
  const __m256i step = _mm256_and_si256(up, _mm256_or_si256(sign, _mm256_set1_epi32(1)));
  return _mm256_add_epi32(_mm256_cvttps_epi32(t), step);
}

inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

}  // namespace

void quant_rows_qai8dx_avx2(const Qai8dxArgs& a, int64_t row_begin, int64_t row_end) {
  // Group sums by 8-value blocks need blocks that never straddle two groups.
  if (a.groups > 1 && a.group % 8 != 0) return quant_rows_qai8dx_ref(a, row_begin, row_end);
  const int64_t k8 = a.k / 8 * 8;
  const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
  const __m128i flip = _mm_set1_epi8(a.q_unsigned ? static_cast<char>(0x80) : 0);
  for (int64_t r = row_begin; r < row_end; ++r) {
    __m256 vmin = _mm256_set1_ps(INFINITY), vmax = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < k8; i += 8) {
      const __m256 v = load8(a, r, i);
      vmin = _mm256_min_ps(v, vmin);  // a NaN v keeps the accumulator, as std::min(acc, v)
      vmax = _mm256_max_ps(v, vmax);
    }
    float lanes_min[8], lanes_max[8];
    _mm256_storeu_ps(lanes_min, vmin);
    _mm256_storeu_ps(lanes_max, vmax);
    float mn = INFINITY, mx = -INFINITY;
    for (int j = 0; j < 8; ++j) {
      mn = std::min(mn, lanes_min[j]);
      mx = std::max(mx, lanes_max[j]);
    }
    for (int64_t i = k8; i < a.k; ++i) {
      mn = std::min(mn, qai8dx_x_at(a, r, i));
      mx = std::max(mx, qai8dx_x_at(a, r, i));
    }
    const Qai8dxRowParams rp = qai8dx_row_params(mn, mx);
    const __m256 scale = _mm256_set1_ps(rp.scale);
    const __m256i zp = _mm256_set1_epi32(rp.zp);
    int8_t* q = a.q + r * a.ldq;
    int32_t* rowsum = a.rowsum + r * a.groups;
    const int64_t group = a.groups > 1 ? a.group : a.k;
    for (int64_t g = 0; g < a.groups; ++g) rowsum[g] = 0;
    __m256i gsum = _mm256_setzero_si256();
    for (int64_t i = 0; i < k8; i += 8) {
      __m256i qi = _mm256_add_epi32(round_half_away_epi32(_mm256_mul_ps(load8(a, r, i), scale)), zp);
      qi = _mm256_min_epi32(_mm256_max_epi32(qi, lo), hi);
      gsum = _mm256_add_epi32(gsum, qi);
      const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_xor_si128(_mm_packs_epi16(w16, w16), flip));
      if ((i + 8) % group == 0 || i + 8 == k8) {
        rowsum[i / group] += hsum(gsum);
        gsum = _mm256_setzero_si256();
      }
    }
    for (int64_t i = k8; i < a.k; ++i) {  // the reference's scalar operations
      const int32_t v = qai8dx_quantize(qai8dx_x_at(a, r, i), rp);
      rowsum[i / group] += v;
      q[i] = static_cast<int8_t>(a.q_unsigned ? (v ^ 0x80) : v);
    }
    std::memset(q + a.k, a.q_unsigned ? 0x80 : 0, static_cast<size_t>(a.ldq - a.k));
    a.recip[r] = rp.recip;
    a.zp[r] = rp.zp;
  }
}

}  // namespace qdev::kernels
