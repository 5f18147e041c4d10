// Scaled dot-product attention on qdev: ATen chooses the backend exactly as it would for CPU
// tensors, so qdev gets CPU's fused flash-attention kernel instead of the unfused math path (bmm,
// softmax, masks: several times slower per decode step). qdev's flash kernel computes 16-bit
// inputs in fp32: CPU's bf16 kernel is never faster here and ~8x slower for decode (one query).
#include <ATen/ops/_fused_sdp_choice.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/empty_strided.h>
#include <torch/library.h>
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

std::tuple<Tensor, Tensor> qdev_flash_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                                double dropout_p, bool is_causal,
                                                const std::optional<Tensor>& attn_mask,
                                                std::optional<double> scale) {
  const bool widen = query.scalar_type() == at::kBFloat16 || query.scalar_type() == at::kHalf;
  const auto host = [&](const Tensor& t) {
    Tensor h = qdev::logical_host_view(t);
    return widen && h.is_floating_point() ? h.to(at::kFloat) : h;
  };
  std::optional<Tensor> mask;
  if (attn_mask.has_value() && attn_mask->defined()) mask = host(*attn_mask);
  auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(host(query), host(key), host(value), dropout_p,
                                                                    is_causal, mask, scale);
  // Same sizes and strides as CPU's results (its output is a (B, L, H, D) buffer seen as (B, H, L, D)).
  Tensor q_out = at::empty_strided(out.sizes(), out.strides(), query.options());
  qdev::logical_host_view(q_out).copy_(out);
  Tensor q_lse = at::empty_strided(lse.sizes(), lse.strides(), query.options().dtype(lse.scalar_type()));
  qdev::logical_host_view(q_lse).copy_(lse);
  return {q_out, q_lse};
}

}  // namespace

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_scaled_dot_product_flash_attention_for_cpu", TORCH_FN(qdev_flash_attention));
}

REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &qdev_fused_sdp_choice)

}  // namespace at::native
