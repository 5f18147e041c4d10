// AVX2 weight-only GEMV and W' dequantization: the AVX-512 kernel's plan on 8 lanes. Weights
// (int8, or int4 two per byte) are widened, offset and scaled with the activation dtype's
// roundings (F16C / integer bf16 rounding), then multiplied with up to 4 activation rows; the k
// tail that does not fill 8 lanes runs the same per-element arithmetic in scalar code.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "compile with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../qd_wq_dequant.h"

namespace qdev::kernels {
namespace {

inline __m256 round_bf16(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
  return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

inline __m256 round_to(__m256 f, bool bf16) {
  return bf16 ? round_bf16(f) : _mm256_cvtph_ps(_mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// 8 weights from k = kk (kk even for int4) as fp32.
inline __m256 load_w8(const WqGemvArgs& a, const int8_t* wj, int64_t kk) {
  if (!a.int4) {
    int64_t bytes;
    std::memcpy(&bytes, wj + kk, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bytes)));
  }
  int32_t word;
  std::memcpy(&word, wj + kk / 2, 4);
  const __m128i packed = _mm_cvtsi32_si128(word);
  const __m128i lo = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
  const __m128i eight = _mm_set1_epi8(8);
  const __m128i nib = _mm_sub_epi8(_mm_xor_si128(_mm_unpacklo_epi8(lo, hi), eight), eight);  // sign-extend
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(nib));
}

inline __m256 dequant8(const WqGemvArgs& a, const int8_t* wj, int64_t j, int64_t kk, int64_t g) {
  __m256 w = load_w8(a, wj, kk);
  if (a.offset) w = round_to(_mm256_add_ps(w, _mm256_set1_ps(a.offset[g * a.n + j])), a.bf16);
  return round_to(_mm256_mul_ps(w, _mm256_set1_ps(a.scale[g * a.n + j])), a.bf16);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// C columns x up to R rows: R * C independent accumulator chains.
template <int R, int C>
void gemv_tile(const WqGemvArgs& a, int64_t j0, int64_t r0, int rows) {
  const bool channelwise = a.group == a.k;
  const float* x0 = a.x + r0 * a.ldx;
  __m256 acc[R][C];
  float tail[R][C] = {};
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t k0 = 0, g = 0; k0 < a.k; k0 += a.group, ++g) {
    const int64_t k1 = std::min(a.k, k0 + a.group);
    const int64_t gi = channelwise ? 0 : g;
    int64_t kk = k0;
    for (; kk + 8 <= k1; kk += 8) {
      __m256 w[C];
      for (int c = 0; c < C; ++c) w[c] = dequant8(a, a.w + (j0 + c) * a.ldw, j0 + c, kk, gi);
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const __m256 xv = _mm256_loadu_ps(x0 + r * a.ldx + kk);
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, w[c], acc[r][c]);
      }
    }
    for (; kk < k1; ++kk) {
      for (int c = 0; c < C; ++c) {
        const float w = wq_dequant_at(a, j0 + c, kk);
        for (int r = 0; r < rows; ++r) tail[r][c] += x0[r * a.ldx + kk] * w;
      }
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) a.y[(r0 + r) * a.ldy + j0 + c] = hsum(acc[r][c]) + tail[r][c];
}

template <int R, int C>
void gemv_rows_block(const WqGemvArgs& a, int64_t n_begin, int64_t n_end, int64_t r0, int rows) {
  int64_t j = n_begin;
  for (; j + C <= n_end; j += C) gemv_tile<R, C>(a, j, r0, rows);
  for (; j < n_end; ++j) gemv_tile<R, 1>(a, j, r0, rows);
}

}  // namespace

void wq_gemv_avx2(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.m == 1) return gemv_rows_block<1, 4>(a, n_begin, n_end, 0, 1);
  for (int64_t r0 = 0; r0 < a.m; r0 += 4) {
    gemv_rows_block<4, 1>(a, n_begin, n_end, r0, static_cast<int>(std::min<int64_t>(4, a.m - r0)));
  }
}

void wq_dequant_rows_avx2(const WqGemvArgs& a, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo) {
  const bool channelwise = a.group == a.k;
  for (int64_t j = n_begin; j < n_end; ++j) {
    const int8_t* wj = a.w + j * a.ldw;
    uint16_t* row = out + (j - n_begin) * ldo;
    int64_t kk = 0;
    for (; kk + 8 <= a.k; kk += 8) {
      const int64_t g = channelwise ? 0 : kk / a.group;  // groups are multiples of 32: 8 k share one
      const __m256 w = dequant8(a, wj, j, kk, g);
      // w holds exact fp16/bf16 values: the upper half (bf16) or vcvtps2ph is exact
      const __m128i bits = a.bf16 ? _mm_packus_epi32(_mm256_castsi256_si128(_mm256_srli_epi32(_mm256_castps_si256(w), 16)),
                                                     _mm256_extracti128_si256(_mm256_srli_epi32(_mm256_castps_si256(w), 16), 1))
                                  : _mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + kk), bits);
    }
    for (; kk < a.k; ++kk) {
      const float w = wq_dequant_at(a, j, kk);
      row[kk] = a.bf16 ? f32_to_bf16_rne(w) : f32_to_f16_rne(w);
    }
  }
}

}  // namespace qdev::kernels
