// Argument checks of the quantized ops, shared by the CPU/qdev kernels
// (csrc/aten/native): each op's plan function raises torch_npu's error messages
// and returns what the kernels need (shapes, batch, output dtype, modes). The
// CUDA (Triton) path mirrors them in torch_qdev/triton/_checks.py, and its tests
// compare the messages with these, so every device rejects the same inputs with
// the same words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace at::native::qdev {

// npu_quant_matmul (QuantMatmul.cpp).
struct QuantMatmulPlan {
  bool a4w4 = false;
  bool a4w4_group = false;   // A4W4 per-group: 2-D scale (ceil(k/G), n), float16 offset
  bool a8w4 = false;         // A8W4: int8 x1, int32-packed int4 x2 (k, n/8), int64 scale (k/G, n)
  int64_t group = 0;         // the k-group size (A4W4 per-group, A8W4)
  bool x2_k_packed = false;  // A4W4 x2 given as (k/8, n): the transpose of an (n, k/8) packing
  std::vector<int64_t> batch;
  int64_t m = 0, k = 0, n = 0;
  at::ScalarType out_dtype = at::kChar;
  std::vector<int64_t> out_shape;
};
QuantMatmulPlan plan_quant_matmul(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                                  const std::optional<at::Tensor>& offset, const std::optional<at::Tensor>& pertoken,
                                  const std::optional<at::Tensor>& bias, std::optional<int64_t> output_dtype,
                                  std::optional<int64_t> x1_dtype, std::optional<int64_t> x2_dtype,
                                  std::optional<int64_t> pertoken_scale_dtype, std::optional<int64_t> scale_dtype,
                                  at::OptionalIntArrayRef group_sizes, const std::optional<at::Tensor>& y_scale);

// npu_dynamic_quant(_asymmetric) (DynamicQuant.cpp).
enum class DynamicQuantMode { kPerToken, kPerTensor, kPerChannel };
struct DynamicQuantPlan {
  DynamicQuantMode mode = DynamicQuantMode::kPerToken;
  bool int4 = false;
  float dst_max = 127.0f, dst_min = -128.0f;
  std::vector<int64_t> y_shape, scale_shape;
  int64_t h = 0;
};
DynamicQuantPlan plan_dynamic_quant(const at::Tensor& x, const std::optional<at::Tensor>& smooth,
                                    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
                                    c10::string_view quant_mode, double dst_type_max);

// npu_trans_quant_param (TransQuantParam.cpp): checks; returns the output shape.
std::vector<int64_t> trans_quant_param_shape(const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                                             std::optional<int64_t> round_mode);

// dyn_quant_pack_4bit_weight / dyn_quant_matmul_4bit (DynQuant4bit.cpp): checks
// that do not depend on the packed buffer's kernel family.
void check_dyn_quant_pack_args(const at::Tensor& weights, const at::Tensor& scales,
                               const std::optional<at::Tensor>& bias, int64_t block_size, int64_t in_features,
                               int64_t out_features);
void check_dyn_quant_matmul_args(const at::Tensor& inp, const at::Tensor& packed, int64_t block_size,
                                 int64_t in_features);
// Once a packed buffer's header is read: its K, N and group must be the call's; returns the output
// shape (the input's with the last dimension out_features).
std::vector<int64_t> dyn_quant_matmul_out_shape(const at::Tensor& inp, int64_t packed_k, int64_t packed_n,
                                                int64_t packed_group, int64_t in_features, int64_t out_features,
                                                int64_t block_size);

}  // namespace at::native::qdev
