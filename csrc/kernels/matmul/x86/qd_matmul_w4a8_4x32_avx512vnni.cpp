// AVX-512 VNNI W4A8 micro-kernel: up to 4 rows x 32 columns, two forms.
//
// Decode (1-2 rows, s8 activations): int32 dot products of the nibbles (u8,
// w + 8; one 64-byte load yields two operands, see W4-VNNI2 in qd_w4a8.h) with
// the broadcast int8 activations; then, still per group, the exact corrections
// (- 8 * rowsum(q) - zp * colsum(w)), conversion to float and the sequential
// fp32 accumulation acc += float(iacc) * scale, as PyTorch's reference does.
// Prefill (tile_u8, u8 activations): the same sums with a cheaper per-group
// epilogue, which is what bounds group-32 prefill (see tile_u8).
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VNNI__)
#error "compile with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../qd_w4a8.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 4;

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The stored column sums (int16 when cs16 = w4_colsum16, else int32) of group g, panel p,
// as int32 for columns 0-15, 16-31. cs16 comes from the caller: a call per group would
// make every vector register caller-saved across it.
inline void load_colsums(const W4A8Args& args, bool cs16, int64_t p, int64_t g, __m512i cs[2]) {
  const W4Layout& L = args.L;
  const int64_t at = w4_group_index(L.groups, g, p * kW4PanelCols);
  if (cs16) {
    const int16_t* c = reinterpret_cast<const int16_t*>(args.packed + L.off_colsum) + at;
    cs[0] = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
    cs[1] = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 16)));
  } else {
    const int32_t* c = reinterpret_cast<const int32_t*>(args.packed + L.off_colsum) + at;
    cs[0] = _mm512_loadu_si512(c);
    cs[1] = _mm512_loadu_si512(c + 16);
  }
}

// The scales (or, from off_zeros, the zeros) of group g, panel p, as fp32 (bf16 -> fp32 is
// exact: the bits move up 16 places).
inline void load_scales(const W4A8Args& args, int64_t p, int64_t g, __m512 s[2], bool zeros = false) {
  const W4Layout& L = args.L;
  const int64_t at = w4_group_index(L.groups, g, p * kW4PanelCols);
  const int64_t off = zeros ? L.off_zeros : L.off_scales;
  if (L.scales_bf16) {
    const __m256i* b = reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(args.packed + off) + at);
    s[0] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(b)), 16));
    s[1] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(b + 1)), 16));
  } else {
    const float* f = reinterpret_cast<const float*>(args.packed + off) + at;
    s[0] = _mm512_loadu_ps(f);
    s[1] = _mm512_loadu_ps(f + 16);
  }
}

// One output row of a panel: y = acc * recip (+ bias), fp32 or bf16 (truncated, as PyTorch's x86 reference).
inline void store_row(const W4A8Args& args, int64_t row, int64_t p, int64_t cols, const __m512 acc[2]) {
  const float* bias =
      args.L.has_bias ? reinterpret_cast<const float*>(args.packed + args.L.off_bias) + p * kW4PanelCols : nullptr;
  const __m512 recip = _mm512_set1_ps(args.recip[row]);
  for (int h = 0; h < 2; ++h) {
    const int64_t c = h * 16;
    if (c >= cols) break;
    const __mmask16 mask = cols - c >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (cols - c)) - 1);
    __m512 y = _mm512_mul_ps(acc[h], recip);
    if (bias) y = _mm512_add_ps(y, _mm512_loadu_ps(bias + c));
    const int64_t o = row * args.ldo + p * kW4PanelCols + c;
    if (args.out_bf16) {
      const __m512i bits = _mm512_srli_epi32(_mm512_castps_si512(y), 16);
      _mm512_mask_cvtepi32_storeu_epi16(static_cast<uint16_t*>(args.out) + o, mask, bits);
    } else {
      _mm512_mask_storeu_ps(static_cast<float*>(args.out) + o, mask, y);
    }
  }
}

// The asymmetric form's zero term of group g: acc += float(mul * asum) * z, asum the
// group's sum of (q - zp) (mul = 16 in the prefill tile, whose acc is 16 times the
// reference's: float(16 a) * z = 16 (float(a) * z) exactly).
template <int MR>
inline void add_zero_terms(const W4A8Args& args, int64_t r0, int64_t p, int64_t g, int32_t mul, __m512 acc[][2]) {
  const W4Layout& L = args.L;
  __m512 z[2];
  load_scales(args, p, g, z, /*zeros=*/true);
  const int32_t len = static_cast<int32_t>(w4_group_len(L));
  for (int r = 0; r < MR; ++r) {
    const int32_t asum = args.rowsum[(r0 + r) * L.groups + g] - args.zp[r0 + r] * len;
    const __m512 a = _mm512_set1_ps(static_cast<float>(mul * asum));
    acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_mul_ps(a, z[0]));
    acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_mul_ps(a, z[1]));
  }
}

