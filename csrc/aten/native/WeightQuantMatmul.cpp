// npu_convert_weight_to_int4pack and npu_weight_quant_batchmatmul (A16W8 / A16W4
// weight-only quantized matmul), torch_npu semantics (torch_npu_api.md §5).
// The weight-only matmul dequantizes with ATen ops on host views (exact
// rounding rules, no fused kernel yet).
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/tensor.h>
#include <ATen/Parallel.h>
#include <ATen/ops/mm.h>
#include <c10/core/DeviceGuard.h>

#include "../../kernels/matmul/qd_wq_gemv.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QuantCommon.h"
#include "QuantOps.h"

namespace at::native::qdev {
namespace {

bool is_transpose_last_two(const at::Tensor& t) {
  if (t.dim() < 2) return false;
  const int64_t r = t.size(-2), c = t.size(-1);
  if (r == 1 && c == 1) return false;
  return t.stride(-2) == 1 && t.stride(-1) == r;
}

// int8 output: the CANN requant of a float result (19-bit scale, 9-bit offset).
at::Tensor requant_int8(const at::Tensor& y, const std::optional<at::Tensor>& quant_scale,
                        const std::optional<at::Tensor>& quant_offset, const at::Tensor& like) {
  const at::Tensor qs = logical_host_view(*quant_scale);
  std::vector<float> sv, ov;
  if (qs.scalar_type() == at::kLong) {
    const at::Tensor c = qs.contiguous().reshape({-1});
    for (int64_t i = 0; i < c.numel(); ++i) {
      sv.push_back(unpack_scale(c.const_data_ptr<int64_t>()[i]));
      ov.push_back(static_cast<float>(unpack_offset(c.const_data_ptr<int64_t>()[i])));
    }
  } else {
    const at::Tensor c = qs.to(at::kFloat).contiguous().reshape({-1});
    for (int64_t i = 0; i < c.numel(); ++i) sv.push_back(bits_float(fp19_bits(c.const_data_ptr<float>()[i], 0)));
    ov.assign(sv.size(), 0.0f);
    if (quant_offset.has_value() && quant_offset->defined()) {
      const at::Tensor oc = logical_host_view(*quant_offset).to(at::kFloat).contiguous().reshape({-1});
      ov.assign(static_cast<size_t>(oc.numel()), 0.0f);
      for (int64_t i = 0; i < oc.numel(); ++i) {
        ov[static_cast<size_t>(i)] = static_cast<float>(offset9(oc.const_data_ptr<float>()[i]));
      }
    }
  }
  const at::Tensor s_f = at::tensor(sv, at::kFloat), o_f = at::tensor(ov, at::kFloat);
  const at::Tensor v = y.mul(s_f).clamp(-256, 255).round().add(o_f).clamp(-128, 127).to(at::kChar);
  at::Tensor out = at::empty(v.sizes(), like.options().dtype(at::kChar));
  logical_host_view(out).copy_(v);
  return out;
}

}  // namespace

at::Tensor npu_convert_weight_to_int4pack(const at::Tensor& weight, int64_t inner_k_tiles) {
  check_required(weight, "npu_convert_weight_to_int4pack", "weight");
  (void)inner_k_tiles;  // reserved, as in torch_npu
  TORCH_CHECK(weight.scalar_type() == at::kInt || weight.scalar_type() == at::kFloat,
              "weight dtype only support int32 and float32, but it is ", dtype_name(weight.scalar_type()));
  TORCH_CHECK_NOT_IMPLEMENTED(weight.scalar_type() == at::kInt,
                              "npu_convert_weight_to_int4pack: float32 (fp4 e2m1) weights are an Ascend 950 "
                              "feature and are not supported on qdev");
  TORCH_CHECK(weight.dim() == 2 || weight.dim() == 3, "weight shape only support dim num 2/3, but it is ",
              weight.dim());
  for (int64_t d : weight.sizes()) TORCH_CHECK(d > 0, "weight dim should be greater than 0");
  TORCH_CHECK(weight.size(-1) % 8 == 0, "weight last dim should be the multiple of 8, but it is ", weight.size(-1));
  TORCH_CHECK(weight.is_contiguous(), "weight should be contiguous");
  const bool nz = is_internal_format(weight);
  const at::Tensor w = logical_host_view(weight).contiguous();
  auto sizes = w.sizes().vec();
  sizes.back() /= 8;
  at::Tensor out = at::empty(sizes, weight.options());
  at::Tensor host = logical_host_view(out);
  const int32_t* src = w.const_data_ptr<int32_t>();
  uint32_t* dst = reinterpret_cast<uint32_t*>(host.mutable_data_ptr<int32_t>());
  pack_int4_words(src, dst, host.numel());
  // torch_npu re-lays an NZ input's result out as NZ with C0 = 8.
  return nz ? npu_format_cast(out, format::kFractalNZ, 3, std::nullopt) : out;
}

namespace {

// The common tail: y (fp32, x's batch shape) + bias, rounded through bf16 for bf16 x, then either
// x's dtype or the int8 requant (quant_scale).
at::Tensor finish_output(at::Tensor y, const at::Tensor& x, const std::optional<at::Tensor>& bias,
                         const std::optional<at::Tensor>& quant_scale,
                         const std::optional<at::Tensor>& quant_offset) {
  const auto xdt = x.scalar_type();
  if (defined(bias)) y = y.add(logical_host_view(*bias).to(at::kFloat));
  if (xdt == at::kBFloat16) y = y.to(at::kBFloat16).to(at::kFloat);
  if (defined(quant_scale)) return requant_int8(y, quant_scale, quant_offset, x);
  at::Tensor out = at::empty(y.sizes(), x.options().dtype(xdt));
  logical_host_view(out).copy_(y);
  return out;
}

// Scales / offsets of an nn.Linear-layout weight widened to the kernels' [groups][n] fp32 rows.
// The scale/offset rows the kernels read: (groups, n) fp32 holding values of the activation dtype.
// One strided loop: a module's (n, groups) parameter arrives transposed, and ATen's transposing
// float copy of such a small tensor costs ~10x the whole int4 GEMV at decode shapes.
template <class T>
void widen_rows(const at::Tensor& e, at::ScalarType xdt, float* out) {
  const T* src = e.const_data_ptr<T>();
  const int64_t rows = e.size(0), n = e.size(1), s0 = e.stride(0), s1 = e.stride(1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float v = static_cast<float>(src[r * s0 + j * s1]);
      out[r * n + j] = xdt == at::kBFloat16 ? static_cast<float>(c10::BFloat16(v)) : static_cast<float>(c10::Half(v));
    }
  }
}

at::Tensor kernel_rows(const at::Tensor& t, int64_t groups, int64_t n, at::ScalarType xdt) {
  const at::Tensor e = t.expand({groups, n});
  at::Tensor out = at::empty({groups, n}, e.options().dtype(at::kFloat));
  float* o = out.mutable_data_ptr<float>();
  switch (e.scalar_type()) {
    case at::kFloat: widen_rows<float>(e, xdt, o); break;
    case at::kBFloat16: widen_rows<c10::BFloat16>(e, xdt, o); break;
    case at::kHalf: widen_rows<c10::Half>(e, xdt, o); break;
    default: return t.to(xdt).to(at::kFloat).expand({groups, n}).contiguous();
  }
  return out;
}

// nn.Linear-layout weights (x2 = weight.t(), int8 or int4): up to wq_gemv_max_rows rows run the fused GEMV,
// which streams the weight once; larger M dequantizes W' panel by panel into x's dtype (the exact
// values the golden multiplies) and runs the dense GEMM on each, so no full dequantized copy of
// the weight is ever made. bf16 without bias multiplies in bf16 with fp32 accumulation (oneDNN), one
// rounding as in the golden; otherwise the panel is widened to fp32.
// scale_rows / off_rows: (1 or groups, 1 or n), as the caller checked them.
at::Tensor weight_only_linear(const at::Tensor& x, const at::Tensor& x_host, const at::Tensor& w_nk, bool int4,
                              int64_t rows, int64_t n, int64_t k, int64_t G, const at::Tensor& scale_rows,
                              const at::Tensor& off_rows, const std::optional<at::Tensor>& bias,
                              const std::optional<at::Tensor>& quant_scale,
                              const std::optional<at::Tensor>& quant_offset) {
  const auto xdt = x.scalar_type();
  const int64_t groups = G > 0 ? (k + G - 1) / G : 1;
  const at::Tensor s_f = kernel_rows(scale_rows, groups, n, xdt);
  const at::Tensor o_f = off_rows.defined() ? kernel_rows(off_rows, groups, n, xdt) : at::Tensor();
  const at::Tensor xr = x_host.reshape({rows, k}).contiguous();
  ::qdev::kernels::WqGemvArgs args;
  args.m = rows;
  args.n = n;
  args.k = k;
  args.group = G > 0 ? G : k;
  args.ldx = k;
  args.bf16 = xdt == at::kBFloat16;
  args.w = static_cast<const int8_t*>(w_nk.const_data_ptr());
  args.ldw = w_nk.stride(0) * static_cast<int64_t>(w_nk.element_size());  // bytes
  args.int4 = int4;
  args.scale = s_f.const_data_ptr<float>();
  args.offset = o_f.defined() ? o_f.const_data_ptr<float>() : nullptr;
  const auto isa = ::qdev::kernels::active_isa();
  const bool gemv = rows <= ::qdev::kernels::wq_gemv_max_rows(isa, args);
  const at::Tensor xf = gemv ? xr.to(at::kFloat) : at::Tensor();  // widened once (exact)
  args.x = xf.defined() ? xf.const_data_ptr<float>() : nullptr;
  at::Tensor y;
  if (gemv) {
    y = at::empty({rows, n}, xr.options().dtype(at::kFloat));
    args.y = y.mutable_data_ptr<float>();
    args.ldy = n;
    at::parallel_for(0, n, std::max<int64_t>(16, parallel_grain(n, rows * k)),
                     [&](int64_t n0, int64_t n1) { ::qdev::kernels::wq_gemv(isa, args, n0, n1); });
  } else {
    const bool bf16_gemm = xdt == at::kBFloat16 && !defined(bias);
    y = at::empty({rows, n}, xr.options().dtype(bf16_gemm ? at::kBFloat16 : at::kFloat));
    const at::Tensor xg = bf16_gemm ? xr : xr.to(at::kFloat);
    // ~2 MiB of W' per panel: stays in L2/L3 between being written and being multiplied.
    const int64_t panel = std::clamp<int64_t>((int64_t{2} << 20) / (2 * k) / 64 * 64, 64, 1024);
    at::Tensor buf = at::empty({std::min(panel, n), k}, xr.options().dtype(xdt));
    uint16_t* bp = reinterpret_cast<uint16_t*>(buf.mutable_data_ptr());
    for (int64_t n0 = 0; n0 < n; n0 += panel) {
      const int64_t n1 = std::min(n, n0 + panel);
      at::parallel_for(n0, n1, parallel_grain(n1 - n0, k, kMinTaskElems), [&](int64_t a, int64_t b) {
        ::qdev::kernels::wq_dequant_rows(isa, args, a, b, bp + (a - n0) * k, k);
      });
      const at::Tensor wp = buf.narrow(0, 0, n1 - n0);
      y.narrow(1, n0, n1 - n0).copy_(at::mm(xg, (bf16_gemm ? wp : wp.to(at::kFloat)).t()));
    }
    y = y.to(at::kFloat);
  }
  auto out_sizes = x.sizes().vec();
  out_sizes.back() = n;
  return finish_output(y.reshape(out_sizes), x, bias, quant_scale, quant_offset);
}

}  // namespace

