// AVX-512 VNNI micro-kernel: up to 8 rows x 32 columns of int32 per tile.
//
// Each 64-byte row of a B fractal holds 16 columns x 4 k, exactly one operand
// of vpdpbusd (u8 x s8, 4 products summed per int32 lane); A is broadcast 4
// bytes at a time. 8 rows x 2 column halves = 16 zmm accumulators, leaving
// room for the two B operands and the A broadcast. The B panel (32 x k bytes)
// is contiguous and is reused from L1/L2 by every row tile of the panel.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "compile with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../qd_qgemm.h"

namespace qdev::kernels {
namespace {

constexpr int kMr = 8;

inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int MR>
void tile_dot(const QGemmArgs& args, const uint8_t* a, const int8_t* panel, const int32_t* colsum,
              int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  const int64_t lda = args.lda;
  __m512i acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (int64_t f = 0; f < k_blocks; ++f) {
    const int8_t* frac = panel + f * kNzFractalBytes;
    const uint8_t* ak = a + f * kNzRows;
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i b0 = _mm512_loadu_si512(frac + g * 128);
      const __m512i b1 = _mm512_loadu_si512(frac + g * 128 + 64);
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load_i32(ak + r * lda + g * 4));
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
      }
    }
  }
  // sum (a + 128) * b = sum a * b + 128 * colsum(b)
  const __m512i c0 = _mm512_slli_epi32(_mm512_loadu_si512(colsum), 7);
  const __m512i c1 = _mm512_slli_epi32(_mm512_loadu_si512(colsum + 16), 7);
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_si512(tile + r * kNzCols, _mm512_sub_epi32(acc[r][0], c0));
    _mm512_storeu_si512(tile + r * kNzCols + 16, _mm512_sub_epi32(acc[r][1], c1));
  }
}

// Two adjacent panels (64 columns) at once: 4 B operands per k-group are shared
// by MR rows, so fewer loads per vpdpbusd than the 32-column tile.
template <int MR>
void tile_dot_x2(const QGemmArgs& args, const uint8_t* a, const int8_t* panel0, const int8_t* panel1,
                 const int32_t* colsum, int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  const int64_t lda = args.lda;
  __m512i acc[MR][4];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_si512();
  for (int64_t f = 0; f < k_blocks; ++f) {
    const int8_t* f0 = panel0 + f * kNzFractalBytes;
    const int8_t* f1 = panel1 + f * kNzFractalBytes;
    const uint8_t* ak = a + f * kNzRows;
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i b0 = _mm512_loadu_si512(f0 + g * 128);
      const __m512i b1 = _mm512_loadu_si512(f0 + g * 128 + 64);
      const __m512i b2 = _mm512_loadu_si512(f1 + g * 128);
      const __m512i b3 = _mm512_loadu_si512(f1 + g * 128 + 64);
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load_i32(ak + r * lda + g * 4));
        acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
        acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
        acc[r][2] = _mm512_dpbusd_epi32(acc[r][2], av, b2);
        acc[r][3] = _mm512_dpbusd_epi32(acc[r][3], av, b3);
      }
    }
  }
  for (int q = 0; q < 4; ++q) {
    const __m512i c = _mm512_slli_epi32(_mm512_loadu_si512(colsum + q * 16), 7);
    for (int r = 0; r < MR; ++r) _mm512_storeu_si512(tile + r * 2 * kNzCols + q * 16, _mm512_sub_epi32(acc[r][q], c));
  }
}

