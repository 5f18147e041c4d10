// AVX-512 decode attention: the ref's loops with 16-wide loads/FMAs over head_dim, a vector exp,
// and K/V rows loaded once per task for all of its rows (the GQA group's queries).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/qd_common.h"
#include "qd_decode_attention.h"

namespace qdev::kernels {

namespace {

inline __mmask16 tail(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }

inline __m512 load16(FloatType t, const void* base, int64_t at, __mmask16 m) {
  switch (t) {
    case FloatType::kBF16: {
      const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + at);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case FloatType::kF16:
      return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(base) + at));
    default: return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + at);
  }
}

// exp(x) for x <= 0 (softmax after the max is subtracted): 2^n * p(r), r = x - n ln2, |r| <= ln2/2.
inline __m512 exp_nonpos(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace

void decode_attention_avx512(const DecodeAttnArgs& a, int64_t task_begin, int64_t task_end, float* scratch) {
  const int64_t grp = a.q_heads / a.kv_heads, rows = grp * a.q_len, D = a.head_dim, Dv = a.v_dim, S = a.kv_len;
  const int64_t Dp = round_up(D, 16), Dvp = round_up(Dv, 16);
  // scratch (decode_attention_scratch_floats): scores rows x S | q rows x Dp | acc rows x Dvp
  float* scores = scratch;
  float* qf = scores + rows * S;
  float* acc = qf + rows * Dp;
  const float minus_inf = -INFINITY;
  for (int64_t t = task_begin; t < task_end; ++t) {
    const int64_t b = t / a.kv_heads, g = t % a.kv_heads;
    const int64_t kb = b * a.k_sb + g * a.k_sh, vb = b * a.v_sb + g * a.v_sh;
    const __m512 vscale = _mm512_set1_ps(a.scale);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = g * grp + r / a.q_len, l = r % a.q_len;
      const int64_t qb = b * a.q_sb + h * a.q_sh + l * a.q_sl;
      for (int64_t d = 0; d < Dp; d += 16) {
        _mm512_storeu_ps(qf + r * Dp + d, _mm512_mul_ps(load16(a.type, a.q, qb + d, tail(D - d)), vscale));
      }
    }
    // Scores; -inf where masked (K row not read when every row masks it).
    for (int64_t j = 0; j < S; ++j) {
      bool any = false;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t h = g * grp + r / a.q_len, l = r % a.q_len;
        const int64_t mb = b * a.m_sb + h * a.m_sh + l * a.m_sl + j;
        float add = 0.0f;
        bool ok = !(a.causal && j > l);
        if (ok && a.mask_kind == AttnMask::kBool) ok = static_cast<const uint8_t*>(a.mask)[mb] != 0;
        if (ok && a.mask_kind == AttnMask::kF32) {
          add = static_cast<const float*>(a.mask)[mb];
          ok = add != minus_inf;
        }
        scores[r * S + j] = ok ? add : minus_inf;
        any |= ok;
      }
      if (!any) continue;
      const int64_t kr = kb + j * a.k_ss;
      if (D <= 128) {  // the K row in registers, each row's dot from them
        __m512 kv[8];
        const int64_t nc = Dp / 16;
        for (int64_t c = 0; c < nc; ++c) kv[c] = load16(a.type, a.k, kr + 16 * c, tail(D - 16 * c));
        for (int64_t r = 0; r < rows; ++r) {
          float& s = scores[r * S + j];
          if (s == minus_inf) continue;
          __m512 dot = _mm512_mul_ps(_mm512_loadu_ps(qf + r * Dp), kv[0]);
          for (int64_t c = 1; c < nc; ++c) dot = _mm512_fmadd_ps(_mm512_loadu_ps(qf + r * Dp + 16 * c), kv[c], dot);
          s += _mm512_reduce_add_ps(dot);
        }
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          float& s = scores[r * S + j];
          if (s == minus_inf) continue;
          __m512 dot = _mm512_setzero_ps();
          for (int64_t d = 0; d < Dp; d += 16) {
            dot = _mm512_fmadd_ps(_mm512_loadu_ps(qf + r * Dp + d), load16(a.type, a.k, kr + d, tail(D - d)), dot);
          }
          s += _mm512_reduce_add_ps(dot);
        }
      }
    }
    // Softmax numerators in place (masked -> exactly 0); row sums.
    float inv[256];
    float* invp = rows <= 256 ? inv : nullptr;
    std::vector<float> inv_big;
    if (!invp) {
      inv_big.resize(static_cast<size_t>(rows));
      invp = inv_big.data();
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* s = scores + r * S;
      __m512 vmx = _mm512_set1_ps(minus_inf);
      for (int64_t j = 0; j < S; j += 16) vmx = _mm512_max_ps(vmx, _mm512_mask_loadu_ps(vmx, tail(S - j), s + j));
      const float mx = _mm512_reduce_max_ps(vmx);
      float* lse = nullptr;
      if (a.lse) {
        const int64_t h = g * grp + r / a.q_len, l = r % a.q_len;
        lse = a.lse + b * a.l_sb + h * a.l_sh + l * a.l_sl;
      }
      if (mx == minus_inf) {
        std::fill(s, s + S, 0.0f);
        invp[r] = 0.0f;
        if (lse) *lse = minus_inf;
        continue;
      }
      const __m512 m = _mm512_set1_ps(mx);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < S; j += 16) {
        const __mmask16 tm = tail(S - j);
        const __m512 x = _mm512_maskz_loadu_ps(tm, s + j);
        const __mmask16 live = _mm512_mask_cmp_ps_mask(tm, x, _mm512_set1_ps(minus_inf), _CMP_NEQ_UQ);
        const __m512 e = _mm512_maskz_mov_ps(live, exp_nonpos(_mm512_sub_ps(x, m)));
        _mm512_mask_storeu_ps(s + j, tm, e);
        sum = _mm512_add_ps(sum, e);
      }
      const float total = _mm512_reduce_add_ps(sum);
      invp[r] = 1.0f / total;
      if (lse) *lse = mx + std::log(total);
    }
    // acc = P V, each V row loaded once for every row that weights it.
    std::fill(acc, acc + rows * Dvp, 0.0f);
    for (int64_t j = 0; j < S; ++j) {
      bool any = false;
      for (int64_t r = 0; r < rows && !any; ++r) any = scores[r * S + j] != 0.0f;
      if (!any) continue;
      const int64_t vr = vb + j * a.v_ss;
      for (int64_t c = 0; c < Dvp; c += 16) {
        const __m512 vv = load16(a.type, a.v, vr + c, tail(Dv - c));
        for (int64_t r = 0; r < rows; ++r) {
          const float p = scores[r * S + j];
          if (p == 0.0f) continue;
          float* ap = acc + r * Dvp + c;
          _mm512_storeu_ps(ap, _mm512_fmadd_ps(_mm512_set1_ps(p), vv, _mm512_loadu_ps(ap)));
        }
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = g * grp + r / a.q_len, l = r % a.q_len;
      const int64_t ob = b * a.o_sb + h * a.o_sh + l * a.o_sl;
      const float* ap = acc + r * Dvp;
      const float f = invp[r];
      switch (a.type) {
        case FloatType::kF32:
          for (int64_t e = 0; e < Dv; ++e) static_cast<float*>(a.out)[ob + e] = ap[e] * f;
          break;
        case FloatType::kBF16:
          for (int64_t e = 0; e < Dv; ++e) static_cast<uint16_t*>(a.out)[ob + e] = f32_to_bf16_rne(ap[e] * f);
          break;
        case FloatType::kF16:
          for (int64_t e = 0; e < Dv; ++e) static_cast<uint16_t*>(a.out)[ob + e] = f32_to_f16_rne(ap[e] * f);
          break;
      }
    }
  }
}

}  // namespace qdev::kernels
