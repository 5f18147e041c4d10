// AVX2 W4A8 micro-kernel: up to 2 rows x 32 columns, exact.
//
// The weights are u8 nibbles (w + 8 <= 15) and the activations s8, so
// vpmaddubsw's pair sums stay far inside int16 (2 * 15 * 128); vpmaddwd with
// ones widens them to the 4-k dot product per column. A 32-byte half of a
// W4-VNNI2 row holds 8 columns x 4 k in each nibble plane.
#if !defined(__AVX2__) || !defined(__FMA__)
#error "compile with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../../common/qd_common.h"
#include "../qd_w4a8.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 2;

template <int MR>
void tile(const W4A8Args& args, int64_t r0, int64_t p, int64_t cols) {
  const W4Layout& L = args.L;
  const uint8_t* panel = args.packed + L.off_weights + p * w4_panel_bytes(L.k_pad);
  const int64_t steps_per_group = (L.channelwise ? L.k_pad : L.group) / 8;
  const bool cs16 = w4_colsum16(L);
  const __m256i low4 = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
  float acc[MR][kW4PanelCols] = {};
  for (int64_t g = 0; g < L.groups; ++g) {
    __m256i dot[MR][4];
    for (int r = 0; r < MR; ++r) {
      for (int q = 0; q < 4; ++q) dot[r][q] = _mm256_setzero_si256();
    }
    const int64_t t0 = g * steps_per_group;
    for (int64_t t = t0; t < t0 + steps_per_group; ++t) {
      const uint8_t* row = panel + t * 128;
      __m256i lo[4], hi[4];  // [8-column quarter]
      for (int q = 0; q < 4; ++q) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + q * 32));
        lo[q] = _mm256_and_si256(x, low4);
        hi[q] = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
      }
      for (int r = 0; r < MR; ++r) {
        int32_t a0, a1;
        std::memcpy(&a0, args.q + (r0 + r) * args.ldq + t * 8, 4);
        std::memcpy(&a1, args.q + (r0 + r) * args.ldq + t * 8 + 4, 4);
        const __m256i va0 = _mm256_set1_epi32(a0), va1 = _mm256_set1_epi32(a1);
        for (int q = 0; q < 4; ++q) {
          const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(lo[q], va0), _mm256_maddubs_epi16(hi[q], va1));
          dot[r][q] = _mm256_add_epi32(dot[r][q], _mm256_madd_epi16(s, ones16));
        }
      }
    }
    // Exact corrections and the sequential fp32 accumulation, per column.
    alignas(32) int32_t d[kW4PanelCols];
    for (int r = 0; r < MR; ++r) {
      for (int q = 0; q < 4; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(d + q * 8), dot[r][q]);
      const int32_t rs8 = 8 * args.rowsum[(r0 + r) * L.groups + g];
      const int32_t zp = args.zp[r0 + r];
      const float asum = static_cast<float>(args.rowsum[(r0 + r) * L.groups + g] - zp * static_cast<int32_t>(w4_group_len(L)));
      for (int64_t c = 0; c < kW4PanelCols; ++c) {
        const int64_t idx = w4_group_index(L.groups, g, p * kW4PanelCols + c);
        const int32_t cs = cs16 ? reinterpret_cast<const int16_t*>(args.packed + L.off_colsum)[idx]
                                : reinterpret_cast<const int32_t*>(args.packed + L.off_colsum)[idx];
        const float s = L.scales_bf16 ? bf16_to_f32(reinterpret_cast<const uint16_t*>(args.packed + L.off_scales)[idx])
                                      : reinterpret_cast<const float*>(args.packed + L.off_scales)[idx];
        acc[r][c] = acc[r][c] + static_cast<float>(d[c] - rs8 - zp * cs) * s;
        if (L.has_zeros) acc[r][c] = acc[r][c] + asum * w4_zero_at(args.packed, L, g, p * kW4PanelCols + c);
      }
    }
  }
  const float* bias = L.has_bias ? reinterpret_cast<const float*>(args.packed + L.off_bias) + p * kW4PanelCols : nullptr;
  for (int r = 0; r < MR; ++r) {
    const float recip = args.recip[r0 + r];
    for (int64_t c = 0; c < cols; ++c) {
      float y = acc[r][c] * recip;
      if (bias) y = y + bias[c];
      const int64_t o = (r0 + r) * args.ldo + p * kW4PanelCols + c;
      if (args.out_bf16) {
        static_cast<uint16_t*>(args.out)[o] = static_cast<uint16_t>(f32_bits(y) >> 16);
      } else {
        static_cast<float*>(args.out)[o] = y;
      }
    }
  }
}

}  // namespace

void w4a8_panels_avx2(const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t cols = std::min<int64_t>(kW4PanelCols, args.L.n - p * kW4PanelCols);
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) tile<kMr>(args, r0, p, cols);
    if (r0 < args.m) tile<1>(args, r0, p, cols);
  }
}

}  // namespace qdev::kernels
