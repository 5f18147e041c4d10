// Scaled dot-product attention on qdev: ATen chooses the backend exactly as it would for CPU
// tensors, so qdev gets CPU's fused flash-attention kernel (run on host aliases by the fallback)
// instead of the unfused math path (bmm, softmax, masks: several times slower per decode step).
#include <ATen/ops/_fused_sdp_choice.h>
#include <ATen/native/DispatchStub.h>
#include <ATen/native/transformers/attention.h>

#include "QdevFormat.h"

namespace at::native {
namespace {

int64_t qdev_fused_sdp_choice(const Tensor& query, const Tensor& key, const Tensor& value,
                              const std::optional<Tensor>& attn_mask, double dropout_p, bool is_causal,
                              std::optional<double> scale, bool enable_gqa) {
  // CPU's rules read only shapes, strides, dtypes and global flags: ask them through host aliases.
  std::optional<Tensor> mask;
  if (attn_mask.has_value() && attn_mask->defined()) mask = qdev::logical_host_view(*attn_mask);
  return at::_fused_sdp_choice(qdev::logical_host_view(query), qdev::logical_host_view(key),
                               qdev::logical_host_view(value), mask, dropout_p, is_causal, scale, enable_gqa);
}

}  // namespace

REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &qdev_fused_sdp_choice)

}  // namespace at::native
