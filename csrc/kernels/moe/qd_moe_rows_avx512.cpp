// AVX-512 row kernels of the MoE / norm ops (see qd_moe_rows.h): 16 lanes, masked tails.
#include <immintrin.h>

#include <cmath>

#include "qd_moe_rows.h"

namespace qdev::kernels {
namespace {

inline __mmask16 tail(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// exp(x): n = rint(x log2 e), r = x - n ln2 (two-part ln2), Cephes' degree-6 polynomial, scalef by 2^n
// (scalef saturates to inf / 0 itself, so no clamping and no integer conversion).
inline __m512 exp512(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

float rms_norm_row_avx512(const float* x, int64_t h, const float* gamma, const float* beta, float eps, float* y) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < h; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail(h - i), x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  const float inv = 1.0f / std::sqrt(_mm512_reduce_add_ps(acc) / static_cast<float>(h) + eps);
  const __m512 vi = _mm512_set1_ps(inv);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = tail(h - i);
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vi), _mm512_maskz_loadu_ps(m, gamma + i));
    if (beta) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, beta + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
  return inv;
}

void swiglu_row_avx512(const float* x, int64_t h, bool activate_left, float* y) {
  const float* a = activate_left ? x : x + h;
  const float* b = activate_left ? x + h : x;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = tail(h - i);
    const __m512 va = _mm512_maskz_loadu_ps(m, a + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), va));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_div_ps(va, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

// rint + saturation to int8, as the reference's sat8 (NaN -> 0).
inline void store_q8(int8_t* q, __mmask16 m, __m512 v) {
  v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f));
  v = _mm512_mask_mov_ps(v, nan, _mm512_setzero_ps());
  _mm_mask_storeu_epi8(q, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
}

float quant_row_dynamic_avx512(const float* y, int64_t h, const float* smooth, int8_t* q) {
  __m512 amax = _mm512_setzero_ps();
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = tail(h - i);
    __m512 v = _mm512_maskz_loadu_ps(m, y + i);
    if (smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, smooth + i));
    amax = _mm512_max_ps(_mm512_abs_ps(v), amax);  // a NaN (first operand) is dropped, as std::max(amax, NaN)
  }
  const float scale = _mm512_reduce_max_ps(amax) * (1.0f / 127.0f);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = tail(h - i);
    if (scale == 0.0f) {
      _mm_mask_storeu_epi8(q + i, m, _mm_setzero_si128());
      continue;
    }
    __m512 v = _mm512_maskz_loadu_ps(m, y + i);
    if (smooth) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, smooth + i));
    store_q8(q + i, m, _mm512_div_ps(v, vs));
  }
  return scale;
}

void quant_row_static_avx512(const float* y, int64_t h, const float* scale, const float* zp, bool div_mode, int8_t* q) {
  for (int64_t i = 0; i < h; i += 16) {
    const __mmask16 m = tail(h - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, y + i), s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, scale + i);
    __m512 r = div_mode ? _mm512_div_ps(v, s) : _mm512_mul_ps(v, s);
    if (zp) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, zp + i));
    store_q8(q + i, m, r);
  }
}

}  // namespace

const MoeRowKernels& moe_row_kernels_avx512() {
  static const MoeRowKernels k{rms_norm_row_avx512, swiglu_row_avx512, quant_row_dynamic_avx512,
                               quant_row_static_avx512};
  return k;
}

}  // namespace qdev::kernels