at::Tensor npu_weight_quant_batchmatmul(const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor& antiquant_scale,
                                        const std::optional<at::Tensor>& antiquant_offset,
                                        const std::optional<at::Tensor>& quant_scale,
                                        const std::optional<at::Tensor>& quant_offset,
                                        const std::optional<at::Tensor>& bias, int64_t antiquant_group_size,
                                        int64_t inner_precise, std::optional<int64_t> weight_dtype) {
  check_required(x, "npu_weight_quant_batchmatmul", "x");
  check_required(weight, "npu_weight_quant_batchmatmul", "weight");
  check_required(antiquant_scale, "npu_weight_quant_batchmatmul", "antiquant_scale");
  TORCH_CHECK_NOT_IMPLEMENTED(!weight_dtype.has_value(), "npu_weight_quant_batchmatmul: weight_dtype (hifloat8/"
                              "fp8 weights) is an Ascend 950 feature and is not supported on qdev");
  TORCH_CHECK(x.dim() >= 2, "x shape do not support dim num less than 2, but it is ", x.dim());
  TORCH_CHECK(weight.dim() >= 2, "weight shape do not support dim num less than 2, but it is ", weight.dim());
  TORCH_CHECK(x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16,
              "npu_weight_quant_batchmatmul: x must be float16 or bfloat16, but it is ", dtype_name(x.scalar_type()));
  TORCH_CHECK(inner_precise == 0 || inner_precise == 1, "inner_precise only support 0 or 1. but is:", inner_precise);
  TORCH_CHECK(!defined(quant_offset) || defined(quant_scale),
              "Quantization parameters are incorrectly set, quant_offset cannot exist in isolation from quant_scale");
  const auto wt = weight.scalar_type();
  TORCH_CHECK(wt == at::kChar || wt == at::kInt, "npu_weight_quant_batchmatmul: weight must be int8 or "
              "int32-packed int4, but it is ", dtype_name(wt));
  for (const auto* t : {&weight, &antiquant_scale}) {
    TORCH_CHECK(t->device() == x.device(), "Expected all tensors to be on the same device, but found at least "
                "two devices, ", x.device(), " and ", t->device(), "!");
  }
  for (const auto* t : {&antiquant_offset, &quant_scale, &quant_offset, &bias}) {
    if (!defined(*t)) continue;
    TORCH_CHECK((*t)->device() == x.device(), "Expected all tensors to be on the same device, but found at "
                "least two devices, ", x.device(), " and ", (*t)->device(), "!");
  }
  std::optional<c10::DeviceGuard> guard;
  if (x.device().type() == c10::DeviceType::PrivateUse1) {
    guard.emplace(x.device());
    c10::qdev::sync_current_stream(x.device().index());
  }
  // The weight as stored: int8 (k, n), or int32 words of 8 nibbles along n ((k, n / 8)) or, for a
  // transposed view of an nn.Linear-layout (n, k / 8) weight, along k. Unpacked only where needed.
  const at::Tensor hw = logical_host_view(weight);
  const bool int4 = wt == at::kInt;
  const bool w_transposed = is_transpose_last_two(hw);
  const int64_t xk = x.size(-1);
  const int64_t wk = int4 && w_transposed ? hw.size(-2) * 8 : hw.size(-2);
  const int64_t n = int4 && !w_transposed ? hw.size(-1) * 8 : hw.size(-1);
  if (x.dim() > 2 && hw.dim() > 2) {
    TORCH_CHECK(x.dim() == hw.dim(), "x dim is not the same as weight dim");
    TORCH_CHECK(x.sizes().slice(0, x.dim() - 2) == hw.sizes().slice(0, hw.dim() - 2), "batch of x is diff from batch of weight");
  }
  TORCH_CHECK(xk == wk, "The k of x and weight should be equal. but x_k_dim is ", xk, ", weight_k_dim is ", wk);
  const int64_t G = antiquant_group_size;
  TORCH_CHECK(G == 0 || (G % 32 == 0 && G >= 32 && G <= wk - 1),
              "antiquant_group_size can be either 0 or a multiple of 32 within the range 32 to weight_k_dim - 1.");

  const auto xdt = x.scalar_type();
  const auto sdt = antiquant_scale.scalar_type();
  TORCH_CHECK(sdt == at::kHalf || sdt == at::kBFloat16 || sdt == at::kFloat || sdt == at::kLong,
              "npu_weight_quant_batchmatmul: antiquant_scale must be float16, bfloat16, float32 or int64 (from "
              "npu_trans_quant_param), but it is ", dtype_name(sdt));
  TORCH_CHECK(antiquant_scale.dim() <= 2, "npu_weight_quant_batchmatmul: antiquant_scale must be 1-D or 2-D, but it "
              "is ", antiquant_scale.sizes());
  TORCH_CHECK(sdt != at::kLong || G == 0, "npu_weight_quant_batchmatmul: an int64 antiquant_scale is per channel "
              "only (antiquant_group_size 0)");
  if (defined(antiquant_offset)) {
    const auto odt = antiquant_offset->scalar_type();
    TORCH_CHECK(at::isFloatingType(odt) || (odt == at::kInt && sdt == at::kLong), "npu_weight_quant_batchmatmul: "
                "antiquant_offset must be a float tensor (or int32 with an int64 antiquant_scale), but it is ",
                dtype_name(odt));
    TORCH_CHECK(antiquant_offset->numel() == 1 || antiquant_offset->sizes() == antiquant_scale.sizes(),
                "npu_weight_quant_batchmatmul: antiquant_offset must have antiquant_scale's shape ",
                antiquant_scale.sizes(), ", but it is ", antiquant_offset->sizes());
  }
  if (defined(bias)) {
    TORCH_CHECK(at::isFloatingType(bias->scalar_type()), "npu_weight_quant_batchmatmul: bias must be a float "
                "tensor, but it is ", dtype_name(bias->scalar_type()));
    TORCH_CHECK((bias->dim() == 1 && bias->size(0) == n) || (bias->dim() == 2 && bias->size(0) == 1 &&
                                                             bias->size(1) == n),
                "npu_weight_quant_batchmatmul: bias must be of shape (n,) or (1, n) with n = ", n, ", but it is ",
                bias->sizes());
  }
  if (defined(quant_scale)) {
    const auto qdt = quant_scale->scalar_type();
    TORCH_CHECK(qdt == at::kFloat || qdt == at::kLong, "npu_weight_quant_batchmatmul: quant_scale must be "
                "float32 or int64, but it is ", dtype_name(qdt));
    TORCH_CHECK(quant_scale->dim() <= 2 && (quant_scale->numel() == 1 || quant_scale->numel() == n) &&
                    (quant_scale->dim() == 0 || quant_scale->size(-1) == quant_scale->numel()),
                "npu_weight_quant_batchmatmul: quant_scale must be of shape (1,), (n,) or (1, n) with n = ", n,
                ", but it is ", quant_scale->sizes());
    if (defined(quant_offset)) {
      TORCH_CHECK(quant_offset->scalar_type() == at::kFloat && quant_offset->numel() == quant_scale->numel() &&
                      quant_offset->dim() <= 2,
                  "npu_weight_quant_batchmatmul: quant_offset must be float32 of quant_scale's shape ",
                  quant_scale->sizes(), ", but it is ", dtype_name(quant_offset->scalar_type()), " ",
                  quant_offset->sizes());
    }
  }
  at::Tensor scale = logical_host_view(antiquant_scale);
  const bool int64_scale = scale.scalar_type() == at::kLong;
  at::Tensor off = defined(antiquant_offset) ? logical_host_view(*antiquant_offset) : at::Tensor();
  // Scale / offset as (rows, n) with rows = 1 (per tensor / channel) or k groups.
  auto as_rows = [&](at::Tensor t) {
    if (t.numel() == 1) return t.reshape({1, 1});
    if (t.dim() == 1) return t.reshape({1, t.size(0)});
    return t;
  };
  scale = as_rows(scale);
  if (off.defined()) off = as_rows(off);
  if (G > 0) {
    const int64_t groups = (wk + G - 1) / G;
    TORCH_CHECK(scale.size(0) == groups && scale.size(1) == n, "npu_weight_quant_batchmatmul: per-group "
                "antiquant_scale must be (", groups, ", ", n, "), but it is ", antiquant_scale.sizes());
  } else {
    TORCH_CHECK(scale.size(0) == 1 && (scale.size(1) == 1 || scale.size(1) == n), "npu_weight_quant_batchmatmul: "
                "antiquant_scale must be (1,), (n,) or (1, n) without antiquant_group_size, but it is ",
                antiquant_scale.sizes());
  }
  const at::Tensor x_host = logical_host_view(x);
  const int64_t rows = x.numel() / std::max<int64_t>(xk, 1);
  if (!int64_scale && hw.dim() == 2 && w_transposed && rows > 0 && n > 0 && xk > 0) {
    const at::Tensor off_rows = off.defined() && G > 0 ? off.reshape({-1, n}) : off;
    return weight_only_linear(x, x_host, hw.transpose(-1, -2), int4, rows, n, xk, G, scale, off_rows, bias,
                              quant_scale, quant_offset);
  }

  if (G > 0) {  // one scale / offset row per k
    auto expand_rows = [&](const at::Tensor& t) { return t.repeat_interleave(G, 0).narrow(0, 0, wk); };
    scale = expand_rows(scale);
    if (off.defined()) off = expand_rows(off);
  }
  at::Tensor w;  // int8 values (k, n) with batch dims
  if (int4) {
    w = w_transposed ? unpack_int4(hw.transpose(-1, -2)).transpose(-1, -2) : unpack_int4(hw);
  } else {
    w = hw;
  }
  // W' = (W + offset) * scale, each step rounded to x's dtype (CANN's golden).
  at::Tensor wd = w.to(xdt).contiguous();  // one layout, one fp32 summation order
  if (off.defined()) wd = wd.add(off.to(xdt));
  at::Tensor y;
  if (int64_scale) {
    // Packed int64 scale (per channel): y = (x @ fp16(W + off)) * fp16(decoded scale) + bias.
    std::vector<float> s(static_cast<size_t>(scale.numel()));
    const at::Tensor sc = scale.contiguous();
    for (int64_t i = 0; i < sc.numel(); ++i) s[static_cast<size_t>(i)] = unpack_scale(sc.const_data_ptr<int64_t>()[i]);
    const at::Tensor sf = at::from_blob(s.data(), scale.sizes(), at::kFloat).clone().to(xdt);
    y = at::matmul(x_host.to(at::kFloat), wd.to(at::kFloat)).to(xdt).mul(sf.reshape({-1}));
    y = y.to(at::kFloat);
  } else {
    wd = wd.mul(scale.to(xdt));
    y = at::matmul(x_host.to(at::kFloat), wd.to(at::kFloat));
  }
  return finish_output(y, x, bias, quant_scale, quant_offset);
}

}  // namespace at::native::qdev
