#pragma once

#include <ATen/core/Tensor.h>

#include "QdevMacros.h"

#include <optional>
#include <tuple>

namespace at::native::qdev {

// torch_npu's quantized-inference ops; kernels for CPU and qdev tensors, and
// Meta kernels (shape and dtype checks only) for fake tensors / torch.compile.

at::Tensor npu_trans_quant_param(const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                                 std::optional<int64_t> round_mode);

at::Tensor npu_quant_matmul(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                            const std::optional<at::Tensor>& offset,
                            const std::optional<at::Tensor>& pertoken_scale,
                            const std::optional<at::Tensor>& bias,
                            std::optional<int64_t> output_dtype, std::optional<int64_t> x1_dtype,
                            std::optional<int64_t> x2_dtype,
                            std::optional<int64_t> pertoken_scale_dtype,
                            std::optional<int64_t> scale_dtype,
                            at::OptionalIntArrayRef group_sizes,
                            const std::optional<at::Tensor>& y_scale);

std::tuple<at::Tensor, at::Tensor> npu_dynamic_quant(
    const at::Tensor& input, const std::optional<at::Tensor>& smooth_scales,
    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
    c10::string_view quant_mode, double dst_type_max);
std::tuple<at::Tensor, at::Tensor, at::Tensor> npu_dynamic_quant_asymmetric(
    const at::Tensor& input, const std::optional<at::Tensor>& smooth_scales,
    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
    c10::string_view quant_mode, double dst_type_max);

// W4A8 dynamic (aten::_dyn_quant_* semantics); the aten pack returns a float32 container.
at::Tensor dyn_quant_pack_4bit_weight(const at::Tensor& weights, const at::Tensor& scales_zeros,
                                      const std::optional<at::Tensor>& bias, int64_t block_size,
                                      int64_t in_features, int64_t out_features);
at::Tensor aten_dyn_quant_pack_4bit_weight(const at::Tensor& weights, const at::Tensor& scales_zeros,
                                           const std::optional<at::Tensor>& bias, int64_t block_size,
                                           int64_t in_features, int64_t out_features);
// torch_qdev's asymmetric extension: zeros (N, K/group) like the scales; a version-4 buffer.
at::Tensor dyn_quant_pack_4bit_weight_asym(const at::Tensor& weights, const at::Tensor& scales,
                                           const at::Tensor& zeros, const std::optional<at::Tensor>& bias,
                                           int64_t block_size, int64_t in_features, int64_t out_features);
// The 4-bit recipe's per-group (scale, minimum) search (kernels/quant/qd_group_search.h).
std::tuple<at::Tensor, at::Tensor> int4_group_search(const at::Tensor& w, const std::optional<at::Tensor>& importance,
                                                     at::ArrayRef<double> deltas, int64_t qmax);
at::Tensor dyn_quant_matmul_4bit(const at::Tensor& inp, const at::Tensor& packed_weights, int64_t block_size,
                                 int64_t in_features, int64_t out_features);

at::Tensor npu_convert_weight_to_int4pack(const at::Tensor& weight, int64_t inner_k_tiles);
at::Tensor npu_weight_quant_batchmatmul(const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor& antiquant_scale,
                                        const std::optional<at::Tensor>& antiquant_offset,
                                        const std::optional<at::Tensor>& quant_scale,
                                        const std::optional<at::Tensor>& quant_offset,
                                        const std::optional<at::Tensor>& bias, int64_t antiquant_group_size,
                                        int64_t inner_precise, std::optional<int64_t> weight_dtype);

// Kernel-variant control, for tests and benchmarks (QDEV_CPU_ISA sets the start value).
QDEV_EXPORT std::string cpu_isa();
QDEV_EXPORT bool set_cpu_isa(const std::string& name);
QDEV_EXPORT std::vector<std::string> supported_cpu_isas();
// AVX512_BF16 inside the avx512vnni variant (QDEV_CPU_AVX512_BF16=0 starts it off);
// the setter returns the previous state and cannot turn it on where the CPU lacks it.
QDEV_EXPORT bool cpu_avx512_bf16();
QDEV_EXPORT bool set_cpu_avx512_bf16(bool on);

}  // namespace at::native::qdev
