// The MoE part of the qdev operator library (torch_npu's grouped GEMM and the routing,
// activation, norm + quantization and static (de)quantization ops around it), kept apart from the dense ops'
// registration. Fake kernels are Python (torch_qdev/ops_moe.py).
#include <torch/library.h>

#include "native/MoeOps.h"

namespace at::qdev {

namespace native = at::native::qdev;

TORCH_LIBRARY_FRAGMENT(qdev, m) {
  m.set_python_module("torch_qdev.ops_moe");
  m.def("npu_grouped_matmul(Tensor[] x, Tensor[] weight, *, Tensor[]? bias=None, Tensor[]? scale=None, "
        "Tensor[]? offset=None, Tensor[]? antiquant_scale=None, Tensor[]? antiquant_offset=None, "
        "Tensor[]? per_token_scale=None, Tensor? group_list=None, Tensor[]? activation_input=None, "
        "Tensor[]? activation_quant_scale=None, Tensor[]? activation_quant_offset=None, int? split_item=0, "
        "int? group_type=-1, int? group_list_type=0, int? act_type=0, int[]? tuning_config=None, "
        "int? output_dtype=None) -> Tensor[]");
  m.def("npu_moe_init_routing_v2(Tensor x, Tensor expert_idx, *, Tensor? scale=None, Tensor? offset=None, "
        "int active_num=-1, int expert_capacity=-1, int expert_num=-1, int drop_pad_mode=0, "
        "int expert_tokens_num_type=0, bool expert_tokens_num_flag=False, int quant_mode=0, "
        "int[] active_expert_range=[], int row_idx_type=0) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("npu_moe_finalize_routing(Tensor expanded_permuted_rows, Tensor? skip1, Tensor? skip2, Tensor? bias, "
        "Tensor? scales, Tensor expanded_src_to_dst_row, Tensor? export_for_source_row, int? drop_pad_mode=0) "
        "-> Tensor");
  m.def("npu_moe_token_unpermute(Tensor permuted_tokens, Tensor sorted_indices, Tensor? probs=None, "
        "bool padded_mode=False, int[]? restore_shape=None) -> Tensor");
  m.def("npu_dequant_swiglu_quant(Tensor x, *, Tensor? weight_scale=None, Tensor? activation_scale=None, "
        "Tensor? bias=None, Tensor? quant_scale=None, Tensor? quant_offset=None, Tensor? group_index=None, "
        "bool activate_left=False, int quant_mode=0) -> (Tensor, Tensor)");
  m.def("npu_swiglu(Tensor x, int dim=-1) -> Tensor");
  m.def("npu_swiglu_quant(Tensor x, *, Tensor? smooth_scales=None, Tensor? offsets=None, Tensor? group_index=None, "
        "bool activate_left=False, int quant_mode=0, int group_list_type=0, int? dst_type=None) -> (Tensor, Tensor)");
  m.def("npu_add_rms_norm_quant(Tensor x1, Tensor x2, Tensor gamma, Tensor scales1, Tensor? zero_points1=None, "
        "Tensor? beta=None, Tensor? scales2=None, Tensor? zero_points2=None, int axis=-1, float epsilon=1e-06, "
        "bool div_mode=True) -> (Tensor, Tensor, Tensor)");
  m.def("npu_add_rms_norm_dynamic_quant(Tensor x1, Tensor x2, Tensor gamma, *, Tensor? smooth_scale1=None, "
        "Tensor? smooth_scale2=None, Tensor? beta=None, float epsilon=1e-06, bool[2]? output_mask=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("npu_quantize(Tensor self, Tensor scales, Tensor? zero_points, ScalarType dtype, int axis=1, "
        "bool div_mode=True) -> Tensor");
  m.def("npu_anti_quant(Tensor x, Tensor scale, *, Tensor? offset=None, int? dst_dtype=None, int? src_dtype=None) "
        "-> Tensor");
}

namespace {
void register_moe_kernels(torch::Library& m) {
  m.impl("npu_grouped_matmul", native::npu_grouped_matmul);
  m.impl("npu_moe_init_routing_v2", native::npu_moe_init_routing_v2);
  m.impl("npu_moe_finalize_routing", native::npu_moe_finalize_routing);
  m.impl("npu_moe_token_unpermute", native::npu_moe_token_unpermute);
  m.impl("npu_dequant_swiglu_quant", native::npu_dequant_swiglu_quant);
  m.impl("npu_swiglu", native::npu_swiglu);
  m.impl("npu_swiglu_quant", native::npu_swiglu_quant);
  m.impl("npu_add_rms_norm_quant", native::npu_add_rms_norm_quant);
  m.impl("npu_add_rms_norm_dynamic_quant", native::npu_add_rms_norm_dynamic_quant);
  m.impl("npu_quantize", native::npu_quantize);
  m.impl("npu_anti_quant", native::npu_anti_quant);
}
}  // namespace

TORCH_LIBRARY_IMPL(qdev, PrivateUse1, m) { register_moe_kernels(m); }
TORCH_LIBRARY_IMPL(qdev, CPU, m) { register_moe_kernels(m); }

}  // namespace at::qdev
