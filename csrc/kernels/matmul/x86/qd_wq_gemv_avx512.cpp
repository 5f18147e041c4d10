// AVX-512 weight-only GEMV: each column's int8 (or int4) weights stream once; 16 k
// per step are dequantized with the activation dtype's roundings (vcvtps2ph /
// integer bf16 rounding) and multiplied with up to 4 activation rows. The same
// dequantization writes W' rows for the prefill path's dense GEMM.
#if !defined(__AVX512F__) || !defined(__AVX512BW__)
#error "compile with -mavx512f -mavx512bw -mavx512vl"
#endif

#include <immintrin.h>

#include <algorithm>

#include "../qd_wq_gemv.h"
#include "../qd_wq_gemv_blocking.h"
#include "qd_wq_avx512_common.h"

namespace qdev::kernels {
namespace {

// int4: the 16 dequantized values of one (group, column) fit one register, so each weight is a
// table lookup (vpermps uses the low 4 bits of each index lane) instead of convert + 2 roundings.
inline __m512 int4_table(const WqGemvArgs& a, int64_t j, int64_t g) {
  __m512 w = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);  // nibble c -> (c ^ 8) - 8
  if (a.offset) w = round_to(_mm512_add_ps(w, _mm512_set1_ps(a.offset[g * a.n + j])), a.bf16);
  return round_to(_mm512_mul_ps(w, _mm512_set1_ps(a.scale[g * a.n + j])), a.bf16);
}

// Lane i's low 4 bits = nibble of k = kk + i (bytes hold two k, the even one low); higher bits are junk.
inline __m512i int4_indices(const int8_t* wj, int64_t kk, int64_t left) {
  const __mmask16 bytes = static_cast<__mmask16>(left >= 16 ? 0xFF : (1u << ((left + 1) / 2)) - 1);
  const __m128i packed = _mm_maskz_loadu_epi8(bytes, wj + kk / 2);
  return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(packed, _mm_srli_epi16(packed, 4)));
}

inline __m512 dequant_int8(const WqGemvArgs& a, const int8_t* wj, int64_t j, int64_t kk, __mmask16 m, int64_t g) {
  __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, wj + kk)));
  if (a.offset) w = round_to(_mm512_add_ps(w, _mm512_set1_ps(a.offset[g * a.n + j])), a.bf16);
  return round_to(_mm512_mul_ps(w, _mm512_set1_ps(a.scale[g * a.n + j])), a.bf16);
}

