// Scalar packers between plain int8 matrices and the NZ-VNNI layout.
#include <cstring>

#include "../matmul/qd_qgemm.h"

namespace qdev::kernels {

void pack_b_nz_ref(const int8_t* b, int64_t k, int64_t n, int64_t stride_k, int64_t stride_n,
                   int8_t* packed, int32_t* colsum, int64_t n_begin, int64_t n_end) {
  const int64_t k_blocks = (k + kNzRows - 1) / kNzRows;
  for (int64_t p = n_begin / kNzCols; p * kNzCols < n_end; ++p) {
    int8_t* panel = packed + p * k_blocks * kNzFractalBytes;
    // k = 0 packs nothing (and the caller's buffer may be null: memset(nullptr, 0, 0) is UB).
    if (k_blocks > 0) std::memset(panel, 0, static_cast<size_t>(k_blocks * kNzFractalBytes));
    for (int64_t jc = 0; jc < kNzCols; ++jc) {
      const int64_t j = p * kNzCols + jc;
      if (j >= n) {
        if (colsum) colsum[j] = 0;
        continue;
      }
      int32_t sum = 0;
      for (int64_t i = 0; i < k; ++i) {
        const int8_t v = b[i * stride_k + j * stride_n];
        panel[(i / kNzRows) * kNzFractalBytes + ((i % kNzRows) / 4) * 128 + (jc / 16) * 64 +
              (jc % 16) * 4 + i % 4] = v;
        sum += v;
      }
      if (colsum) colsum[j] = sum;
    }
  }
}

void unpack_b_nz_ref(const int8_t* packed, int64_t k, int64_t n, int8_t* b, int64_t stride_k,
                     int64_t stride_n) {
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < n; ++j) b[i * stride_k + j * stride_n] = packed[nz_offset(i, j, k)];
  }
}

void colsum_b_nz(const int8_t* packed, int64_t k, int64_t n, int32_t* colsum, int64_t n_begin,
                 int64_t n_end) {
  const int64_t k_blocks = (k + kNzRows - 1) / kNzRows;
  for (int64_t p = n_begin / kNzCols; p * kNzCols < n_end; ++p) {
    int32_t sums[kNzCols] = {};
    const int8_t* panel = packed + p * k_blocks * kNzFractalBytes;
    for (int64_t f = 0; f < k_blocks; ++f) {
      const int8_t* frac = panel + f * kNzFractalBytes;
      for (int g = 0; g < 4; ++g) {
        for (int h = 0; h < 2; ++h) {
          for (int c = 0; c < 16; ++c) {
            const int8_t* q = frac + g * 128 + h * 64 + c * 4;
            sums[h * 16 + c] += q[0] + q[1] + q[2] + q[3];
          }
        }
      }
    }
    for (int64_t jc = 0; jc < kNzCols && p * kNzCols + jc < n; ++jc) colsum[p * kNzCols + jc] = sums[jc];
  }
}

bool has_int8_min(const int8_t* data, int64_t n) {
  // Branch-free OR so the compiler vectorizes it.
  uint8_t found = 0;
  for (int64_t i = 0; i < n; ++i) found |= static_cast<uint8_t>(data[i] == -128);
  return found != 0;
}

void pack_a_u8(const int8_t* a, int64_t m, int64_t k, int64_t lda_in, uint8_t* out,
               int64_t ld_out) {
  for (int64_t r = 0; r < m; ++r) {
    const int8_t* src = a + r * lda_in;
    uint8_t* dst = out + r * ld_out;
    for (int64_t i = 0; i < k; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ 0x80);  // a + 128
    std::memset(dst + k, 0x80, static_cast<size_t>(ld_out - k));
  }
}

}  // namespace qdev::kernels
