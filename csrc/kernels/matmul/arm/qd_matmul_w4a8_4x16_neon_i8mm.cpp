// aarch64 NEON i8mm W4A8 micro-kernel (prefill): 4 rows x 16 columns, exact.
//
// Same nibble handling as the dotprod kernel (`and #0x0f` / `ushr #4` give the
// exact unsigned nibble planes, the +8 offset is removed with the per-row sums),
// but the planes feed `smmla` (2 rows x 8 k times 8 k x 2 columns): for a run
// of 4 columns, the low plane holds k 8t..8t+3 and the high plane k 8t+4..8t+7,
// so `zip1`/`zip2` on 32-bit lanes of (low, high) give columns (0, 1) and (2, 3)
// with 8 consecutive k each, matching an A operand of two rows' 8 k.
// The packed buffer is the one every other variant reads (family
// kW4FamilyNz4Vnni); nothing is repacked.
//
// 2 row pairs x 8 column pairs = 16 accumulators per 16-column half panel.
// Single-row calls go to the dotprod kernel; an odd last row pairs with a copy
// of itself whose results are dropped.
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "compile with -march=armv8.2-a+dotprod+i8mm"
#endif

#include <arm_neon.h>

#include <algorithm>

#include "../../common/qd_common.h"
#include "qd_w4a8_neon_common.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 4;
constexpr int kHalfCols = 16;

// Rows [r0, r0 + rows_valid) (2 * PAIRS slots; slots past the end repeat the last
// row) x the columns of half `half` of panel p, written to out[row][half * 16 + c].
template <int PAIRS>
void half_tile(const W4A8Args& args, int64_t r0, int64_t rows_valid, int64_t p, int half,
               float32x4_t (*out)[8]) {
  const W4Layout& L = args.L;
  const uint8_t* panel = args.packed + L.off_weights + p * w4_panel_bytes(L.k_pad) + half * 64;
  const int64_t steps_per_group = (L.channelwise ? L.k_pad : L.group) / 8;
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  int64_t row_of[2 * PAIRS];
  for (int i = 0; i < 2 * PAIRS; ++i) row_of[i] = r0 + std::min<int64_t>(i, rows_valid - 1);
  float32x4_t acc[2 * PAIRS][4];  // [row][column quad of the half]
  for (int i = 0; i < 2 * PAIRS; ++i) {
    for (int c = 0; c < 4; ++c) acc[i][c] = vdupq_n_f32(0.0f);
  }
  for (int64_t g = 0; g < L.groups; ++g) {
    int32x4_t mm[PAIRS][8];  // [row pair][column pair]: {r0 c0, r0 c1, r1 c0, r1 c1}
    for (int pr = 0; pr < PAIRS; ++pr) {
      for (int j = 0; j < 8; ++j) mm[pr][j] = vdupq_n_s32(0);
    }
    const int64_t t0 = g * steps_per_group;
    for (int64_t t = t0; t < t0 + steps_per_group; ++t) {
      const uint8_t* step = panel + t * 128;
      int8x16_t a[PAIRS];  // k 8t .. 8t + 7 of both rows of a pair
      for (int pr = 0; pr < PAIRS; ++pr) {
        a[pr] = vcombine_s8(vld1_s8(args.q + row_of[2 * pr] * args.ldq + t * 8),
                            vld1_s8(args.q + row_of[2 * pr + 1] * args.ldq + t * 8));
      }
      for (int q = 0; q < 4; ++q) {  // columns 4q .. 4q + 3 of the half
        const uint8x16_t x = vld1q_u8(step + q * 16);
        const int32x4_t lo = vreinterpretq_s32_u8(vandq_u8(x, low4));
        const int32x4_t hi = vreinterpretq_s32_u8(vshrq_n_u8(x, 4));
        const int8x16_t b01 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));
        const int8x16_t b23 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));
        for (int pr = 0; pr < PAIRS; ++pr) {
          mm[pr][2 * q] = vmmlaq_s32(mm[pr][2 * q], a[pr], b01);
          mm[pr][2 * q + 1] = vmmlaq_s32(mm[pr][2 * q + 1], a[pr], b23);
        }
      }
    }
    for (int pr = 0; pr < PAIRS; ++pr) {
      const W4RowTerms top = w4_row_terms(args, row_of[2 * pr], g);
      const W4RowTerms bottom = w4_row_terms(args, row_of[2 * pr + 1], g);
      for (int q = 0; q < 4; ++q) {
        const int64x2_t c01 = vreinterpretq_s64_s32(mm[pr][2 * q]);
        const int64x2_t c23 = vreinterpretq_s64_s32(mm[pr][2 * q + 1]);
        const int64_t idx = w4_group_index(L.groups, g, p * kW4PanelCols + half * kHalfCols + q * 4);
        acc[2 * pr][q] = w4_accumulate_group(args, top, vreinterpretq_s32_s64(vzip1q_s64(c01, c23)), idx,
                                             acc[2 * pr][q]);
        acc[2 * pr + 1][q] = w4_accumulate_group(args, bottom, vreinterpretq_s32_s64(vzip2q_s64(c01, c23)), idx,
                                                 acc[2 * pr + 1][q]);
      }
    }
  }
  for (int i = 0; i < 2 * PAIRS; ++i) {
    for (int c = 0; c < 4; ++c) out[i][half * 4 + c] = acc[i][c];
  }
}

template <int PAIRS>
void row_tile(const W4A8Args& args, int64_t r0, int64_t rows_valid, int64_t p, int64_t cols) {
  float32x4_t acc[2 * PAIRS][8];
  half_tile<PAIRS>(args, r0, rows_valid, p, 0, acc);
  if (cols > kHalfCols) half_tile<PAIRS>(args, r0, rows_valid, p, 1, acc);
  for (int64_t i = 0; i < rows_valid; ++i) w4_store_row(args, r0 + i, p * kW4PanelCols, cols, acc[i]);
}

}  // namespace

void w4a8_panels_neon_i8mm(const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
  if (args.m < 2) return w4a8_panels_neon_dotprod(args, panel_begin, panel_end);
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t cols = std::min<int64_t>(kW4PanelCols, args.L.n - p * kW4PanelCols);
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) row_tile<2>(args, r0, kMr, p, cols);
    const int64_t rest = args.m - r0;
    if (rest > 2) row_tile<2>(args, r0, rest, p, cols);
    if (rest > 0 && rest <= 2) row_tile<1>(args, r0, rest, p, cols);
  }
}

}  // namespace qdev::kernels