// The hot 4 x 64 tile written out with named accumulators: GCC's register
// allocator shuffles arrays of 16 zmm accumulators with extra moves.
template <>
void tile_dot_x2<4>(const QGemmArgs& args, const uint8_t* a, const int8_t* panel0,
                    const int8_t* panel1, const int32_t* colsum, int32_t* tile) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  const int64_t lda = args.lda;
  __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00;
  __m512i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  __m512i c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  __m512i c30 = c00, c31 = c00, c32 = c00, c33 = c00;
  const uint8_t* a0 = a;
  const uint8_t* a1 = a + lda;
  const uint8_t* a2 = a + 2 * lda;
  const uint8_t* a3 = a + 3 * lda;
  const int8_t* f0 = panel0;
  const int8_t* f1 = panel1;
  for (int64_t f = 0; f < k_blocks * 4; ++f) {  // one 4-k group per step
    const __m512i b0 = _mm512_loadu_si512(f0);
    const __m512i b1 = _mm512_loadu_si512(f0 + 64);
    const __m512i b2 = _mm512_loadu_si512(f1);
    const __m512i b3 = _mm512_loadu_si512(f1 + 64);
    __m512i av = _mm512_set1_epi32(load_i32(a0));
    c00 = _mm512_dpbusd_epi32(c00, av, b0);
    c01 = _mm512_dpbusd_epi32(c01, av, b1);
    c02 = _mm512_dpbusd_epi32(c02, av, b2);
    c03 = _mm512_dpbusd_epi32(c03, av, b3);
    av = _mm512_set1_epi32(load_i32(a1));
    c10 = _mm512_dpbusd_epi32(c10, av, b0);
    c11 = _mm512_dpbusd_epi32(c11, av, b1);
    c12 = _mm512_dpbusd_epi32(c12, av, b2);
    c13 = _mm512_dpbusd_epi32(c13, av, b3);
    av = _mm512_set1_epi32(load_i32(a2));
    c20 = _mm512_dpbusd_epi32(c20, av, b0);
    c21 = _mm512_dpbusd_epi32(c21, av, b1);
    c22 = _mm512_dpbusd_epi32(c22, av, b2);
    c23 = _mm512_dpbusd_epi32(c23, av, b3);
    av = _mm512_set1_epi32(load_i32(a3));
    c30 = _mm512_dpbusd_epi32(c30, av, b0);
    c31 = _mm512_dpbusd_epi32(c31, av, b1);
    c32 = _mm512_dpbusd_epi32(c32, av, b2);
    c33 = _mm512_dpbusd_epi32(c33, av, b3);
    f0 += 128;
    f1 += 128;
    a0 += 4;
    a1 += 4;
    a2 += 4;
    a3 += 4;
  }
  const __m512i acc[4][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13},
                             {c20, c21, c22, c23}, {c30, c31, c32, c33}};
  for (int q = 0; q < 4; ++q) {
    const __m512i c = _mm512_slli_epi32(_mm512_loadu_si512(colsum + q * 16), 7);
    for (int r = 0; r < 4; ++r) _mm512_storeu_si512(tile + r * 2 * kNzCols + q * 16, _mm512_sub_epi32(acc[r][q], c));
  }
}

__m512i bf16_rne(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_mask_mov_epi32(r, nan, quiet);
}

void epilogue(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0, int rows,
              int64_t c0, int64_t cols) {
  const QGemmEpilogue& ep = args.ep;
  for (int r = 0; r < rows; ++r) {
    const int64_t row = r0 + r;
    for (int64_t h = 0; h < cols; h += 16) {
      const int64_t j = c0 + h;
      const __mmask16 mask =
          cols - h >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (cols - h)) - 1);
      __m512i v = _mm512_maskz_loadu_epi32(mask, tile + r * ld_tile + h);
      if (ep.bias_i32) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, ep.bias_i32 + j));
      const int64_t at = row * args.ldc + j;
      if (ep.out == QGemmOut::kInt32) {
        _mm512_mask_storeu_epi32(static_cast<int32_t*>(args.c) + at, mask, v);
        continue;
      }
      __m512 f = _mm512_cvtepi32_ps(v);
      if (ep.scale) {
        const __m512 s = ep.scale_stride ? _mm512_maskz_loadu_ps(mask, ep.scale + j)
                                         : _mm512_set1_ps(ep.scale[0]);
        f = _mm512_mul_ps(f, s);
      }
      if (ep.out == QGemmOut::kInt8) {
        f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(-256.0f)), _mm512_set1_ps(255.0f));
        __m512i q = _mm512_cvtps_epi32(f);  // round to nearest even
        if (ep.offset) {
          q = _mm512_add_epi32(q, ep.offset_stride ? _mm512_maskz_loadu_epi32(mask, ep.offset + j)
                                                   : _mm512_set1_epi32(ep.offset[0]));
        }
        q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-128)), _mm512_set1_epi32(127));
        _mm512_mask_cvtepi32_storeu_epi8(static_cast<int8_t*>(args.c) + at, mask, q);
        continue;
      }
      if (ep.pertoken) f = _mm512_mul_ps(f, _mm512_set1_ps(ep.pertoken[row]));
      if (ep.bias_f) f = _mm512_add_ps(f, _mm512_maskz_loadu_ps(mask, ep.bias_f + j));
      if (ep.out == QGemmOut::kFloat32) {
        _mm512_mask_storeu_ps(static_cast<float*>(args.c) + at, mask, f);
      } else if (ep.out == QGemmOut::kFloat16) {
        const __m256i hbits = _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(static_cast<uint16_t*>(args.c) + at, mask, hbits);
      } else {
        _mm512_mask_cvtepi32_storeu_epi16(static_cast<uint16_t*>(args.c) + at, mask, bf16_rne(f));
      }
    }
  }
}

