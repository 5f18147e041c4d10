#include "qd_nz_layout.h"

#include <cstring>

#include "../matmul/qd_qgemm.h"

namespace qdev::kernels {

int64_t nz_matrix_elems(int64_t rows, int64_t cols, int64_t c0) {
  return ((cols + c0 - 1) / c0) * ((rows + 15) / 16) * 16 * c0;
}

int64_t nz_element_index(int64_t r, int64_t c, int64_t rows, int64_t c0, int64_t itemsize) {
  if (itemsize == 1 && c0 == kNzCols) return nz_offset(r, c, rows);
  const int64_t row_blocks = (rows + 15) / 16;
  const int64_t fractal = (c / c0) * row_blocks + r / 16;
  return fractal * 16 * c0 + (r % 16) * c0 + c % c0;
}

void nd_to_nz(const void* nd, void* nz, int64_t batch, int64_t rows, int64_t cols,
              int64_t itemsize, int64_t c0) {
  const int64_t per = nz_matrix_elems(rows, cols, c0);
  const auto* src = static_cast<const uint8_t*>(nd);
  auto* dst = static_cast<uint8_t*>(nz);
  if (batch * per == 0) return;  // empty: the buffers may be null (memset(nullptr, 0, 0) is UB)
  std::memset(dst, 0, static_cast<size_t>(batch * per * itemsize));
  for (int64_t b = 0; b < batch; ++b) {
    uint8_t* mat = dst + b * per * itemsize;
    const uint8_t* in = src + b * rows * cols * itemsize;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        std::memcpy(mat + nz_element_index(r, c, rows, c0, itemsize) * itemsize,
                    in + (r * cols + c) * itemsize, static_cast<size_t>(itemsize));
      }
    }
  }
}

void nz_to_nd(const void* nz, void* nd, int64_t batch, int64_t rows, int64_t cols,
              int64_t itemsize, int64_t c0) {
  const int64_t per = nz_matrix_elems(rows, cols, c0);
  const auto* src = static_cast<const uint8_t*>(nz);
  auto* dst = static_cast<uint8_t*>(nd);
  for (int64_t b = 0; b < batch; ++b) {
    const uint8_t* mat = src + b * per * itemsize;
    uint8_t* out = dst + b * rows * cols * itemsize;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        std::memcpy(out + (r * cols + c) * itemsize,
                    mat + nz_element_index(r, c, rows, c0, itemsize) * itemsize,
                    static_cast<size_t>(itemsize));
      }
    }
  }
}

}  // namespace qdev::kernels