// One tile (blocking: qd_wq_gemv_blocking.h): C columns x up to R activation rows. Each dequantized 16-k vector is
// reused by every row; each x vector by every column. Per (row, column) the summation order is
// fixed: 16 lanes over k in order, then one horizontal sum. The dtype and the offset are template
// parameters and each column's pointer, scale and offset are hoisted out of the k loop: with them
// as run-time tests in the loop GCC spilled every dequantized vector and ran at half the speed.
template <bool kInt4, bool kBf16, bool kOffset, int R, int C>
void gemv_tile(const WqGemvArgs& a, int64_t j0, int64_t r0, int rows) {
  const bool channelwise = a.group == a.k;
  const float* x0 = a.x + r0 * a.ldx;
  const int8_t* wp[C];
  for (int c = 0; c < C; ++c) wp[c] = a.w + (j0 + c) * a.ldw;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k0 = 0, g = 0; k0 < a.k; k0 += a.group, ++g) {
    const int64_t k1 = std::min(a.k, k0 + a.group);
    const int64_t gi = channelwise ? 0 : g;
    __m512 table[C], scale[C], offset[C];
    for (int c = 0; c < C; ++c) {
      if constexpr (kInt4) {
        table[c] = int4_table(a, j0 + c, gi);
      } else {
        scale[c] = _mm512_set1_ps(a.scale[gi * a.n + j0 + c]);
        offset[c] = kOffset ? _mm512_set1_ps(a.offset[gi * a.n + j0 + c]) : _mm512_setzero_ps();
      }
    }
    for (int64_t kk = k0; kk < k1; kk += 16) {
      const int64_t left = std::min<int64_t>(16, k1 - kk);
      const __mmask16 m = lanes(left);
      // The next tile's columns start streaming while these compute (one line per column per 64 bytes).
      if ((kk & (kInt4 ? 127 : 63)) == 0) {
        const int64_t at = kInt4 ? kk / 2 : kk;
        for (int c = 0; c < C; ++c) _mm_prefetch(reinterpret_cast<const char*>(wp[c] + C * a.ldw + at), _MM_HINT_T0);
      }
      __m512 w[C];
      for (int c = 0; c < C; ++c) {
        if constexpr (kInt4) {
          w[c] = _mm512_maskz_permutexvar_ps(m, int4_indices(wp[c], kk, left), table[c]);
        } else {
          __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, wp[c] + kk)));
          if constexpr (kOffset) v = round_to(_mm512_add_ps(v, offset[c]), kBf16);
          w[c] = round_to(_mm512_mul_ps(v, scale[c]), kBf16);
        }
      }
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const __m512 xv = _mm512_maskz_loadu_ps(m, x0 + r * a.ldx + kk);
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, w[c], acc[r][c]);
      }
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) a.y[(r0 + r) * a.ldy + j0 + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <bool kInt4, bool kBf16, bool kOffset>
void gemv_columns(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  wq_gemv_blocks(a.m, n_begin, n_end, [&](auto rows_t, auto cols_t, int64_t j, int64_t r0, int rows) {
    gemv_tile<kInt4, kBf16, kOffset, decltype(rows_t)::value, decltype(cols_t)::value>(a, j, r0, rows);
  });
}

template <bool kInt4>
void gemv_dispatch(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  if (kInt4) {  // the int4 table already holds the offset and both roundings
    return a.bf16 ? gemv_columns<kInt4, true, false>(a, n_begin, n_end) : gemv_columns<kInt4, false, false>(a, n_begin, n_end);
  }
  if (a.bf16) {
    return a.offset ? gemv_columns<kInt4, true, true>(a, n_begin, n_end) : gemv_columns<kInt4, true, false>(a, n_begin, n_end);
  }
  return a.offset ? gemv_columns<kInt4, false, true>(a, n_begin, n_end) : gemv_columns<kInt4, false, false>(a, n_begin, n_end);
}

}  // namespace

void wq_gemv_avx512(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.int4) return gemv_dispatch<true>(a, n_begin, n_end);
  gemv_dispatch<false>(a, n_begin, n_end);
}

void wq_dequant_rows_avx512(const WqGemvArgs& a, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo) {
  const bool channelwise = a.group == a.k;
  for (int64_t j = n_begin; j < n_end; ++j) {
    const int8_t* wj = a.w + j * a.ldw;
    uint16_t* row = out + (j - n_begin) * ldo;
    __m512 table = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < a.k; kk += 16) {
      const int64_t left = std::min<int64_t>(16, a.k - kk);
      const __mmask16 m = lanes(left);
      const int64_t g = channelwise ? 0 : kk / a.group;  // groups are multiples of 32: 16 k share one
      if (a.int4 && (kk == 0 || (!channelwise && kk % a.group == 0))) table = int4_table(a, j, g);
      const __m512 w = a.int4 ? _mm512_maskz_permutexvar_ps(m, int4_indices(wj, kk, left), table)
                              : dequant_int8(a, wj, j, kk, m, g);
      // w holds exact fp16/bf16 values: truncating to the upper half (bf16) or vcvtps2ph is exact
      const __m256i bits = a.bf16 ? _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(w), 16))
                                  : _mm512_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_mask_storeu_epi16(row + kk, m, bits);
    }
  }
}

}  // namespace qdev::kernels
