// Row kernels of the MoE / norm ops (torch-free): each handles one row of fp32 values
// (the glue widens fp16/bf16 once).
//
//   rms_norm_row:        y = x / sqrt(mean(x^2) + eps) * gamma (+ beta)             (fp32)
//   swiglu_row:          y = silu(a) * b, a/b the left/right halves (activate_left) (fp32)
//   quant_row_dynamic:   s = max|y * smooth| / 127, q = rint(y * smooth / s), saturated
//                        (npu_dynamic_quant's per-token rule; s = 0 and q = 0 for a zero row)
//   quant_row_static:    q = rint(y / scale + zp) (div) or rint(y * scale + zp), saturated
//
// Variants: scalar reference and AVX-512 (chosen by the Isa argument). quant_row_* are
// bit-identical across variants (same operations per element, RNE rounding); rms_norm_row sums
// the squares in another order, and swiglu_row's vector exp is within 2 ulp of libm's.
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

struct MoeRowKernels {
  float (*rms_norm_row)(const float* x, int64_t h, const float* gamma, const float* beta, float eps, float* y);
  void (*swiglu_row)(const float* x, int64_t h, bool activate_left, float* y);
  float (*quant_row_dynamic)(const float* y, int64_t h, const float* smooth, int8_t* q);
  void (*quant_row_static)(const float* y, int64_t h, const float* scale, const float* zp, bool div_mode, int8_t* q);
};

// The variant for isa (the reference where no faster one exists).
const MoeRowKernels& moe_row_kernels(Isa isa);

// Reference entry points (also the tests' oracle).
float rms_norm_row(const float* x, int64_t h, const float* gamma, const float* beta, float eps, float* y);
void swiglu_row(const float* x, int64_t h, bool activate_left, float* y);
float quant_row_dynamic(const float* y, int64_t h, const float* smooth, int8_t* q);
void quant_row_static(const float* y, int64_t h, const float* scale, const float* zp, bool div_mode, int8_t* q);

const MoeRowKernels& moe_row_kernels_avx512();

}  // namespace qdev::kernels
