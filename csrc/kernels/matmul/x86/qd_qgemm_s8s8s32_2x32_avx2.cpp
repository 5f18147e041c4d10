// AVX2 micro-kernel: 2 rows x 32 columns of int32 per tile, exact.
//
// AVX2 has no VNNI, and vpmaddubsw saturates u8*s8 pair sums, so B is widened
// to int16 and multiplied with vpmaddwd (exact int32 pair sums). A 16-byte
// slice of a fractal row holds 4 columns x 4 k; after vpmaddwd each column
// owns two adjacent lanes, which vphaddd folds. The lane order that leaves
// (n0 n1 n4 n5 | n2 n3 n6 n7) is undone once, when the tile is stored.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "compile with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../qd_qgemm.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 2;
constexpr int kMrSign = 2;

inline int64_t load_i64(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// 4 bytes of A (u8) -> (a0 a1 a2 a3) as int16, repeated 4 times.
inline __m256i broadcast_a(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m128i bytes = _mm_cvtsi32_si128(v);
  const __m128i words = _mm_cvtepu8_epi16(bytes);  // a0..a3 in the low 64 bits
  return _mm256_broadcastq_epi64(words);
}

template <int MR>
void tile_dot(const QGemmArgs& args, const uint8_t* a, const int8_t* panel, const int32_t* colsum,
              int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  __m256i acc[MR][4];  // [row][8-column group], lanes in hadd order
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_si256();
  }
  for (int64_t f = 0; f < k_blocks; ++f) {
    const int8_t* frac = panel + f * kNzFractalBytes;
    for (int g = 0; g < 4; ++g) {
      __m256i av[MR];
      for (int r = 0; r < MR; ++r) av[r] = broadcast_a(a + r * args.lda + f * kNzRows + g * 4);
      for (int h = 0; h < 2; ++h) {
        const int8_t* row = frac + g * 128 + h * 64;
        const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row)));
        const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16)));
        const __m256i b2 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 32)));
        const __m256i b3 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 48)));
        for (int r = 0; r < MR; ++r) {
          const __m256i lo = _mm256_hadd_epi32(_mm256_madd_epi16(b0, av[r]), _mm256_madd_epi16(b1, av[r]));
          const __m256i hi = _mm256_hadd_epi32(_mm256_madd_epi16(b2, av[r]), _mm256_madd_epi16(b3, av[r]));
          acc[r][h * 2] = _mm256_add_epi32(acc[r][h * 2], lo);
          acc[r][h * 2 + 1] = _mm256_add_epi32(acc[r][h * 2 + 1], hi);
        }
      }
    }
  }
  const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) {
      const __m256i sums = _mm256_permutevar8x32_epi32(acc[r][q], order);
      const __m256i corr = _mm256_slli_epi32(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(colsum + q * 8)), 7);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kNzCols + q * 8),
                          _mm256_sub_epi32(sums, corr));
    }
  }
}

// The fast path when B holds no -128: vpmaddubsw(|a|, sign(b, a)) multiplies
// exactly (|a| <= 128, |b| <= 127, so a pair sum stays within int16), and
// A's sign moves onto B instead of the +128 shift, so no column-sum correction.
// One 32-byte slice of a fractal row is 8 columns x 4 k: after vpmaddwd with
// ones, lane n holds the 4-k dot product of column n, in column order.
template <int MR>
void tile_dot_sign(const QGemmArgs& args, const uint8_t* a, const int8_t* panel, int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_si256();
  }
  for (int64_t t = 0; t < k_blocks * 4; ++t) {
    const int8_t* row = panel + t * 128;
    const __m256i b[4] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 64)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 96))};
    for (int r = 0; r < MR; ++r) {
      int32_t v;
      std::memcpy(&v, a + r * args.lda + t * 4, 4);
      const __m256i as = _mm256_xor_si256(_mm256_set1_epi32(v), flip);  // back to signed a
      const __m256i aa = _mm256_abs_epi8(as);
      for (int q = 0; q < 4; ++q) {
        const __m256i prod = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b[q], as));
        acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(prod, ones));
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(tile + r * kNzCols + q * 8), acc[r][q]);
    }
  }
}

