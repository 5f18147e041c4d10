// The AVX-512 weight-only GEMVs' blocking (plain and BF16): R activation rows x C
// columns per tile, R * C independent accumulator chains (one chain would leave the
// kernel bound by FMA latency at M = 1); the columns that do not fill C go one by one.
// tile(R, C, j0, r0, rows) gets R and C as std::integral_constant.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace qdev::kernels {

template <class Tile>
void wq_gemv_blocks(int64_t m, int64_t n_begin, int64_t n_end, Tile&& tile) {
  auto block = [&](auto rows_t, auto cols_t, int64_t r0, int rows) {
    int64_t j = n_begin;
    for (; j + cols_t() <= n_end; j += cols_t()) tile(rows_t, cols_t, j, r0, rows);
    for (; j < n_end; ++j) tile(rows_t, std::integral_constant<int, 1>{}, j, r0, rows);
  };
  using R1 = std::integral_constant<int, 1>;
  using R2 = std::integral_constant<int, 2>;
  using R4 = std::integral_constant<int, 4>;
  using R8 = std::integral_constant<int, 8>;
  if (m == 1) return block(R1{}, R8{}, 0, 1);
  if (m == 2) return block(R2{}, R4{}, 0, 2);
  if (m <= 4) return block(R4{}, R2{}, 0, static_cast<int>(m));
  for (int64_t r0 = 0; r0 < m; r0 += 8) block(R8{}, R1{}, r0, static_cast<int>(std::min<int64_t>(8, m - r0)));
}

}  // namespace qdev::kernels
