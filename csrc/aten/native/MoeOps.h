// torch_npu's Mixture-of-Experts inference ops on qdev and CPU tensors: the grouped
// GEMM and the routing / activation / norm + quantization ops around it.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

namespace at::native::qdev {

std::vector<at::Tensor> npu_grouped_matmul(
    at::TensorList x, at::TensorList weight, std::optional<at::TensorList> bias,
    std::optional<at::TensorList> scale, std::optional<at::TensorList> offset,
    std::optional<at::TensorList> antiquant_scale, std::optional<at::TensorList> antiquant_offset,
    std::optional<at::TensorList> per_token_scale, const std::optional<at::Tensor>& group_list,
    std::optional<at::TensorList> activation_input, std::optional<at::TensorList> activation_quant_scale,
    std::optional<at::TensorList> activation_quant_offset, std::optional<int64_t> split_item,
    std::optional<int64_t> group_type, std::optional<int64_t> group_list_type, std::optional<int64_t> act_type,
    at::OptionalIntArrayRef tuning_config, std::optional<int64_t> output_dtype);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> npu_moe_init_routing_v2(
    const at::Tensor& x, const at::Tensor& expert_idx, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& offset, int64_t active_num, int64_t expert_capacity, int64_t expert_num,
    int64_t drop_pad_mode, int64_t expert_tokens_num_type, bool expert_tokens_num_flag, int64_t quant_mode,
    at::IntArrayRef active_expert_range, int64_t row_idx_type);
at::Tensor npu_moe_finalize_routing(const at::Tensor& expanded_permuted_rows, const std::optional<at::Tensor>& skip1,
                                    const std::optional<at::Tensor>& skip2, const std::optional<at::Tensor>& bias,
                                    const std::optional<at::Tensor>& scales, const at::Tensor& expanded_src_to_dst_row,
                                    const std::optional<at::Tensor>& export_for_source_row,
                                    std::optional<int64_t> drop_pad_mode);
at::Tensor npu_moe_token_unpermute(const at::Tensor& permuted_tokens, const at::Tensor& sorted_indices,
                                   const std::optional<at::Tensor>& probs, bool padded_mode,
                                   at::OptionalIntArrayRef restore_shape);

std::tuple<at::Tensor, at::Tensor> npu_dequant_swiglu_quant(
    const at::Tensor& x, const std::optional<at::Tensor>& weight_scale,
    const std::optional<at::Tensor>& activation_scale, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& quant_scale, const std::optional<at::Tensor>& quant_offset,
    const std::optional<at::Tensor>& group_index, bool activate_left, int64_t quant_mode);
at::Tensor npu_swiglu(const at::Tensor& x, int64_t dim);
std::tuple<at::Tensor, at::Tensor> npu_swiglu_quant(const at::Tensor& x, const std::optional<at::Tensor>& smooth_scales,
                                                    const std::optional<at::Tensor>& offsets,
                                                    const std::optional<at::Tensor>& group_index, bool activate_left,
                                                    int64_t quant_mode, int64_t group_list_type,
                                                    std::optional<int64_t> dst_type);
std::tuple<at::Tensor, at::Tensor, at::Tensor> npu_add_rms_norm_quant(
    const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& gamma, const at::Tensor& scales1,
    const std::optional<at::Tensor>& zero_points1, const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& scales2, const std::optional<at::Tensor>& zero_points2, int64_t axis,
    double epsilon, bool div_mode);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> npu_add_rms_norm_dynamic_quant(
    const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& gamma, const std::optional<at::Tensor>& smooth_scale1,
    const std::optional<at::Tensor>& smooth_scale2, const std::optional<at::Tensor>& beta, double epsilon,
    std::optional<std::array<bool, 2>> output_mask);

at::Tensor npu_quantize(const at::Tensor& self, const at::Tensor& scales, const std::optional<at::Tensor>& zero_points,
                        at::ScalarType dtype, int64_t axis, bool div_mode);
at::Tensor npu_anti_quant(const at::Tensor& x, const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                          std::optional<int64_t> dst_dtype, std::optional<int64_t> src_dtype);

}  // namespace at::native::qdev
