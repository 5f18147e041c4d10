// aarch64 NEON dotprod W4A8 micro-kernel (decode): up to 3 rows x 32 columns, exact.
//
// The W4-VNNI2 nibbles are stored as u = w + 8 (0..15). A 16-byte run of a
// 128-byte k-step holds 4 columns x 4 k in each nibble plane: `and #0x0f` gives
// the low plane (k 8t..8t+3) and `ushr #4` the high plane (k 8t+4..8t+7), each
// an exact `sdot` operand (u fits int8). KleidiAI shifts signed nibbles into
// the top half of the byte (16 * w) instead; with unsigned storage the plain
// values need no x16 fold and no eor, and the offset is removed exactly with
// the per-row sums the quantizer already produced:
//   sum_k (q - zp) * w = sum_k q * u - 8 * sum_k q - zp * sum_k w      (int32)
// Per group this is converted and accumulated in fp32 in the reference's order
// (acc + float(iacc) * scale; separate multiply and add, no fused FMA).
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_DOTPROD)
#error "compile with -march=armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include <algorithm>

#include "../../common/qd_common.h"
#include "qd_w4a8_neon_common.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 3;

template <int MR>
void tile(const W4A8Args& args, int64_t r0, int64_t p, int64_t cols) {
  const W4Layout& L = args.L;
  const uint8_t* panel = args.packed + L.off_weights + p * w4_panel_bytes(L.k_pad);
  const int64_t steps_per_group = (L.channelwise ? L.k_pad : L.group) / 8;
  const uint8x16_t low4 = vdupq_n_u8(0x0F);
  float32x4_t acc[MR][8];
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < 8; ++c) acc[r][c] = vdupq_n_f32(0.0f);
  }
  for (int64_t g = 0; g < L.groups; ++g) {
    int32x4_t dot[MR][8];  // [row][column quad]
    for (int r = 0; r < MR; ++r) {
      for (int c = 0; c < 8; ++c) dot[r][c] = vdupq_n_s32(0);
    }
    const int64_t t0 = g * steps_per_group;
    for (int64_t t = t0; t < t0 + steps_per_group; ++t) {
      const uint8_t* step = panel + t * 128;
      int8x8_t a[MR];  // k 8t .. 8t + 7: lane 0 meets the low plane, lane 1 the high plane
      for (int r = 0; r < MR; ++r) a[r] = vld1_s8(args.q + (r0 + r) * args.ldq + t * 8);
      for (int c = 0; c < 8; ++c) {  // byte c * 16 covers columns 4c .. 4c + 3
        const uint8x16_t x = vld1q_u8(step + c * 16);
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(x, low4));
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(x, 4));
        for (int r = 0; r < MR; ++r) {
          dot[r][c] = vdotq_lane_s32(dot[r][c], lo, a[r], 0);
          dot[r][c] = vdotq_lane_s32(dot[r][c], hi, a[r], 1);
        }
      }
    }
    for (int r = 0; r < MR; ++r) {
      const W4RowTerms row = w4_row_terms(args, r0 + r, g);
      for (int c = 0; c < 8; ++c) {
        acc[r][c] = w4_accumulate_group(args, row, dot[r][c], w4_group_index(L.groups, g, p * kW4PanelCols + c * 4),
                                        acc[r][c]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) w4_store_row(args, r0 + r, p * kW4PanelCols, cols, acc[r]);
}

}  // namespace

void w4a8_panels_neon_dotprod(const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t cols = std::min<int64_t>(kW4PanelCols, args.L.n - p * kW4PanelCols);
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) tile<kMr>(args, r0, p, cols);
    if (args.m - r0 == 2) tile<2>(args, r0, p, cols);
    if (args.m - r0 == 1) tile<1>(args, r0, p, cols);
  }
}

}  // namespace qdev::kernels