constexpr int kMrPair = 4;

template <int MR>
void run_rows(const QGemmArgs& args, int64_t r0, const int8_t* panel, const int32_t* colsum,
              int32_t* tile, int64_t c0, int64_t cols) {
  tile_dot<MR>(args, args.a + r0 * args.lda, panel, colsum, tile);
  epilogue(args, tile, kNzCols, r0, MR, c0, cols);
}

template <int MR>
void run_rows_pair(const QGemmArgs& args, int64_t r0, const int8_t* panel, int64_t panel_bytes,
                   const int32_t* colsum, int32_t* tile, int64_t c0, int64_t cols) {
  tile_dot_x2<MR>(args, args.a + r0 * args.lda, panel, panel + panel_bytes, colsum, tile);
  epilogue(args, tile, 2 * kNzCols, r0, MR, c0, cols);
}

}  // namespace

void qgemm_epilogue_avx512vnni(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0,
                               int rows, int64_t c0, int64_t cols) {
  epilogue(args, tile, ld_tile, r0, rows, c0, cols);
}

void qgemm_panels_avx512vnni(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  alignas(64) int32_t tile[kMr * 2 * kNzCols];
  alignas(64) int32_t colsum[2 * kNzCols];
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  const int64_t panel_bytes = k_blocks * kNzFractalBytes;
  for (int64_t p = panel_begin; p < panel_end;) {
    const bool pair = p + 1 < panel_end;
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min((pair ? 2 : 1) * kNzCols, args.n - c0);
    const int8_t* panel = args.b + p * panel_bytes;
    std::memset(colsum, 0, sizeof(colsum));
    std::memcpy(colsum, args.b_colsum + c0, static_cast<size_t>(cols) * sizeof(int32_t));
    int64_t r0 = 0;
    if (pair) {
      for (; r0 + kMrPair <= args.m; r0 += kMrPair) {
        run_rows_pair<kMrPair>(args, r0, panel, panel_bytes, colsum, tile, c0, cols);
      }
      switch (args.m - r0) {
        case 5: run_rows_pair<5>(args, r0, panel, panel_bytes, colsum, tile, c0, cols); break;
        case 4: run_rows_pair<4>(args, r0, panel, panel_bytes, colsum, tile, c0, cols); break;
        case 3: run_rows_pair<3>(args, r0, panel, panel_bytes, colsum, tile, c0, cols); break;
        case 2: run_rows_pair<2>(args, r0, panel, panel_bytes, colsum, tile, c0, cols); break;
        case 1: run_rows_pair<1>(args, r0, panel, panel_bytes, colsum, tile, c0, cols); break;
        default: break;
      }
      p += 2;
      continue;
    }
    for (; r0 + kMr <= args.m; r0 += kMr) run_rows<kMr>(args, r0, panel, colsum, tile, c0, cols);
    switch (args.m - r0) {
      case 7: run_rows<7>(args, r0, panel, colsum, tile, c0, cols); break;
      case 6: run_rows<6>(args, r0, panel, colsum, tile, c0, cols); break;
      case 5: run_rows<5>(args, r0, panel, colsum, tile, c0, cols); break;
      case 4: run_rows<4>(args, r0, panel, colsum, tile, c0, cols); break;
      case 3: run_rows<3>(args, r0, panel, colsum, tile, c0, cols); break;
      case 2: run_rows<2>(args, r0, panel, colsum, tile, c0, cols); break;
      case 1: run_rows<1>(args, r0, panel, colsum, tile, c0, cols); break;
      default: break;
    }
    p += 1;
  }
}

}  // namespace qdev::kernels
