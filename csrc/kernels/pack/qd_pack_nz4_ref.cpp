// Repacks torch_npu's int32-packed int4 matrices into NZ4-VNNI.
#include <algorithm>
#include <cstring>

#include "../matmul/qd_qgemm_s4.h"

namespace qdev::kernels {

void pack_b_nz4_from_int4_ref(const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                          uint8_t* packed, int64_t n_begin, int64_t n_end) {
  const int64_t k_blocks = (k + kNzRows - 1) / kNzRows;
  for (int64_t p = n_begin / kNzCols; p * kNzCols < n_end; ++p) {
    uint8_t* panel = packed + p * k_blocks * kNz4FractalBytes;
    // Padding reads as the biased zero (8) in both nibbles.
    std::memset(panel, 0x88, static_cast<size_t>(k_blocks * kNz4FractalBytes));
    if (k_packed && k % 8 == 0) {
      // A word holds k = 8w .. 8w + 7 of one column in exactly the nibble order of
      // two 4-k groups here: copy 16-bit halves, biased with ^ 0x8888.
      for (int64_t jc = 0; jc < kNzCols && p * kNzCols + jc < n; ++jc) {
        const uint32_t* col = words + (p * kNzCols + jc) * row_words;
        uint8_t* base = panel + (jc / 16) * 32 + (jc % 16) * 2;
        for (int64_t w = 0; w < k / 8; ++w) {
          const uint32_t v = col[w] ^ 0x88888888u;
          const int64_t kq = w * 8;
          uint8_t* d0 = base + (kq / kNzRows) * kNz4FractalBytes + ((kq % kNzRows) / 4) * 64;
          const uint16_t lo = static_cast<uint16_t>(v), hi = static_cast<uint16_t>(v >> 16);
          std::memcpy(d0, &lo, 2);
          std::memcpy(d0 + 64, &hi, 2);  // the next 4-k group is 64 bytes on
        }
      }
      continue;
    }
    if (!k_packed) {
      // n-packed rows: per 4-k group each column's two bytes come straight from four
      // nibbles (k, k+1 low/high, then k+2, k+3), whole bytes written once.
      const int64_t cols = std::min<int64_t>(kNzCols, n - p * kNzCols);
      for (int64_t i0 = 0; i0 < k; i0 += 4) {
        const uint8_t* rows[4];
        for (int r = 0; r < 4; ++r) {
          rows[r] = i0 + r < k ? reinterpret_cast<const uint8_t*>(words + (i0 + r) * row_words) + p * kNzCols / 2 : nullptr;
        }
        uint8_t* dst = panel + (i0 / kNzRows) * kNz4FractalBytes + ((i0 % kNzRows) / 4) * 64;
        for (int64_t jc = 0; jc < cols; ++jc) {
          const int shift = static_cast<int>(jc % 2) * 4;
          uint8_t nib[4];
          for (int r = 0; r < 4; ++r) nib[r] = rows[r] ? ((rows[r][jc / 2] >> shift) & 0xF) ^ 0x8 : 0x8;
          uint8_t* d = dst + (jc / 16) * 32 + (jc % 16) * 2;
          d[0] = static_cast<uint8_t>(nib[0] | (nib[1] << 4));
          d[1] = static_cast<uint8_t>(nib[2] | (nib[3] << 4));
        }
      }
      continue;
    }
    for (int64_t jc = 0; jc < kNzCols && p * kNzCols + jc < n; ++jc) {
      const int64_t j = p * kNzCols + jc;
      for (int64_t i = 0; i < k; ++i) {
        const uint32_t w = words[j * row_words + i / 8];
        const uint32_t nib = (w >> (4 * (i % 8))) & 0xFu;
        const int64_t kr = i % kNzRows;
        uint8_t& byte = panel[(i / kNzRows) * kNz4FractalBytes + (kr / 4) * 64 + (jc / 16) * 32 +
                              (jc % 16) * 2 + (kr % 4) / 2];
        const uint8_t biased = static_cast<uint8_t>(nib ^ 0x8u);
        byte = (kr % 2 == 0) ? static_cast<uint8_t>((byte & 0xF0u) | biased)
                             : static_cast<uint8_t>((byte & 0x0Fu) | (biased << 4));
      }
    }
  }
}

void pack_b_nz4_from_int4(Isa isa, const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                          uint8_t* packed, int64_t n_begin, int64_t n_end) {
#ifdef QD_HAVE_AVX2
  if (isa == Isa::kAvx2 || isa == Isa::kAvx512Vnni) {
    return pack_b_nz4_from_int4_avx2(words, k, n, k_packed, row_words, packed, n_begin, n_end);
  }
#endif
  (void)isa;
  pack_b_nz4_from_int4_ref(words, k, n, k_packed, row_words, packed, n_begin, n_end);
}

}  // namespace qdev::kernels
