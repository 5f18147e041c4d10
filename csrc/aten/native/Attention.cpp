// Scaled dot-product attention on qdev: ATen chooses the backend exactly as it would for CPU
// tensors, so qdev gets CPU's fused flash-attention kernel instead of the unfused math path (bmm,
// softmax, masks: several times slower per decode step). qdev's flash kernel computes 16-bit
// inputs in fp32: CPU's bf16 kernel is never faster here and ~8x slower for decode (one query).
// Decode-sized calls (a few queries per head: one token, or Hugging Face's GQA packing of a head
// group's queries) run qdev's own kernel over the cache in place instead (no widened copies of K
// and V, masked cache tail skipped, no thread pool for one small step).
#include <ATen/Parallel.h>
#include <ATen/ops/_fused_sdp_choice.h>
#include <ATen/ops/_scaled_dot_product_flash_attention_for_cpu.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <torch/library.h>
#include <ATen/native/DispatchStub.h>
#include <ATen/native/transformers/attention.h>

#include "../../kernels/attention/qd_decode_attention.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QuantCommon.h"

namespace at::native {
namespace {

namespace k = ::qdev::kernels;

int64_t qdev_fused_sdp_choice(const Tensor& query, const Tensor& key, const Tensor& value,
                              const std::optional<Tensor>& attn_mask, double dropout_p, bool is_causal,
                              std::optional<double> scale, bool enable_gqa) {
  // CPU's rules read only shapes, strides, dtypes and global flags: ask them through host aliases,
  // or (fake tensors under torch.compile have no data) untouched CPU tensors of the same layout.
  const auto host = [](const Tensor& t) {
    if (!t.unsafeGetTensorImpl()->is_python_dispatch()) return qdev::logical_host_view(t);
    return at::empty_strided(t.sizes(), t.strides(), t.options().device(at::kCPU));
  };
  std::optional<Tensor> mask;
  if (attn_mask.has_value() && attn_mask->defined()) mask = host(*attn_mask);
  return at::_fused_sdp_choice(host(query), host(key), host(value), mask, dropout_p, is_causal, scale, enable_gqa);
}

// Queries per head up to which the decode kernel runs (its scores are kept whole per task).
constexpr int64_t kDecodeMaxQueries = 16;

bool decode_kernel_applies(const Tensor& q, const Tensor& key, const Tensor& value, double dropout_p,
                           const std::optional<Tensor>& attn_mask) {
  const auto dt = q.scalar_type();
  // Training keeps CPU flash's kernel (its backward); the decode kernel is for inference.
  if (q.requires_grad() || key.requires_grad() || value.requires_grad()) return false;
  if (dropout_p != 0.0 || q.dim() != 4 || key.dim() != 4 || value.dim() != 4) return false;
  if (dt != at::kFloat && dt != at::kBFloat16 && dt != at::kHalf) return false;
  if (key.scalar_type() != dt || value.scalar_type() != dt) return false;
  if (q.size(2) > kDecodeMaxQueries || q.size(2) == 0 || key.size(2) == 0) return false;
  if (q.size(0) != key.size(0) || key.size(0) != value.size(0) || key.size(1) != value.size(1)) return false;
  if (key.size(1) == 0 || q.size(1) % key.size(1) != 0 || key.size(2) != value.size(2)) return false;
  if (q.size(3) != key.size(3)) return false;
  if (qdev::is_internal_format(q) || qdev::is_internal_format(key) || qdev::is_internal_format(value)) return false;
  if (attn_mask.has_value() && attn_mask->defined()) {
    const Tensor& m = *attn_mask;
    if (m.scalar_type() != at::kBool && !m.is_floating_point()) return false;
    if (m.dim() > 4 || qdev::is_internal_format(m)) return false;
  }
  return true;
}

// Last dim with unit stride (the kernel's rows); a copy only when it is not.
Tensor rows_unit_stride(const Tensor& t) { return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous(); }

std::tuple<Tensor, Tensor> decode_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                            bool is_causal, const std::optional<Tensor>& attn_mask,
                                            std::optional<double> scale) {
  c10::DeviceGuard guard(query.device());
  if (query.device().type() == c10::DeviceType::PrivateUse1) c10::qdev::sync_current_stream(query.device().index());
  const int64_t B = query.size(0), H = query.size(1), L = query.size(2), D = query.size(3);
  const int64_t Hkv = key.size(1), S = key.size(2), Dv = value.size(3);
  // CPU flash's layouts (and its meta function's): out contiguous, lse a (B, L, H) buffer seen as (B, H, L).
  Tensor out = at::empty({B, H, L, Dv}, query.options());
  Tensor lse = at::empty({B, L, H}, query.options().dtype(at::kFloat)).transpose(1, 2);
  const Tensor q = rows_unit_stride(qdev::logical_host_view(query));
  const Tensor kc = rows_unit_stride(qdev::logical_host_view(key));
  const Tensor vc = rows_unit_stride(qdev::logical_host_view(value));
  const Tensor o = qdev::logical_host_view(out);
  k::DecodeAttnArgs a;
  a.type = query.scalar_type() == at::kBFloat16 ? k::FloatType::kBF16
           : query.scalar_type() == at::kHalf   ? k::FloatType::kF16
                                                : k::FloatType::kF32;
  a.batch = B; a.q_heads = H; a.kv_heads = Hkv; a.q_len = L; a.kv_len = S; a.head_dim = D; a.v_dim = Dv;
  a.q = q.const_data_ptr(); a.q_sb = q.stride(0); a.q_sh = q.stride(1); a.q_sl = q.stride(2);
  a.k = kc.const_data_ptr(); a.k_sb = kc.stride(0); a.k_sh = kc.stride(1); a.k_ss = kc.stride(2);
  a.v = vc.const_data_ptr(); a.v_sb = vc.stride(0); a.v_sh = vc.stride(1); a.v_ss = vc.stride(2);
  a.out = o.data_ptr(); a.o_sb = o.stride(0); a.o_sh = o.stride(1); a.o_sl = o.stride(2);
  a.scale = static_cast<float>(scale.has_value() ? *scale : 1.0 / std::sqrt(static_cast<double>(D)));
  a.causal = is_causal;
  const Tensor lse_h = qdev::logical_host_view(lse);
  a.lse = lse_h.mutable_data_ptr<float>();
  a.l_sb = lse_h.stride(0); a.l_sh = lse_h.stride(1); a.l_sl = lse_h.stride(2);
  Tensor mask;
  if (attn_mask.has_value() && attn_mask->defined()) {
    mask = qdev::logical_host_view(*attn_mask);
    if (mask.scalar_type() != at::kBool && mask.scalar_type() != at::kFloat) mask = mask.to(at::kFloat);
    mask = mask.expand({B, H, L, S});
    if (mask.stride(3) != 1) mask = mask.contiguous();
    a.mask_kind = mask.scalar_type() == at::kBool ? k::AttnMask::kBool : k::AttnMask::kF32;
    a.mask = mask.const_data_ptr();
    a.m_sb = mask.stride(0); a.m_sh = mask.stride(1); a.m_sl = mask.stride(2);
  }
  const k::Isa isa = k::active_isa();
  const int64_t tasks = B * Hkv;
  const int64_t rows = H / Hkv * L;
  const int64_t scratch = k::decode_attention_scratch_floats(a);
  at::parallel_for(0, tasks, qdev::parallel_grain(tasks, rows * S * (D + Dv)), [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(static_cast<size_t>(scratch));
    k::decode_attention(isa, a, t0, t1, buf.data());
  });
  return {out, lse};
}

std::tuple<Tensor, Tensor> qdev_flash_attention(const Tensor& query, const Tensor& key, const Tensor& value,
                                                double dropout_p, bool is_causal,
                                                const std::optional<Tensor>& attn_mask,
                                                std::optional<double> scale) {
  if (decode_kernel_applies(query, key, value, dropout_p, attn_mask)) {
    return decode_attention(query, key, value, is_causal, attn_mask, scale);
  }
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

// qdev::decode_attention: SDPA with grouped-query heads as one opaque op (a fake kernel in
// torch_qdev/attention.py), so that compiled graphs call the decode kernel instead of tracing
// attention into math. Calls the kernel does not take go to scaled_dot_product_attention.
Tensor decode_attention_op(const Tensor& query, const Tensor& key, const Tensor& value,
                           const std::optional<Tensor>& attn_mask, std::optional<double> scale, bool is_causal) {
  TORCH_CHECK(query.dim() == 4 && key.dim() == 4 && value.dim() == 4,
              "decode_attention: query, key and value must be 4-D (batch, heads, length, head_dim), got ",
              query.sizes(), ", ", key.sizes(), ", ", value.sizes());
  TORCH_CHECK(key.size(1) > 0 && query.size(1) % key.size(1) == 0,
              "decode_attention: query heads (", query.size(1), ") must be a multiple of key/value heads (",
              key.size(1), ")");
  TORCH_CHECK(query.device() == key.device() && key.device() == value.device() &&
                  (!attn_mask.has_value() || !attn_mask->defined() || attn_mask->device() == query.device()),
              "Expected all tensors to be on the same device");
  if (decode_kernel_applies(query, key, value, 0.0, attn_mask)) {
    return std::get<0>(decode_attention(query, key, value, is_causal, attn_mask, scale));
  }
  return at::scaled_dot_product_attention(query, key, value, attn_mask, 0.0, is_causal, scale,
                                          /*enable_gqa=*/query.size(1) != key.size(1));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(qdev, m) {
  m.def("decode_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float? scale=None, "
        "bool is_causal=False) -> Tensor");
}
TORCH_LIBRARY_IMPL(qdev, CPU, m) { m.impl("decode_attention", TORCH_FN(decode_attention_op)); }
TORCH_LIBRARY_IMPL(qdev, PrivateUse1, m) { m.impl("decode_attention", TORCH_FN(decode_attention_op)); }

TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("_scaled_dot_product_flash_attention_for_cpu", TORCH_FN(qdev_flash_attention));
}

REGISTER_PRIVATEUSE1_DISPATCH(_fused_sdp_choice_stub, &qdev_fused_sdp_choice)

}  // namespace at::native
