// AVX-512 VNNI A4W4 micro-kernel: up to 8 rows x 32 columns, weights widened
// from nibbles in registers (32 bytes -> one 64-byte u8 operand: zero-extend
// to words, keep the low nibble in the low byte and move the high nibble into
// the high byte). A is the s8 operand, so its broadcast folds into vpdpbusd.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VNNI__)
#error "compile with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../qd_qgemm_s4.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 8;

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __m512i widen_nibbles(const uint8_t* p) {
  const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  const __m512i lo = _mm512_and_si512(w, _mm512_set1_epi16(0x000F));
  const __m512i hi = _mm512_and_si512(_mm512_slli_epi16(w, 4), _mm512_set1_epi16(0x0F00));
  return _mm512_or_si512(lo, hi);
}

template <int MR>
void tile_dot(const QGemmS4Args& args, int64_t r0, const uint8_t* panel, int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  __m512i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  const int8_t* a = args.a + r0 * args.lda;
  for (int64_t t = 0; t < k_blocks * 4; ++t) {  // one 4-k group per step
    const __m512i b0 = widen_nibbles(panel + t * 64);
    const __m512i b1 = widen_nibbles(panel + t * 64 + 32);
    for (int r = 0; r < MR; ++r) {
      const __m512i av = _mm512_set1_epi32(load_i32(a + r * args.lda + t * 4));
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, av);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, av);
    }
  }
  for (int r = 0; r < MR; ++r) {
    const __m512i corr = _mm512_set1_epi32(8 * args.a_rowsum[r0 + r]);
    _mm512_storeu_si512(tile + r * kNzCols, _mm512_sub_epi32(acc[r][0], corr));
    _mm512_storeu_si512(tile + r * kNzCols + 16, _mm512_sub_epi32(acc[r][1], corr));
  }
}

}  // namespace

void qgemm4_panels_avx512vnni(const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end) {
  alignas(64) int32_t tile[kMr * kNzCols];
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  QGemmArgs out;
  out.c = args.c;
  out.ldc = args.ldc;
  out.ep = args.ep;
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    const uint8_t* panel = args.b + p * k_blocks * kNz4FractalBytes;
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) {
      tile_dot<kMr>(args, r0, panel, tile);
      qgemm_epilogue_avx512vnni(out, tile, kNzCols, r0, kMr, c0, cols);
    }
    const int rest = static_cast<int>(args.m - r0);
    switch (rest) {
      case 7: tile_dot<7>(args, r0, panel, tile); break;
      case 6: tile_dot<6>(args, r0, panel, tile); break;
      case 5: tile_dot<5>(args, r0, panel, tile); break;
      case 4: tile_dot<4>(args, r0, panel, tile); break;
      case 3: tile_dot<3>(args, r0, panel, tile); break;
      case 2: tile_dot<2>(args, r0, panel, tile); break;
      case 1: tile_dot<1>(args, r0, panel, tile); break;
      default: break;
    }
    if (rest > 0) qgemm_epilogue_avx512vnni(out, tile, kNzCols, r0, rest, c0, cols);
  }
}

}  // namespace qdev::kernels
