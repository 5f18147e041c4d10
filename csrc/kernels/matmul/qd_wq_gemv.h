// Weight-only quantized GEMV (npu_weight_quant_batchmatmul for decode-sized M):
//   y[m, n] = sum_k x[m, k] * W'[k, n],  W'[k, n] = rnd(rnd(w[k, n] + off[g, n]) * scale[g, n])
// with rnd = rounding to the activation dtype (fp16 or bf16, round to nearest even)
// and g = k / group (group = k: per channel). Accumulation in fp32.
// Weights are int8, or int4 two per byte, stored row per output column (n, k) — the
// layout of an nn.Linear weight, i.e. x2 = weight.t() — so each column is one
// contiguous stream. For larger M the same dequantization fills W' panels for a
// dense GEMM (wq_dequant_rows).
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

struct WqGemvArgs {
  int64_t m = 0, n = 0, k = 0, group = 0;  // group == k: one scale per column; the last group may be short
  const float* x = nullptr;     // activation rows (fp16/bf16 values widened to fp32, exact), stride ldx
  int64_t ldx = 0;
  bool bf16 = false;            // the activation dtype: W' rounds to bf16 (else fp16)
  const int8_t* w = nullptr;    // (n, k), row stride ldw bytes
  int64_t ldw = 0;
  bool int4 = false;            // w rows hold k / 2 bytes: k even in the low nibble, two's complement
  const float* scale = nullptr;   // [groups][n] (values of the x dtype, widened)
  const float* offset = nullptr;  // [groups][n] or null
  float* y = nullptr;             // fp32 (m, n), row stride ldy
  int64_t ldy = 0;
};

void wq_gemv(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
// Up to how many rows the GEMV beats dequantized panels + a dense GEMM for these arguments:
// its cost grows with every row, the panels' is mostly the one dequantization (measured
// crossovers: 4 rows; with the vdpbf16ps GEMV 8 for int8 and 16 for int4 weights).
int64_t wq_gemv_max_rows(Isa isa, const WqGemvArgs& args);
void wq_gemv_ref(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
void wq_gemv_avx2(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
void wq_gemv_avx512(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);
// bf16 activations on CPUs with AVX512_BF16 (wq_gemv picks it for avx512vnni when
// cpu_avx512_bf16() allows and it takes the arguments): vdpbf16ps, sums in another
// order than the other variants, equal to fp32 rounding.
bool wq_gemv_avx512bf16_takes(const WqGemvArgs& args);
void wq_gemv_avx512bf16(const WqGemvArgs& args, int64_t n_begin, int64_t n_end);

// W' rows of columns [n_begin, n_end) as fp16/bf16 bits (args.bf16), exactly the values the GEMV
// multiplies: out[(j - n_begin) * ldo + kk] = W'[kk, j]. x and y are not used.
void wq_dequant_rows(Isa isa, const WqGemvArgs& args, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo);
void wq_dequant_rows_ref(const WqGemvArgs& args, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo);
void wq_dequant_rows_avx2(const WqGemvArgs& args, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo);
void wq_dequant_rows_avx512(const WqGemvArgs& args, int64_t n_begin, int64_t n_end, uint16_t* out, int64_t ldo);

}  // namespace qdev::kernels
