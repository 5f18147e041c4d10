// int4 x int4 -> int32 GEMM with in-register nibble unpacking (the A4W4 path).
//
// B (k x n, int4) is repacked once per call from torch_npu's int32 packing into
// "NZ4-VNNI": the int8 NZ-VNNI layout of qd_qgemm.h at half the bytes. A
// fractal (16 k x 32 n) takes 256 bytes, ordered [k4-group 4][n-half 2][n 16][2 bytes];
// byte (n, j) holds k = 2j in its low and k = 2j + 1 in its high nibble, each
// biased by +8 (nibble ^ 8) so that it reads as u8 0..15. The kernel widens
// 32 bytes into one 64-byte vpdpbusd operand (u8 B x s8 A, A broadcast) and
// removes the bias with the row sums of A: sum (b + 8) a = sum b a + 8 sum a.
#pragma once

#include <cstdint>

#include "qd_qgemm.h"

namespace qdev::kernels {

constexpr int64_t kNz4FractalBytes = kNzFractalBytes / 2;

static inline int64_t nz4_packed_bytes(int64_t k, int64_t n) { return nz_packed_bytes(k, n) / 2; }

struct QGemmS4Args {
  int64_t m = 0, n = 0, k = 0;
  const int8_t* a = nullptr;        // int8 values of A (in [-8, 7]), rows of lda bytes, zero padded
  int64_t lda = 0;                  // >= round_up(k, 16)
  const int32_t* a_rowsum = nullptr;  // per row of A
  const uint8_t* b = nullptr;       // NZ4-VNNI packed
  void* c = nullptr;
  int64_t ldc = 0;
  QGemmEpilogue ep;
};

// B as torch_npu packs it: int32 words of 8 nibbles, least significant first.
//   n-packed: B[i][j] is nibble j % 8 of words[i * row_words + j / 8]   (x2 of shape (k, n / 8))
//   k-packed: B[i][j] is nibble i % 8 of words[j * row_words + i / 8]   (x2 = (n, k / 8) transposed)
void pack_b_nz4_from_int4(Isa isa, const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                          uint8_t* packed, int64_t n_begin, int64_t n_end);
void pack_b_nz4_from_int4_ref(const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                              uint8_t* packed, int64_t n_begin, int64_t n_end);
// n-packed x2 two panels at a time (AVX2 and up); the rest through the reference.
void pack_b_nz4_from_int4_avx2(const uint32_t* words, int64_t k, int64_t n, bool k_packed, int64_t row_words,
                               uint8_t* packed, int64_t n_begin, int64_t n_end);

void qgemm4_panels(Isa isa, const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end);
void qgemm4_panels_ref(const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end);
void qgemm4_panels_avx512vnni(const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end);
// Whether qgemm4_panels has a fast path for this variant (else unpack to int8 is faster).
bool qgemm4_has_kernel(Isa isa);

}  // namespace qdev::kernels
