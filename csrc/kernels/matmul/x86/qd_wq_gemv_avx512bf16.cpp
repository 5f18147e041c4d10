// AVX-512 BF16 weight-only GEMV for bf16 activations (the avx512vnni variant's
// path on CPUs with AVX512_BF16, e.g. Zen 4, Sapphire Rapids).
//
// int8:
// The same W' as every variant, rnd_bf16(rnd_bf16(w + offset) * scale): the
// product rounds with vcvtne2ps2bf16 (round to nearest even, like the integer
// rounding of the plain AVX-512 file) and feeds vdpbf16ps with the activations,
// which are bf16 values already: 32 k per instruction pair instead of two
// integer roundings and two FMAs per 16 k, which bounded the plain kernel at
// ~17 GB/s of weights. The sums are fp32 (bf16 products are exact in fp32) in a
// different order than the plain kernel's: results agree to fp32 rounding, not bit for bit.
// The BF16 instructions treat subnormals as zero: a W' or product below 2^-126
// (bf16 activations or scales that small) is flushed where the reference keeps it.
//
// int4: the 16 values W' of a (group, column) are a bf16 table, duplicated to 32
// entries so that vpermw (which reads 5 index bits) can take a whole byte as the
// index of its low nibble; the byte shifted by 4 indexes its high nibble. So 64 k
// (32 bytes) cost one widening, one shift, two vpermw and two vdpbf16ps against
// the activations split once into even and odd k.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512BF16__)
#error "compile with -mavx512f -mavx512bw -mavx512vl -mavx512bf16"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../../common/qd_common.h"
#include "../qd_wq_gemv.h"
#include "../qd_wq_gemv_blocking.h"
#include "qd_wq_avx512_common.h"

namespace qdev::kernels {
namespace {

// 16 int8 weights from w + kk as fp32, (w + offset) rounded when there is an offset.
template <bool kOffset>
inline __m512 widen(const int8_t* w, int64_t kk, __mmask16 m, __m512 offset) {
  const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, w + kk)));
  return kOffset ? round_bf16(_mm512_add_ps(v, offset)) : v;
}

// C columns x up to R rows; per step 32 k: lanes hold k pairs (2i, 2i+1).
template <bool kOffset, int R, int C>
void tile(const WqGemvArgs& a, int64_t j0, int64_t r0, int rows) {
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
    __m512 scale[C], offset[C];
    for (int c = 0; c < C; ++c) {
      scale[c] = _mm512_set1_ps(a.scale[gi * a.n + j0 + c]);
      offset[c] = kOffset ? _mm512_set1_ps(a.offset[gi * a.n + j0 + c]) : _mm512_setzero_ps();
    }
    for (int64_t kk = k0; kk < k1; kk += 32) {
      const __mmask16 m0 = lanes(k1 - kk), m1 = lanes(k1 - kk - 16);
      if ((kk & 63) == 0) {  // the next tile's columns start streaming while these compute
        for (int c = 0; c < C; ++c) _mm_prefetch(reinterpret_cast<const char*>(wp[c] + C * a.ldw + kk), _MM_HINT_T0);
      }
      __m512bh w[C];
      for (int c = 0; c < C; ++c) {
        const __m512 lo = _mm512_mul_ps(widen<kOffset>(wp[c], kk, m0, offset[c]), scale[c]);
        const __m512 hi = _mm512_mul_ps(widen<kOffset>(wp[c], kk + 16, m1, offset[c]), scale[c]);
        w[c] = _mm512_cvtne2ps_pbh(hi, lo);  // element i = k kk + i: lo fills the low half
      }
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const float* xr = x0 + r * a.ldx + kk;
        const __m512bh xv = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, xr + 16), _mm512_maskz_loadu_ps(m0, xr));
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, w[c]);
      }
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) a.y[(r0 + r) * a.ldy + j0 + c] = _mm512_reduce_add_ps(acc[r][c]);
}

template <bool kOffset>
void columns(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  wq_gemv_blocks(a.m, n_begin, n_end, [&](auto rows_t, auto cols_t, int64_t j, int64_t r0, int rows) {
    tile<kOffset, decltype(rows_t)::value, decltype(cols_t)::value>(a, j, r0, rows);
  });
}

// --- int4 ---

inline uint16_t bf16_bits(float v) {  // v is a bf16 value already: truncation is exact
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>(u >> 16);
}

