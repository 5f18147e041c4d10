// The qdev operator library: torch_npu's quantized-inference ops as
// torch.ops.qdev.*, with kernels for qdev tensors and CPU tensors.
#include <torch/library.h>

#include "../kernels/common/qd_cpu_features.h"
#include "native/QdevFormat.h"
#include "native/QuantOps.h"

namespace at::native::qdev {

std::string cpu_isa() { return ::qdev::kernels::isa_name(::qdev::kernels::active_isa()); }

bool set_cpu_isa(const std::string& name) {
  ::qdev::kernels::Isa isa;
  return ::qdev::kernels::parse_isa(name.c_str(), &isa) && ::qdev::kernels::set_active_isa(isa);
}

std::vector<std::string> supported_cpu_isas() {
  std::vector<std::string> out;
  for (int i = 0; i < ::qdev::kernels::kNumIsas; ++i) {
    const auto isa = static_cast<::qdev::kernels::Isa>(i);
    if (::qdev::kernels::isa_supported(isa)) out.emplace_back(::qdev::kernels::isa_name(isa));
  }
  return out;
}

bool cpu_avx512_bf16() { return ::qdev::kernels::cpu_avx512_bf16(); }
bool set_cpu_avx512_bf16(bool on) { return ::qdev::kernels::set_cpu_avx512_bf16(on); }

}  // namespace at::native::qdev

namespace at::qdev {

namespace native = at::native::qdev;

// Schemas follow the newest torch_npu (op-plugin master); dtype arguments are
// ints (torch.dtype values are accepted), keyword-only as upstream.
TORCH_LIBRARY(qdev, m) {
  m.set_python_module("torch_qdev.ops");
  m.def("npu_trans_quant_param(Tensor scale, Tensor? offset=None, int? round_mode=0) -> Tensor");
  m.def("npu_quant_matmul(Tensor x1, Tensor x2, Tensor scale, *, Tensor? offset=None, "
        "Tensor? pertoken_scale=None, Tensor? bias=None, int? output_dtype=None, int? x1_dtype=None, "
        "int? x2_dtype=None, int? pertoken_scale_dtype=None, int? scale_dtype=None, "
        "int[]? group_sizes=None, Tensor? y_scale=None) -> Tensor");
  m.def("npu_dynamic_quant(Tensor input, *, Tensor? smooth_scales=None, Tensor? group_index=None, "
        "int? dst_type=None, str quant_mode=\"pertoken\", float dst_type_max=0.0) -> (Tensor, Tensor)");
  m.def("npu_dynamic_quant_asymmetric(Tensor input, *, Tensor? smooth_scales=None, "
        "Tensor? group_index=None, int? dst_type=None, str quant_mode=\"pertoken\", "
        "float dst_type_max=0.0) -> (Tensor, Tensor, Tensor)");
  m.def("npu_format_cast(Tensor self, int acl_format, *, int? customize_dtype=None, "
        "int? input_dtype=None) -> Tensor");
  m.def("npu_format_cast.Tensor(Tensor self, Tensor dst, *, int? customize_dtype=None, "
        "int? input_dtype=None) -> Tensor");
  m.def("npu_format_cast_.acl_format(Tensor(a!) self, int acl_format, *, int? customize_dtype=None, "
        "int? input_dtype=None) -> Tensor(a!)");
  m.def("npu_format_cast_(Tensor(a!) self, Tensor src, *, int? customize_dtype=None, "
        "int? input_dtype=None) -> Tensor(a!)");
  m.def("get_npu_format(Tensor self) -> int");
  m.def("get_storage_size(Tensor self) -> int");
  m.def("npu_convert_weight_to_int4pack(Tensor weight, int inner_k_tiles=0) -> Tensor");
  m.def("npu_weight_quant_batchmatmul(Tensor x, Tensor weight, Tensor antiquant_scale, "
        "Tensor? antiquant_offset=None, Tensor? quant_scale=None, Tensor? quant_offset=None, "
        "Tensor? bias=None, int antiquant_group_size=0, int inner_precise=0, int? weight_dtype=None) -> Tensor");
  m.def("dyn_quant_pack_4bit_weight(Tensor weights, Tensor scales_zeros, Tensor? bias, int block_size, "
        "int in_features, int out_features) -> Tensor");
  m.def("dyn_quant_matmul_4bit(Tensor inp, Tensor packed_weights, int block_size, int in_features, "
        "int out_features) -> Tensor");
  // torch_qdev's asymmetric extension: weight = scale * (nibble - 8) + zero per group
  m.def("dyn_quant_pack_4bit_weight_asym(Tensor weights, Tensor scales, Tensor zeros, Tensor? bias, "
        "int block_size, int in_features, int out_features) -> Tensor");
  m.def("int4_group_search(Tensor w, Tensor? importance, float[] deltas, int qmax=15) -> (Tensor, Tensor)");
}

// qdev tensors and plain CPU tensors run the same kernels (qdev memory is host
// memory); formats exist only on qdev, so on the CPU the format ops raise
// torch_npu's "Expected NPU tensor" error (with qdev).
void register_kernels(torch::Library& m) {
  m.impl("npu_trans_quant_param", native::npu_trans_quant_param);
  m.impl("npu_quant_matmul", native::npu_quant_matmul);
  m.impl("npu_dynamic_quant", native::npu_dynamic_quant);
  m.impl("npu_dynamic_quant_asymmetric", native::npu_dynamic_quant_asymmetric);
  m.impl("npu_format_cast", native::npu_format_cast);
  m.impl("npu_format_cast.Tensor", native::npu_format_cast_tensor);
  m.impl("npu_format_cast_.acl_format", native::npu_format_cast_inplace);
  m.impl("npu_format_cast_", native::npu_format_cast_inplace_tensor);
  m.impl("get_npu_format", native::get_npu_format);
  m.impl("get_storage_size", native::get_storage_size);
  m.impl("npu_convert_weight_to_int4pack", native::npu_convert_weight_to_int4pack);
  m.impl("npu_weight_quant_batchmatmul", native::npu_weight_quant_batchmatmul);
  m.impl("dyn_quant_pack_4bit_weight", native::dyn_quant_pack_4bit_weight);
  m.impl("dyn_quant_matmul_4bit", native::dyn_quant_matmul_4bit);
  m.impl("dyn_quant_pack_4bit_weight_asym", native::dyn_quant_pack_4bit_weight_asym);
  m.impl("int4_group_search", native::int4_group_search);
}

TORCH_LIBRARY_IMPL(qdev, PrivateUse1, m) { register_kernels(m); }
TORCH_LIBRARY_IMPL(qdev, CPU, m) { register_kernels(m); }

// PyTorch's own dynamic 4-bit pair, for qdev tensors (code written for the
// KleidiAI path runs unchanged on qdev).
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_dyn_quant_pack_4bit_weight", native::aten_dyn_quant_pack_4bit_weight);
  m.impl("_dyn_quant_matmul_4bit", native::dyn_quant_matmul_4bit);
}

// Fake (meta) kernels are Python (torch_qdev/ops.py): they must handle
// symbolic sizes under torch.compile's dynamic shapes.

}  // namespace at::qdev
