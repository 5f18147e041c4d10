// AVX2 repack of n-packed int4 words (x2 of shape (k, n / 8), torch_npu's packing)
// into NZ4-VNNI (qd_qgemm_s4.h), the bytes of the reference repack. A 32-column panel
// is 16 bytes of a row, so one 32-byte load covers two panels and every shuffle below
// stays in its 128-bit lane, i.e. in its panel. Per 4-k group: the nibbles of rows
// (k, k+1) and (k+2, k+3) pair up per column, then the two pairs interleave per column.
#if !defined(__AVX2__)
#error "compile with -mavx2"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "../matmul/qd_qgemm_s4.h"

namespace qdev::kernels {
namespace {

// Per column c of the lane (32 columns, 16 bytes a row): low nibble = row a's nibble c,
// high nibble = row b's; returned as columns 0-15 (lo) and 16-31 (hi) of each lane.
inline void pair_rows(__m256i a, __m256i b, __m256i* lo, __m256i* hi) {
  const __m256i m0f = _mm256_set1_epi8(0x0F), mf0 = _mm256_set1_epi8(static_cast<char>(0xF0));
  // byte j of a row holds columns 2j (low) and 2j + 1 (high)
  const __m256i even = _mm256_or_si256(_mm256_and_si256(a, m0f), _mm256_slli_epi16(_mm256_and_si256(b, m0f), 4));
  const __m256i odd = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m0f), _mm256_and_si256(b, mf0));
  *lo = _mm256_unpacklo_epi8(even, odd);
  *hi = _mm256_unpackhi_epi8(even, odd);
}

}  // namespace

void pack_b_nz4_from_int4_avx2(const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                               uint8_t* packed, int64_t n_begin, int64_t n_end) {
  // Panels in pairs while both are whole and k fills 4-k groups; the rest as the reference does.
  const int64_t k_blocks = (k + kNzRows - 1) / kNzRows;
  const int64_t panel_bytes = k_blocks * kNz4FractalBytes;
  int64_t p = n_begin / kNzCols;
  const int64_t p_end = (n_end + kNzCols - 1) / kNzCols;
  if (!k_packed && k % 4 == 0) {
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x88));  // nibble ^ 8: u8 0..15
    for (; p + 2 <= p_end && (p + 2) * kNzCols <= n; p += 2) {
      uint8_t* panel0 = packed + p * panel_bytes;
      uint8_t* panel1 = panel0 + panel_bytes;
      if (k % kNzRows != 0) {  // the last fractal's missing rows read as the biased zero
        std::memset(panel0 + (k_blocks - 1) * kNz4FractalBytes, 0x88, kNz4FractalBytes);
        std::memset(panel1 + (k_blocks - 1) * kNz4FractalBytes, 0x88, kNz4FractalBytes);
      }
      const uint8_t* src = reinterpret_cast<const uint8_t*>(words) + p * kNzCols / 2;
      const int64_t ld = row_words * 4;
      for (int64_t i0 = 0; i0 < k; i0 += 4) {
        __m256i r[4];
        for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + (i0 + i) * ld));
        __m256i lo01, hi01, lo23, hi23;
        pair_rows(r[0], r[1], &lo01, &hi01);  // per column: (k, k+1)
        pair_rows(r[2], r[3], &lo23, &hi23);  // per column: (k+2, k+3)
        // [n-half][n 16][2 bytes]: column c's two bytes side by side
        const __m256i h0a = _mm256_xor_si256(_mm256_unpacklo_epi8(lo01, lo23), bias);  // columns 0-7
        const __m256i h0b = _mm256_xor_si256(_mm256_unpackhi_epi8(lo01, lo23), bias);  // 8-15
        const __m256i h1a = _mm256_xor_si256(_mm256_unpacklo_epi8(hi01, hi23), bias);  // 16-23
        const __m256i h1b = _mm256_xor_si256(_mm256_unpackhi_epi8(hi01, hi23), bias);  // 24-31
        const int64_t at = (i0 / kNzRows) * kNz4FractalBytes + ((i0 % kNzRows) / 4) * 64;
        // lane 0 is panel p, lane 1 panel p + 1
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel0 + at), _mm256_castsi256_si128(h0a));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel0 + at + 16), _mm256_castsi256_si128(h0b));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel0 + at + 32), _mm256_castsi256_si128(h1a));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel0 + at + 48), _mm256_castsi256_si128(h1b));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel1 + at), _mm256_extracti128_si256(h0a, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel1 + at + 16), _mm256_extracti128_si256(h0b, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel1 + at + 32), _mm256_extracti128_si256(h1a, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(panel1 + at + 48), _mm256_extracti128_si256(h1b, 1));
      }
    }
  }
  if (p < p_end) {
    pack_b_nz4_from_int4_ref(words, k, n, k_packed, row_words, packed, p * kNzCols, n_end);
  }
}

}  // namespace qdev::kernels
