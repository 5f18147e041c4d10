// npu_trans_quant_param: float32 scale (+offset) -> torch_npu's packed int64.
#include <ATen/ops/empty.h>

#include "../../runtime/QdevStream.h"
#include "QuantCommon.h"
#include "QuantOps.h"
#include "QuantPlans.h"

namespace at::native::qdev {

// Checks of torch_npu's meta function; returns the output shape.
std::vector<int64_t> trans_quant_param_shape(const at::Tensor& scale,
                                             const std::optional<at::Tensor>& offset,
                                             std::optional<int64_t> round_mode) {
  check_required(scale, "npu_trans_quant_param", "scale");
  const int64_t mode = round_mode.value_or(0);
  TORCH_CHECK(mode == 0 || mode == 1, "round_mode must be 0 or 1. but now is ", mode);
  TORCH_CHECK(scale.scalar_type() == at::kFloat,
              "scale's dtype must be float32, but it is ", scale.scalar_type());
  TORCH_CHECK(scale.dim() == 1 || (scale.dim() == 2 && scale.size(0) == 1),
              "the scale shape support only (1, ) and (1, n)");
  TORCH_CHECK(scale.numel() > 0, "scale must not be empty");
  if (!offset.has_value() || !offset->defined()) return scale.sizes().vec();
  const at::Tensor& off = *offset;
  TORCH_CHECK(off.scalar_type() == at::kFloat,
              "offset's dtype must be float32, but it is ", off.scalar_type());
  if (scale.dim() == 2) {
    TORCH_CHECK(off.sizes() == scale.sizes(),
                "when the input shape of scale is (1, n), shape of scale and offset should be equal");
    return scale.sizes().vec();
  }
  TORCH_CHECK(off.dim() == 1 && off.numel() > 0, "the offset shape support only (1, ) and (n, )");
  const int64_t s = scale.size(0), o = off.size(0);
  TORCH_CHECK(s == o || s == 1 || o == 1,
              "offset first dim should be equal to scale first dim if none of them are equal to one");
  return {std::max(s, o)};
}


at::Tensor npu_trans_quant_param(const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                                 std::optional<int64_t> round_mode) {
  const auto shape = trans_quant_param_shape(scale, offset, round_mode);
  const bool has_offset = offset.has_value() && offset->defined();
  if (has_offset) {
    TORCH_CHECK(offset->device() == scale.device(), "Expected all tensors to be on the same device, "
                "but found at least two devices, ", scale.device(), " and ", offset->device(), "!");
  }
  if (scale.device().type() == c10::DeviceType::PrivateUse1) {
    c10::qdev::sync_current_stream(scale.device().index());
  }
  const at::Tensor s = scale.contiguous();
  const at::Tensor o = has_offset ? offset->contiguous() : at::Tensor();
  at::Tensor out = at::empty(shape, scale.options().dtype(at::kLong));
  const float* sp = s.const_data_ptr<float>();
  const float* op = has_offset ? o.const_data_ptr<float>() : nullptr;
  int64_t* dst = out.mutable_data_ptr<int64_t>();
  const int64_t n = out.numel(), ns = s.numel(), no = has_offset ? o.numel() : 0;
  const int64_t mode = round_mode.value_or(0);
  for (int64_t i = 0; i < n; ++i) {
    const float sv = sp[ns == 1 ? 0 : i];
    const float ov = has_offset ? op[no == 1 ? 0 : i] : 0.0f;
    dst[i] = pack_quant_param(sv, ov, has_offset, mode);
  }
  return out;
}

}  // namespace at::native::qdev
