// aarch64 NEON dotprod micro-kernel for the int8 GEMM: up to 3 rows x 32 columns.
//
// The NZ-VNNI layout of B needs no repacking on Arm: each 16-byte run of a
// fractal row holds 4 columns x 4 k, which is exactly one `sdot` operand (4
// int32 lanes, each a 4-term dot product). A is broadcast per 4 k with the
// by-element form `sdot vd.4s, vb.16b, va.4b[g]`. The packed A is stored as
// u8 = a + 128 (for x86's u8 x s8 instructions); flipping the top bit gives the
// int8 value back, so no column-sum correction is needed.
//
// 3 rows x 8 column quads = 24 accumulators + 3 A registers + B: fits the 32
// vector registers. A single row (decode) streams the panel once.
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_DOTPROD)
#error "compile with -march=armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include <algorithm>

#include "../../common/qd_common.h"
#include "../qd_qgemm.h"
#include "qd_qgemm_neon_epilogue.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 3;

// k group G (4 k) of a fractal: 8 B operands, each multiplied by lane G of every
// row's A register (the by-element lane must be a compile-time constant).
template <int MR, int G>
inline void sdot_group(int32x4_t (&acc)[MR][8], const int8_t* frac, const int8x16_t (&av)[MR]) {
  for (int c = 0; c < 8; ++c) {
    const int8x16_t b = vld1q_s8(frac + G * 128 + c * 16);
    for (int r = 0; r < MR; ++r) acc[r][c] = vdotq_laneq_s32(acc[r][c], b, av[r], G);
  }
}

template <int MR>
void tile_sdot(const QGemmArgs& args, int64_t r0, const int8_t* panel, int32_t* tile) {
  const int64_t k_blocks = div_up(args.k, kNzRows);
  const uint8x16_t top_bit = vdupq_n_u8(0x80);
  int32x4_t acc[MR][8];
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < 8; ++c) acc[r][c] = vdupq_n_s32(0);
  }
  const uint8_t* a = args.a + r0 * args.lda;
  for (int64_t f = 0; f < k_blocks; ++f) {
    const int8_t* frac = panel + f * kNzFractalBytes;
    int8x16_t av[MR];  // 16 k of each row (B's k padding is zero, so A's padding bytes do not matter)
    for (int r = 0; r < MR; ++r) {
      av[r] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + r * args.lda + f * kNzRows), top_bit));
    }
    sdot_group<MR, 0>(acc, frac, av);
    sdot_group<MR, 1>(acc, frac, av);
    sdot_group<MR, 2>(acc, frac, av);
    sdot_group<MR, 3>(acc, frac, av);
  }
  // Byte c * 16 of a fractal row covers columns 4c .. 4c + 3.
  for (int r = 0; r < MR; ++r) {
    for (int c = 0; c < 8; ++c) vst1q_s32(tile + r * kNzCols + c * 4, acc[r][c]);
  }
}

}  // namespace

void qgemm_panels_neon_dotprod(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  const int64_t panel_bytes = div_up(args.k, kNzRows) * kNzFractalBytes;
  int32_t tile[kMr * kNzCols];
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    const int8_t* panel = args.b + p * panel_bytes;
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) {
      tile_sdot<kMr>(args, r0, panel, tile);
      qgemm_epilogue_neon(args, tile, kNzCols, r0, kMr, c0, cols);
    }
    const int64_t rest = args.m - r0;
    if (rest == 2) tile_sdot<2>(args, r0, panel, tile);
    if (rest == 1) tile_sdot<1>(args, r0, panel, tile);
    if (rest > 0) qgemm_epilogue_neon(args, tile, kNzCols, r0, rest, c0, cols);
  }
}

}  // namespace qdev::kernels