// kSumB: derive the column sums from the nibbles with one extra vpdpbusd per
// operand instead of reading them: for 1-2 rows (decode) the kernel is bound
// by memory, and skipping the stored sums saves ~10 % of the bytes.
template <int MR, bool kSumB>
void tile(const W4A8Args& args, int64_t r0, int64_t p, int64_t cols) {
  const W4Layout& L = args.L;
  const uint8_t* panel = args.packed + L.off_weights + p * w4_panel_bytes(L.k_pad);
  const bool cs16 = w4_colsum16(L);
  const int8_t* q = args.q + r0 * args.ldq;
  const int64_t steps_per_group = (L.channelwise ? L.k_pad : L.group) / 8;  // 8 k per step
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t g = 0; g < L.groups; ++g) {
    __m512i dot[MR][2];
    for (int r = 0; r < MR; ++r) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
    __m512i bsum[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
    const __m512i ones = _mm512_set1_epi8(1);
    const int64_t t0 = g * steps_per_group;
    for (int64_t t = t0; t < t0 + steps_per_group; ++t) {
      const __m512i x0 = _mm512_loadu_si512(panel + t * 128);       // columns 0-15
      const __m512i x1 = _mm512_loadu_si512(panel + t * 128 + 64);  // columns 16-31
      const __m512i b0 = _mm512_and_si512(x0, low4), b1 = _mm512_and_si512(x1, low4);  // k 8t .. 8t+3
      const __m512i c0 = _mm512_and_si512(_mm512_srli_epi16(x0, 4), low4);               // k 8t+4 .. 8t+7
      const __m512i c1 = _mm512_and_si512(_mm512_srli_epi16(x1, 4), low4);
      if (kSumB) {
        bsum[0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bsum[0], b0, ones), c0, ones);
        bsum[1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bsum[1], b1, ones), c1, ones);
      }
      for (int r = 0; r < MR; ++r) {
        const int8_t* qr = q + r * args.ldq + t * 8;
        const __m512i a0 = _mm512_set1_epi32(load_i32(qr)), a1 = _mm512_set1_epi32(load_i32(qr + 4));
        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], b0, a0);
        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], b1, a0);
        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], c0, a1);
        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], c1, a1);
      }
    }
    __m512i cs[2];
    if (kSumB) {  // sum of (w + 8) over the group's k (padding included: nibble 8, w 0)
      const __m512i bias8 = _mm512_set1_epi32(static_cast<int32_t>(8 * steps_per_group * 8));
      cs[0] = _mm512_sub_epi32(bsum[0], bias8);
      cs[1] = _mm512_sub_epi32(bsum[1], bias8);
    } else {
      load_colsums(args, cs16, p, g, cs);
    }
    __m512 s[2];
    load_scales(args, p, g, s);
    for (int r = 0; r < MR; ++r) {
      const __m512i rs = _mm512_set1_epi32(8 * args.rowsum[(r0 + r) * L.groups + g]);
      // zp * colsum with vpmaddwd: |colsum| < 2^15 and the zero point's high half is 0.
      const __m512i zp = _mm512_set1_epi32(args.zp[r0 + r] & 0xFFFF);
      for (int h = 0; h < 2; ++h) {
        // cs16: every group sum fits int16 (stored or derived alike)
        const __m512i zc = cs16 ? _mm512_madd_epi16(zp, cs[h])
                                : _mm512_mullo_epi32(_mm512_set1_epi32(args.zp[r0 + r]), cs[h]);
        const __m512i iacc = _mm512_sub_epi32(_mm512_sub_epi32(dot[r][h], rs), zc);
        acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_mul_ps(_mm512_cvtepi32_ps(iacc), s[h]));
      }
    }
    if (L.has_zeros) add_zero_terms<MR>(args, r0, p, g, 1, acc);
  }
  for (int r = 0; r < MR; ++r) store_row(args, r0 + r, p, cols, acc[r]);
}

