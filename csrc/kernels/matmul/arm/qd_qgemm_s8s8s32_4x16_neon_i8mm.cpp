// aarch64 NEON i8mm micro-kernel for the int8 GEMM (prefill): 4 rows x 16 columns.
//
// `smmla vd.4s, va.16b, vb.16b` multiplies a 2x8 int8 tile of A (two rows, 8 k)
// by an 8x2 tile of B (8 k, two columns) into a 2x2 int32 tile: twice the MACs
// of `sdot` per instruction when two rows share the B operand. The B operand
// is built from the existing NZ-VNNI layout without repacking: the 16-byte runs
// of k groups g and g + 1 hold the same 4 columns with k 4g..4g+3 and
// 4g+4..4g+7, so `zip1`/`zip2` on 32-bit lanes give columns (0, 1) and (2, 3)
// with 8 consecutive k each. The two rows of an A operand are `zip1`/`zip2` on
// 64-bit lanes of the two rows' 16 k.
//
// 2 row pairs x 8 column pairs = 16 accumulators per 16-column half panel.
// Single-row calls go to the sdot kernel (an smmla tile would waste half its
// MACs); an odd last row pairs with a copy of itself whose results are dropped.
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "compile with -march=armv8.2-a+dotprod+i8mm"
#endif

#include <arm_neon.h>

#include <algorithm>

#include "../../common/qd_common.h"
#include "../qd_qgemm.h"
#include "qd_qgemm_neon_epilogue.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 4;
constexpr int kHalfCols = 16;

// Rows [r0, r0 + 2 * PAIRS) (row indices past the end repeat the last row) x the
// 16 columns of half `half` of a panel -> tile (row stride kNzCols, at column half * 16).
template <int PAIRS>
void tile_smmla(const QGemmArgs& args, const uint8_t* const* rows, const int8_t* panel, int half,
                int32_t* tile) {
  const int64_t k_blocks = div_up(args.k, kNzRows);
  const uint8x16_t top_bit = vdupq_n_u8(0x80);
  int32x4_t acc[PAIRS][8];  // [row pair][column pair]: {r0 c0, r0 c1, r1 c0, r1 c1}
  for (int p = 0; p < PAIRS; ++p) {
    for (int j = 0; j < 8; ++j) acc[p][j] = vdupq_n_s32(0);
  }
  for (int64_t f = 0; f < k_blocks; ++f) {
    const int8_t* frac = panel + f * kNzFractalBytes + half * 64;
    int8x16_t a_lo[PAIRS], a_hi[PAIRS];  // k 0..7 and k 8..15 of both rows of a pair
    for (int p = 0; p < PAIRS; ++p) {
      const int64x2_t x0 =
          vreinterpretq_s64_u8(veorq_u8(vld1q_u8(rows[2 * p] + f * kNzRows), top_bit));
      const int64x2_t x1 =
          vreinterpretq_s64_u8(veorq_u8(vld1q_u8(rows[2 * p + 1] + f * kNzRows), top_bit));
      a_lo[p] = vreinterpretq_s8_s64(vzip1q_s64(x0, x1));
      a_hi[p] = vreinterpretq_s8_s64(vzip2q_s64(x0, x1));
    }
    for (int s = 0; s < 2; ++s) {  // 8 k per step: k groups 2s and 2s + 1
      for (int q = 0; q < 4; ++q) {  // columns 4q .. 4q + 3 of the half
        const int32x4_t g0 = vreinterpretq_s32_s8(vld1q_s8(frac + (2 * s) * 128 + q * 16));
        const int32x4_t g1 = vreinterpretq_s32_s8(vld1q_s8(frac + (2 * s + 1) * 128 + q * 16));
        const int8x16_t b01 = vreinterpretq_s8_s32(vzip1q_s32(g0, g1));
        const int8x16_t b23 = vreinterpretq_s8_s32(vzip2q_s32(g0, g1));
        for (int p = 0; p < PAIRS; ++p) {
          const int8x16_t a = s == 0 ? a_lo[p] : a_hi[p];
          acc[p][2 * q] = vmmlaq_s32(acc[p][2 * q], a, b01);
          acc[p][2 * q + 1] = vmmlaq_s32(acc[p][2 * q + 1], a, b23);
        }
      }
    }
  }
  for (int p = 0; p < PAIRS; ++p) {
    int32_t* top = tile + (2 * p) * kNzCols + half * kHalfCols;
    int32_t* bottom = top + kNzCols;
    for (int q = 0; q < 4; ++q) {
      const int64x2_t c01 = vreinterpretq_s64_s32(acc[p][2 * q]);
      const int64x2_t c23 = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
      vst1q_s32(top + q * 4, vreinterpretq_s32_s64(vzip1q_s64(c01, c23)));
      vst1q_s32(bottom + q * 4, vreinterpretq_s32_s64(vzip2q_s64(c01, c23)));
    }
  }
}

template <int PAIRS>
void row_tile(const QGemmArgs& args, int64_t r0, int64_t rows_valid, const int8_t* panel, int64_t c0,
              int64_t cols, int32_t* tile) {
  const uint8_t* rows[2 * PAIRS];
  for (int i = 0; i < 2 * PAIRS; ++i) rows[i] = args.a + (r0 + std::min<int64_t>(i, rows_valid - 1)) * args.lda;
  tile_smmla<PAIRS>(args, rows, panel, 0, tile);
  if (cols > kHalfCols) tile_smmla<PAIRS>(args, rows, panel, 1, tile);
  qgemm_epilogue_neon(args, tile, kNzCols, r0, rows_valid, c0, cols);
}

}  // namespace

void qgemm_panels_neon_i8mm(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  if (args.m < 2) return qgemm_panels_neon_dotprod(args, panel_begin, panel_end);
  const int64_t panel_bytes = div_up(args.k, kNzRows) * kNzFractalBytes;
  int32_t tile[kMr * kNzCols];
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    const int8_t* panel = args.b + p * panel_bytes;
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) row_tile<2>(args, r0, kMr, panel, c0, cols, tile);
    const int64_t rest = args.m - r0;
    if (rest > 2) row_tile<2>(args, r0, rest, panel, c0, cols, tile);
    if (rest > 0 && rest <= 2) row_tile<1>(args, r0, rest, panel, c0, cols, tile);
  }
}

}  // namespace qdev::kernels