__m256i bf16_rne(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(r, quiet, nan);
}

// Full 8-column groups go through SIMD; the column tail uses the reference stage.
void epilogue(const QGemmArgs& args, const int32_t* tile, int64_t r0, int rows, int64_t c0,
              int64_t cols) {
  const QGemmEpilogue& ep = args.ep;
  const int64_t full = cols / 8 * 8;
  for (int r = 0; r < rows; ++r) {
    const int64_t row = r0 + r;
    for (int64_t h = 0; h < full; h += 8) {
      const int64_t j = c0 + h;
      __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + r * kNzCols + h));
      if (ep.bias_i32) v = _mm256_add_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ep.bias_i32 + j)));
      const int64_t at = row * args.ldc + j;
      if (ep.out == QGemmOut::kInt32) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<int32_t*>(args.c) + at), v);
        continue;
      }
      __m256 f = _mm256_cvtepi32_ps(v);
      if (ep.scale) {
        f = _mm256_mul_ps(f, ep.scale_stride ? _mm256_loadu_ps(ep.scale + j) : _mm256_set1_ps(ep.scale[0]));
      }
      if (ep.out == QGemmOut::kInt8) {
        f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps(-256.0f)), _mm256_set1_ps(255.0f));
        __m256i q = _mm256_cvtps_epi32(f);
        if (ep.offset) {
          q = _mm256_add_epi32(q, ep.offset_stride
                                      ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ep.offset + j))
                                      : _mm256_set1_epi32(ep.offset[0]));
        }
        q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-128)), _mm256_set1_epi32(127));
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<int8_t*>(args.c) + at), _mm_packs_epi16(w, w));
        continue;
      }
      if (ep.pertoken) f = _mm256_mul_ps(f, _mm256_set1_ps(ep.pertoken[row]));
      if (ep.bias_f) f = _mm256_add_ps(f, _mm256_loadu_ps(ep.bias_f + j));
      if (ep.out == QGemmOut::kFloat32) {
        _mm256_storeu_ps(static_cast<float*>(args.c) + at, f);
      } else if (ep.out == QGemmOut::kFloat16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(args.c) + at),
                         _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      } else {
        const __m256i b = bf16_rne(f);
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(args.c) + at), packed);
      }
    }
  }
  if (full < cols) qgemm_epilogue_ref(args, tile + full, kNzCols, r0, rows, c0 + full, cols - full);
}

}  // namespace

void qgemm_panels_avx2(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  alignas(32) int32_t tile[(kMr > kMrSign ? kMr : kMrSign) * kNzCols];
  alignas(32) int32_t colsum[kNzCols];
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    const int8_t* panel = args.b + p * k_blocks * kNzFractalBytes;
    std::memset(colsum, 0, sizeof(colsum));
    std::memcpy(colsum, args.b_colsum + c0, static_cast<size_t>(cols) * sizeof(int32_t));
    int64_t r0 = 0;
    if (!args.b_has_min) {
      for (; r0 + kMrSign <= args.m; r0 += kMrSign) {
        tile_dot_sign<kMrSign>(args, args.a + r0 * args.lda, panel, tile);
        epilogue(args, tile, r0, kMrSign, c0, cols);
      }
      for (; r0 < args.m; ++r0) {
        tile_dot_sign<1>(args, args.a + r0 * args.lda, panel, tile);
        epilogue(args, tile, r0, 1, c0, cols);
      }
      continue;
    }
    for (; r0 + kMr <= args.m; r0 += kMr) {
      tile_dot<kMr>(args, args.a + r0 * args.lda, panel, colsum, tile);
      epilogue(args, tile, r0, kMr, c0, cols);
    }
    if (r0 < args.m) {
      tile_dot<1>(args, args.a + r0 * args.lda, panel, colsum, tile);
      epilogue(args, tile, r0, 1, c0, cols);
    }
  }
}

}  // namespace qdev::kernels