// Prefill tile on u8 activations (q + 128, see w4a8_lhs_unsigned). A nibble
// byte holds w + 8, which is w with its sign bit flipped, so one shift and two
// ternary-logic ops give two s8 operands 16 * w: ((v << 4) & 0xF0) ^ 0x80 and
// (v & 0xF0) ^ 0x80. Per group one vpdpwssd then applies the zero point,
//   iacc16 = sum (q + 128) * 16 w - 16 (zp + 128) colsum = 16 * iacc,
// exact in int32 (the group length is bounded by w4a8_lhs_unsigned), and
// acc += float(iacc16) * s is exactly 16 times the reference's sum (scaling by a
// power of two commutes with rounding); acc / 16 is exact again before recip.
// Against tile<MR, false>: two fewer ops per output vector and group, and no
// row sums, which is what bounds group-32 prefill.
template <int MR>
void tile_u8(const W4A8Args& args, int64_t r0, int64_t p, int64_t cols) {
  const W4Layout& L = args.L;
  const uint8_t* panel = args.packed + L.off_weights + p * w4_panel_bytes(L.k_pad);
  const bool cs16 = w4_colsum16(L);
  const uint8_t* q = reinterpret_cast<const uint8_t*>(args.q) + r0 * args.ldq;
  const int64_t steps_per_group = (L.channelwise ? L.k_pad : L.group) / 8;  // 8 k per step
  const __m512i f0 = _mm512_set1_epi8(static_cast<char>(0xF0)), x80 = _mm512_set1_epi8(static_cast<char>(0x80));
  constexpr int kAndXor = 0x6A;  // ternary logic (a & b) ^ c
  // -16 (zp + 128) per row: the low int16 of each lane (high int16 0) for vpdpwssd
  // against int16 column sums, the whole int32 for vpmulld against int32 sums.
  int32_t zp16[MR];
  for (int r = 0; r < MR; ++r) zp16[r] = -16 * (args.zp[r0 + r] + 128);
  __m512 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t g = 0; g < L.groups; ++g) {
    __m512i dot[MR][2];
    for (int r = 0; r < MR; ++r) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
    const int64_t t0 = g * steps_per_group;
    for (int64_t t = t0; t < t0 + steps_per_group; ++t) {
      const __m512i x0 = _mm512_loadu_si512(panel + t * 128);       // columns 0-15
      const __m512i x1 = _mm512_loadu_si512(panel + t * 128 + 64);  // columns 16-31
      const __m512i b0 = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x0, 4), f0, x80, kAndXor);  // k 8t .. 8t+3
      const __m512i b1 = _mm512_ternarylogic_epi32(_mm512_slli_epi16(x1, 4), f0, x80, kAndXor);
      const __m512i c0 = _mm512_ternarylogic_epi32(x0, f0, x80, kAndXor);  // k 8t+4 .. 8t+7
      const __m512i c1 = _mm512_ternarylogic_epi32(x1, f0, x80, kAndXor);
      for (int r = 0; r < MR; ++r) {
        const uint8_t* qr = q + r * args.ldq + t * 8;
        const __m512i a0 = _mm512_set1_epi32(load_i32(reinterpret_cast<const int8_t*>(qr)));
        const __m512i a1 = _mm512_set1_epi32(load_i32(reinterpret_cast<const int8_t*>(qr + 4)));
        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], a0, b0);
        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], a0, b1);
        dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], a1, c0);
        dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], a1, c1);
      }
    }
    __m512i cs[2];
    load_colsums(args, cs16, p, g, cs);
    __m512 s[2];
    load_scales(args, p, g, s);
    for (int r = 0; r < MR; ++r) {
      for (int h = 0; h < 2; ++h) {
        // cs16: the sign-extended high int16 of a lane meets the zero high half of zp16
        const __m512i iacc = cs16 ? _mm512_dpwssd_epi32(dot[r][h], cs[h], _mm512_set1_epi32(zp16[r] & 0xFFFF))
                                  : _mm512_add_epi32(dot[r][h], _mm512_mullo_epi32(cs[h], _mm512_set1_epi32(zp16[r])));
        acc[r][h] = _mm512_add_ps(acc[r][h], _mm512_mul_ps(_mm512_cvtepi32_ps(iacc), s[h]));
      }
    }
    if (L.has_zeros) add_zero_terms<MR>(args, r0, p, g, 16, acc);
  }
  const __m512 sixteenth = _mm512_set1_ps(1.0f / 16.0f);
  for (int r = 0; r < MR; ++r) {
    const __m512 y[2] = {_mm512_mul_ps(acc[r][0], sixteenth), _mm512_mul_ps(acc[r][1], sixteenth)};  // exact
    store_row(args, r0 + r, p, cols, y);
  }
}

}  // namespace

void w4a8_panels_avx512vnni(const W4A8Args& args, int64_t panel_begin, int64_t panel_end) {
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t cols = std::min<int64_t>(kW4PanelCols, args.L.n - p * kW4PanelCols);
    if (args.q_unsigned) {
      int64_t r0 = 0;
      for (; r0 + kMr <= args.m; r0 += kMr) tile_u8<kMr>(args, r0, p, cols);
      switch (args.m - r0) {
        case 3: tile_u8<3>(args, r0, p, cols); break;
        case 2: tile_u8<2>(args, r0, p, cols); break;
        case 1: tile_u8<1>(args, r0, p, cols); break;
        default: break;
      }
      continue;
    }
    if (args.m <= 2) {
      if (args.m == 2) tile<2, true>(args, 0, p, cols);
      if (args.m == 1) tile<1, true>(args, 0, p, cols);
      continue;
    }
    int64_t r0 = 0;
    for (; r0 + kMr <= args.m; r0 += kMr) tile<kMr, false>(args, r0, p, cols);
    switch (args.m - r0) {
      case 3: tile<3, false>(args, r0, p, cols); break;
      case 2: tile<2, false>(args, r0, p, cols); break;
      case 1: tile<1, false>(args, r0, p, cols); break;
      default: break;
    }
  }
}

}  // namespace qdev::kernels
