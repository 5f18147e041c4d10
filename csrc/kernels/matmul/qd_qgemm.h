// int8 x int8 -> int32 GEMM with fused output stages (the A8W8 path).
//
//   C[m, n] = epilogue( sum_k A[m, k] * B[k, n] )
//
// Pipeline (FBGEMM's pack -> compute -> output split):
//   pack:     A is stored as u8 = a + 128 (VNNI multiplies u8 by s8), rows padded
//             to a multiple of 16 bytes; B is packed once into the NZ-VNNI layout
//             below, with its column sums (the +128 correction).
//   compute:  a micro-kernel produces an int32 tile of up to kMr rows x 32 columns.
//   epilogue: int32 -> (+int32 bias) -> int32 | int8 requant | scaled fp16/bf16/fp32.
//
// NZ-VNNI layout of B (k x n, int8). It is FRACTAL_NZ with C0 = 32: fractals of
// 16 k-rows x 32 n-columns, stored column-panel-major, so that one 32-wide panel
// over all of k is contiguous. Inside a fractal (512 bytes) the order is
//   [k4-group g: 4][n-half h: 2][n: 16][k: 4]   (byte g*128 + h*64 + n*4 + k)
// i.e. each 64-byte row is one zmm operand of vpdpbusd for 16 columns x 4 k.
// Padding (k up to a multiple of 16, n up to 32) is zero.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

constexpr int64_t kNzRows = 16;   // k rows per fractal
constexpr int64_t kNzCols = 32;   // n columns per fractal (C0 of int8)
constexpr int64_t kNzFractalBytes = kNzRows * kNzCols;
// Callers feed qgemm_panels row blocks of about this many A bytes (L2-resident).
constexpr int64_t kRowBlockBytes = int64_t{512} << 10;

// Bytes of the packed B for a k x n matrix (= torch_npu's FRACTAL_NZ size for int8).
static inline int64_t nz_packed_bytes(int64_t k, int64_t n) {
  return ((n + kNzCols - 1) / kNzCols) * ((k + kNzRows - 1) / kNzRows) * kNzFractalBytes;
}
// Byte offset of B[k][n] inside the packed buffer.
static inline int64_t nz_offset(int64_t k, int64_t n, int64_t k_total) {
  const int64_t k_blocks = (k_total + kNzRows - 1) / kNzRows;
  const int64_t fractal = (n / kNzCols) * k_blocks + k / kNzRows;
  const int64_t kr = k % kNzRows, nc = n % kNzCols;
  return fractal * kNzFractalBytes + (kr / 4) * 128 + (nc / 16) * 64 + (nc % 16) * 4 + kr % 4;
}

enum class QGemmOut : int { kInt32, kInt8, kFloat16, kBFloat16, kFloat32 };

// Output stage. Per element (row r, column j):
//   t = acc + bias_i32[j]                                   (int32)
//   kInt32:   t
//   kInt8:    clamp(clamp(rint(float(t) * scale[j]), -256, 255) + offset[j], -128, 127)
//   float:    round_to_out( ((float(t) * scale[j]) * pertoken[r]) + bias_f[j] )
// Missing terms are skipped. scale/offset have stride 0 (per tensor) or 1 (per column).
struct QGemmEpilogue {
  QGemmOut out = QGemmOut::kInt32;
  const float* scale = nullptr;
  int64_t scale_stride = 0;
  const int32_t* offset = nullptr;
  int64_t offset_stride = 0;
  const float* pertoken = nullptr;  // per row of A
  const int32_t* bias_i32 = nullptr;
  const float* bias_f = nullptr;
};

struct QGemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const uint8_t* a = nullptr;       // u8 (a + 128), m rows of lda bytes, lda >= round_up(k, 16)
  int64_t lda = 0;
  const int8_t* b = nullptr;        // NZ-VNNI packed
  const int32_t* b_colsum = nullptr;  // per column, sum over k of B
  bool b_has_min = true;  // B may hold -128 (false enables AVX2's faster sign-trick path)
  void* c = nullptr;                // output, row stride ldc elements
  int64_t ldc = 0;
  QGemmEpilogue ep;
};

// Computes the 32-wide column panels [panel_begin, panel_end) for all rows.
// Panels are independent: callers split them across threads.
void qgemm_panels(Isa isa, const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);
static inline int64_t qgemm_num_panels(int64_t n) { return (n + kNzCols - 1) / kNzCols; }

// Per-variant entry points (compiled only when the toolchain supports the ISA).
void qgemm_panels_ref(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);
void qgemm_panels_avx2(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);
void qgemm_panels_avx512vnni(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);
// aarch64: sdot tiles (decode-shaped), and smmla tiles for m >= 2 (prefill).
void qgemm_panels_neon_dotprod(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);
void qgemm_panels_neon_i8mm(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end);

// The AVX-512 output stage (compiled in the VNNI translation unit).
void qgemm_epilogue_avx512vnni(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0,
                               int rows, int64_t c0, int64_t cols);

// The scalar output stage for rows [r0, r0+rows) x columns [c0, c0+cols) of an
// int32 tile (row stride ld_tile); the reference for every SIMD epilogue.
void qgemm_epilogue_ref(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0,
                        int64_t rows, int64_t c0, int64_t cols);

// --- packing ------------------------------------------------------------------
// B (k x n int8, element (i, j) at b[i*stride_k + j*stride_n]) -> NZ-VNNI + column sums.
// colsum may be null. Columns [n_begin, n_end) only (multiples of 32 except the last).
void pack_b_nz_ref(const int8_t* b, int64_t k, int64_t n, int64_t stride_k, int64_t stride_n,
                   int8_t* packed, int32_t* colsum, int64_t n_begin, int64_t n_end);
// NZ-VNNI -> B (k x n) at b[i*stride_k + j*stride_n].
void unpack_b_nz_ref(const int8_t* packed, int64_t k, int64_t n, int8_t* b, int64_t stride_k,
                     int64_t stride_n);
// Column sums of a packed B, for columns [n_begin, n_end).
void colsum_b_nz(const int8_t* packed, int64_t k, int64_t n, int32_t* colsum, int64_t n_begin,
                 int64_t n_end);
// Whether any of the n bytes equals -128.
bool has_int8_min(const int8_t* data, int64_t n);
// Rows of A (int8, row stride lda_in) -> u8 (a + 128), padded with 128 to ld_out bytes.
void pack_a_u8(const int8_t* a, int64_t m, int64_t k, int64_t lda_in, uint8_t* out, int64_t ld_out);

}  // namespace qdev::kernels