// The W' table of (group g, column j) as 32 bf16: entry e holds W' of nibble e & 15,
// with the plain kernel's arithmetic (qd_wq_dequant.h): (w + offset), * scale, each
// rounded. Vector code: with groups of 128 k a table per group and column is as much
// work as the products it serves, and a scalar build took longer than them.
inline __m512i int4_table_bf16(const WqGemvArgs& a, int64_t j, int64_t g) {
  __m512 w = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);  // nibble e -> (e ^ 8) - 8
  if (a.offset) w = round_bf16(_mm512_add_ps(w, _mm512_set1_ps(a.offset[g * a.n + j])));
  // vcvtneps2bf16 rounds to nearest even as round_bf16 does (one instruction for its five)
  const __m256i t = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_mul_ps(w, _mm512_set1_ps(a.scale[g * a.n + j]))));
  return _mm512_inserti64x4(_mm512_castsi256_si512(t), t, 1);
}

// Activation rows split per step of S k into [even k: S/2][odd k: S/2] bf16 (zero past k).
void split_rows(const WqGemvArgs& a, int64_t step, std::vector<uint16_t>& out) {
  const int64_t steps = (a.k + step - 1) / step;
  out.assign(static_cast<size_t>(a.m * steps * step), 0);
  for (int64_t r = 0; r < a.m; ++r) {
    uint16_t* row = out.data() + r * steps * step;
    for (int64_t kk = 0; kk < a.k; ++kk) {
      const int64_t s = kk / step, i = kk % step;
      row[s * step + (i & 1) * (step / 2) + i / 2] = bf16_bits(a.x[r * a.ldx + kk]);
    }
  }
}

template <int R, int C>
void tile_int4(const WqGemvArgs& a, const uint16_t* xs, int64_t step, int64_t j0, int64_t r0, int rows) {
  const bool channelwise = a.group == a.k;
  const int64_t steps = (a.k + step - 1) / step, half = step / 2;
  const __mmask32 xmask = step == 64 ? ~__mmask32{0} : static_cast<__mmask32>(0xFFFF);
  const int8_t* wp[C];
  for (int c = 0; c < C; ++c) wp[c] = a.w + (j0 + c) * a.ldw;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  __m512i table[C];
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t kk = s * step;
    if (kk == 0 || (!channelwise && kk % a.group == 0)) {
      for (int c = 0; c < C; ++c) table[c] = int4_table_bf16(a, j0 + c, channelwise ? 0 : kk / a.group);
    }
    if ((kk & 127) == 0) {  // the next tile's columns start streaming while these compute
      for (int c = 0; c < C; ++c) _mm_prefetch(reinterpret_cast<const char*>(wp[c] + C * a.ldw + kk / 2), _MM_HINT_T0);
    }
    const int64_t left = std::min(step, a.k - kk);
    const __mmask32 bytes = left >= 64 ? ~__mmask32{0} : static_cast<__mmask32>((1ull << ((left + 1) / 2)) - 1);
    __m512bh we[C], wo[C];
    for (int c = 0; c < C; ++c) {
      const __m512i idx = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(bytes, wp[c] + kk / 2));
      we[c] = reinterpret_cast<__m512bh>(_mm512_permutexvar_epi16(idx, table[c]));
      wo[c] = reinterpret_cast<__m512bh>(_mm512_permutexvar_epi16(_mm512_srli_epi16(idx, 4), table[c]));
    }
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const uint16_t* xr = xs + (r0 + r) * steps * step + s * step;
      const __m512bh xe = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(xmask, xr));
      const __m512bh xo = reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(xmask, xr + half));
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[r][c], xe, we[c]), xo, wo[c]);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < C; ++c) a.y[(r0 + r) * a.ldy + j0 + c] = _mm512_reduce_add_ps(acc[r][c]);
}

void columns_int4(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  // Steps never straddle groups: 64 k, or 32 where groups are 32 k long.
  const int64_t step = (a.group == a.k || a.group % 64 == 0) ? 64 : 32;
  thread_local std::vector<uint16_t> xs;
  split_rows(a, step, xs);
  wq_gemv_blocks(a.m, n_begin, n_end, [&](auto rows_t, auto cols_t, int64_t j, int64_t r0, int rows) {
    tile_int4<decltype(rows_t)::value, decltype(cols_t)::value>(a, xs.data(), step, j, r0, rows);
  });
}

}  // namespace

bool wq_gemv_avx512bf16_takes(const WqGemvArgs& a) {
  return a.bf16 && (!a.int4 || a.group == a.k || a.group % 32 == 0);
}

void wq_gemv_avx512bf16(const WqGemvArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.int4) return columns_int4(a, n_begin, n_end);
  if (a.offset) return columns<true>(a, n_begin, n_end);
  columns<false>(a, n_begin, n_end);
}

}  // namespace qdev::kernels
