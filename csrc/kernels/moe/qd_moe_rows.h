// Row kernels of the MoE / norm ops (torch-free): each handles rows [r0, r1) of a
// row-major matrix and reads/writes fp32 rows (the glue widens fp16/bf16 once).
//
//   add_rms_norm_row:    x = x1 + x2 (rounded to the activation dtype by the caller),
//                        y = x / sqrt(mean(x^2) + eps) * gamma (+ beta)         (fp32)
//   swiglu_row:          y = silu(a) * b, a/b the left/right halves (activate_left) (fp32)
//   quant_row_dynamic:   s = max|y * smooth| / 127, q = rint(y * smooth / s), saturated
//                        (npu_dynamic_quant's per-token rule; s = 0 and q = 0 for a zero row)
//   quant_row_static:    q = rint(y / scale + zp) (div) or rint(y * scale + zp), saturated
#pragma once

#include <cstdint>

namespace qdev::kernels {

// y[i] = x[i] * inv_rms * gamma[i] (+ beta[i]); returns inv_rms.
float rms_norm_row(const float* x, int64_t h, const float* gamma, const float* beta, float eps, float* y);
void swiglu_row(const float* x, int64_t h, bool activate_left, float* y);
// Returns the scale; q gets h int8 values. smooth may be null.
float quant_row_dynamic(const float* y, int64_t h, const float* smooth, int8_t* q);
void quant_row_static(const float* y, int64_t h, const float* scale, const float* zp, bool div_mode, int8_t* q);

}  // namespace qdev::kernels
