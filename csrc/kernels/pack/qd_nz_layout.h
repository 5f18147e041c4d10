// FRACTAL_NZ layout of a batch of (rows x cols) matrices with any element size.
//
// Per matrix: fractals of 16 rows x c0 columns, stored column-panel-major
// (panel j / c0, then row block i / 16), each fractal 16 * c0 elements, so a
// matrix takes ceil(cols / c0) * ceil(rows / 16) * 16 * c0 elements and the
// matrices follow each other. Inside a fractal the order is row-major
// [16][c0], except for 1-byte elements with c0 == 32, which use the
// NZ-VNNI order of the int8 GEMM (see matmul/qd_qgemm.h) so that an int8
// weight cast to FRACTAL_NZ is already the GEMM's packed operand.
#pragma once

#include <cstdint>

namespace qdev::kernels {

int64_t nz_matrix_elems(int64_t rows, int64_t cols, int64_t c0);

// Element index of (r, c) inside one matrix's NZ block.
int64_t nz_element_index(int64_t r, int64_t c, int64_t rows, int64_t c0, int64_t itemsize);

// Contiguous ND (batch, rows, cols) -> NZ (padding zeroed), and back.
void nd_to_nz(const void* nd, void* nz, int64_t batch, int64_t rows, int64_t cols,
              int64_t itemsize, int64_t c0);
void nz_to_nd(const void* nz, void* nd, int64_t batch, int64_t rows, int64_t cols,
              int64_t itemsize, int64_t c0);

}  // namespace qdev::kernels
