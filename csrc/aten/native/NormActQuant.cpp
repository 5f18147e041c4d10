// Fused activation / norm + quantization ops (torch_npu semantics), one pass per row:
//   npu_dequant_swiglu_quant   int32 grouped-GEMM output -> dequant -> SwiGLU -> per-token int8
//   npu_swiglu_quant           SwiGLU -> per-token int8 with per-group smooth scales (MoE)
//   npu_swiglu                 silu(left half) * right half
//   npu_add_rms_norm_quant     x1 + x2 -> RMSNorm * gamma (+ beta) -> static int8 (y1, y2)
//   npu_add_rms_norm_dynamic_quant   ... -> per-token dynamic int8 (+ smooth scales)
// Any leading dims, fp16/bf16/fp32 activations; accumulation in fp32.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>

#include "../../kernels/common/qd_common.h"
#include "../../kernels/moe/qd_moe_rows.h"
#include "../../runtime/QdevStream.h"
#include "DeviceChecks.h"
#include "MoeOps.h"
#include "QdevFormat.h"
#include "QuantCommon.h"

namespace at::native::qdev {
namespace {

namespace k = ::qdev::kernels;

// The row kernels of the active ISA variant.
const k::MoeRowKernels& row_kernels() { return k::moe_row_kernels(k::active_isa()); }

bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

at::Tensor f32(const at::Tensor& t) { return logical_host_view(t).to(at::kFloat).contiguous(); }

// A norm parameter (gamma's shape, the normalized trailing dims of x) as one fp32 row of h.
struct Rows {
  at::Tensor t;
  const float* row(int64_t) const { return t.const_data_ptr<float>(); }
};
Rows param_rows(const at::Tensor& p, const at::Tensor& gamma, const char* op, const char* name) {
  TORCH_CHECK(p.sizes() == gamma.sizes() || (p.numel() == gamma.numel() && p.dim() == 1), op, ": ", name,
              " must have gamma's shape ", gamma.sizes(), ", but it is ", p.sizes());
  return Rows{f32(p).reshape({-1})};
}

// The normalized size h (gamma's elements: x's trailing dims) and the row count.
std::pair<int64_t, int64_t> norm_rows(const at::Tensor& x1, const at::Tensor& gamma, const char* op) {
  TORCH_CHECK(gamma.dim() >= 1 && gamma.dim() <= x1.dim() &&
              x1.sizes().slice(x1.dim() - gamma.dim()) == gamma.sizes(), op, ": gamma's shape ", gamma.sizes(),
              " must equal the trailing dims of x1 ", x1.sizes());
  TORCH_CHECK(gamma.scalar_type() == x1.scalar_type(), op, ": gamma must have x1's dtype (", dtype_name(x1.scalar_type()),
              "), but it is ", dtype_name(gamma.scalar_type()));
  const int64_t h = gamma.numel();
  return {h, h == 0 ? 0 : x1.numel() / h};
}

// x = x1 + x2 rounded to the input dtype (the op's third output), as fp32 rows.
std::pair<at::Tensor, at::Tensor> add_inputs(const at::Tensor& x1, const at::Tensor& x2, int64_t h, const char* op) {
  TORCH_CHECK(x1.sizes() == x2.sizes(), op, ": x1 and x2 must have one shape, but they are ", x1.sizes(), " and ",
              x2.sizes());
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type(), op, ": x1 and x2 must have one dtype");
  const auto dt = x1.scalar_type();
  TORCH_CHECK(dt == at::kHalf || dt == at::kBFloat16 || dt == at::kFloat, op, ": x1 must be float16, bfloat16 or "
              "float32, but it is ", dtype_name(dt));
  TORCH_CHECK(x1.dim() >= 1 && x1.dim() <= 8, op, ": x1 must be 1-D to 8-D");
  same_device(x2, x1);
  at::Tensor x = at::empty(x1.sizes(), x1.options());
  at::Tensor xh = logical_host_view(x);
  xh.copy_(logical_host_view(x1).add(logical_host_view(x2)));
  return {x, xh.reshape({-1, std::max<int64_t>(h, 1)}).to(at::kFloat).contiguous()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> npu_dequant_swiglu_quant(
    const at::Tensor& x, const std::optional<at::Tensor>& weight_scale,
    const std::optional<at::Tensor>& activation_scale, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& quant_scale, const std::optional<at::Tensor>& quant_offset,
    const std::optional<at::Tensor>& group_index, bool activate_left, int64_t quant_mode) {
  constexpr const char* op = "npu_dequant_swiglu_quant";
  TORCH_CHECK(x.dim() == 2, op, ": x must be 2-D (TokensNum, 2H), but it is ", x.dim(), "-D");
  TORCH_CHECK(x.size(1) % 2 == 0, op, ": the last dim of x must be even, but it is ", x.size(1));
  const auto xdt = x.scalar_type();
  TORCH_CHECK(xdt == at::kInt || xdt == at::kHalf || xdt == at::kBFloat16 || xdt == at::kFloat, op,
              ": x must be int32 (or float16/bfloat16/float32), but it is ", dtype_name(xdt));
  TORCH_CHECK(quant_mode == 1, op, ": only dynamic quantization (quant_mode 1) is supported on qdev, got ", quant_mode);
  TORCH_CHECK(!given(quant_offset), op, ": quant_offset is for static quantization, which qdev does not support");
  TORCH_CHECK(xdt != at::kInt || given(weight_scale), op, ": int32 x needs weight_scale");
  for (const auto* t : {&weight_scale, &activation_scale, &bias, &quant_scale, &quant_offset, &group_index}) same_device(*t, x);
  const int64_t tokens = x.size(0), h2 = x.size(1), h = h2 / 2;
  std::optional<c10::DeviceGuard> guard;
  enter(x, guard);

  // Group (expert) of each row: group_index holds the rows per group (counts).
  std::vector<int64_t> row_group(static_cast<size_t>(tokens), 0);
  int64_t covered = tokens, groups = 1;
  if (given(group_index)) {
    const at::Tensor gi = logical_host_view(*group_index).to(at::kLong).contiguous();
    TORCH_CHECK(gi.dim() == 1, op, ": group_index must be 1-D");
    groups = gi.numel();
    int64_t r = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c = gi.const_data_ptr<int64_t>()[g];
      TORCH_CHECK(c >= 0, op, ": group_index must be non-negative");
      TORCH_CHECK(r + c <= tokens, op, ": group_index counts sum to more than the ", tokens, " rows of x");
      std::fill_n(row_group.begin() + r, c, g);
      r += c;
    }
    covered = r;
  }
  auto per_group = [&](const std::optional<at::Tensor>& t, int64_t width, const char* name) {
    at::Tensor f = f32(*t).reshape({-1});
    TORCH_CHECK(f.numel() == width || f.numel() == groups * width, op, ": ", name, " must be (", width, ") or (",
                groups, ", ", width, "), but it is ", t->sizes());
    return std::make_pair(f, f.numel() == width ? int64_t{0} : width);
  };
  std::pair<at::Tensor, int64_t> ws, bs, qs, qo;
  if (given(weight_scale)) ws = per_group(weight_scale, h2, "weight_scale");
  if (given(bias)) bs = per_group(bias, h2, "bias");
  if (given(quant_scale)) qs = per_group(quant_scale, h, "quant_scale");
  if (given(quant_offset)) qo = per_group(quant_offset, h, "quant_offset");
  at::Tensor as;
  if (given(activation_scale)) {
    as = f32(*activation_scale).reshape({-1});
    TORCH_CHECK(as.numel() == tokens, op, ": activation_scale must be (TokensNum,) = (", tokens, ")");
  }
  const at::Tensor xh = logical_host_view(x).contiguous();
  at::Tensor y = at::empty({tokens, h}, x.options().dtype(at::kChar));
  at::Tensor scale = at::empty({tokens}, x.options().dtype(at::kFloat));
  at::Tensor yh = logical_host_view(y), sh = logical_host_view(scale);
  int8_t* q = yh.mutable_data_ptr<int8_t>();
  float* so = sh.mutable_data_ptr<float>();
  if (covered < tokens) {
    yh.narrow(0, covered, tokens - covered).zero_();
    sh.narrow(0, covered, tokens - covered).zero_();
  }
  const at::Tensor xf = xdt == at::kInt ? at::Tensor() : xh.to(at::kFloat).contiguous();
  const k::MoeRowKernels& rows_k = row_kernels();
  at::parallel_for(0, covered, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> v(static_cast<size_t>(h2)), a(static_cast<size_t>(h)), st;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t g = row_group[static_cast<size_t>(r)];
      const float* w = ws.first.defined() ? ws.first.const_data_ptr<float>() + g * ws.second : nullptr;
      const float* b = bs.first.defined() ? bs.first.const_data_ptr<float>() + g * bs.second : nullptr;
      const float act = as.defined() ? as.const_data_ptr<float>()[r] : 1.0f;
      if (xdt == at::kInt) {
        const int32_t* xi = xh.const_data_ptr<int32_t>() + r * h2;
        for (int64_t j = 0; j < h2; ++j) v[static_cast<size_t>(j)] = static_cast<float>(xi[j]) * w[j] * act;
      } else {
        const float* xr = xf.const_data_ptr<float>() + r * h2;
        for (int64_t j = 0; j < h2; ++j) v[static_cast<size_t>(j)] = (w ? xr[j] * w[j] : xr[j]) * act;
      }
      if (b) {
        for (int64_t j = 0; j < h2; ++j) v[static_cast<size_t>(j)] += b[j];
      }
      rows_k.swiglu_row(v.data(), h, activate_left, a.data());
      const float* s = qs.first.defined() ? qs.first.const_data_ptr<float>() + g * qs.second : nullptr;
      if (quant_mode == 1) {
        so[r] = rows_k.quant_row_dynamic(a.data(), h, s, q + r * h);
      } else {
        const float* o = qo.first.defined() ? qo.first.const_data_ptr<float>() + g * qo.second : nullptr;
        rows_k.quant_row_static(a.data(), h, s, o, true, q + r * h);
        so[r] = 0.0f;
      }
    }
  });
  return {y, scale};
}

std::tuple<at::Tensor, at::Tensor> npu_swiglu_quant(const at::Tensor& x, const std::optional<at::Tensor>& smooth_scales,
                                                    const std::optional<at::Tensor>& offsets,
                                                    const std::optional<at::Tensor>& group_index, bool activate_left,
                                                    int64_t quant_mode, int64_t group_list_type,
                                                    std::optional<int64_t> dst_type) {
  constexpr const char* op = "npu_swiglu_quant";
  TORCH_CHECK(x.dim() > 1, op, ": x must have more than one dim, but it has ", x.dim());
  const auto xdt = x.scalar_type();
  TORCH_CHECK(xdt == at::kHalf || xdt == at::kBFloat16 || xdt == at::kFloat, op, ": x must be float16, bfloat16 or "
              "float32, but it is ", dtype_name(xdt));
  TORCH_CHECK(x.size(-1) % 2 == 0, op, ": the last dim of x must be even, but it is ", x.size(-1));
  TORCH_CHECK(!dst_type.has_value() || *dst_type == static_cast<int64_t>(at::kChar), op, ": only int8 output "
              "(dst_type None or torch.int8) is supported on qdev");
  TORCH_CHECK(quant_mode == 1, op, ": only dynamic quantization (quant_mode 1) is supported on qdev, got ", quant_mode);
  TORCH_CHECK(!given(offsets), op, ": offsets are for static quantization, which qdev does not support");
  TORCH_CHECK(group_list_type == 0 || group_list_type == 1, op, ": group_list_type must be 0 (cumsum) or 1 (count)");
  same_device(smooth_scales, x);
  same_device(group_index, x);
  const int64_t h2 = x.size(-1), n = h2 / 2, tokens = x.numel() / std::max<int64_t>(h2, 1);
  // As npu_dequant_swiglu_quant's arguments: group counts, smooth rows (G, N).
  std::optional<at::Tensor> counts, smooth;
  int64_t groups = 1;
  if (given(group_index)) {
    const at::Tensor gi = logical_host_view(*group_index).to(at::kLong).contiguous();
    TORCH_CHECK(gi.dim() == 1, op, ": group_index must be 1-D");
    groups = gi.numel();
    at::Tensor c = at::empty({groups}, x.options().dtype(at::kLong));
    at::Tensor ch = logical_host_view(c);
    int64_t prev = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t v = gi.const_data_ptr<int64_t>()[g];
      TORCH_CHECK(v >= 0 && (group_list_type == 1 || v >= prev), op, ": group_index must be non-negative",
                  group_list_type == 0 ? " and non-decreasing (cumsum mode)" : "");
      ch.mutable_data_ptr<int64_t>()[g] = group_list_type == 0 ? v - prev : v;
      prev = group_list_type == 0 ? v : prev + v;
    }
    TORCH_CHECK(prev <= tokens, op, ": group_index covers ", prev, " rows, but x has ", tokens);
    counts = c;
  }
  if (given(smooth_scales)) {
    const at::Tensor sm = logical_host_view(*smooth_scales).to(at::kFloat);
    TORCH_CHECK(sm.numel() == groups * n || sm.numel() == groups, op, ": smooth_scales must be (G, N) = (", groups,
                ", ", n, ") or (G,), but it is ", smooth_scales->sizes());
    at::Tensor full = at::empty({groups, n}, x.options().dtype(at::kFloat));
    logical_host_view(full).copy_(sm.numel() == groups * n ? sm.reshape({groups, n}) : sm.reshape({groups, 1}).expand({groups, n}));
    smooth = full;
  }
  auto [y, scale] = npu_dequant_swiglu_quant(x.reshape({tokens, h2}), std::nullopt, std::nullopt, std::nullopt, smooth,
                                             std::nullopt, counts, activate_left, 1);
  auto ys = x.sizes().vec();
  ys.back() = n;
  return {y.reshape(ys), scale.reshape(x.sizes().slice(0, x.dim() - 1))};
}

at::Tensor npu_swiglu(const at::Tensor& x, int64_t dim) {
  TORCH_CHECK(x.dim() >= 1, "npu_swiglu: x must have at least one dim");
  const int64_t d = c10::maybe_wrap_dim(dim, x.dim());
  TORCH_CHECK(x.size(d) % 2 == 0, "npu_swiglu: the size of dim ", dim, " must be even, but it is ", x.size(d));
  const auto dt = x.scalar_type();
  TORCH_CHECK(dt == at::kHalf || dt == at::kBFloat16 || dt == at::kFloat, "npu_swiglu: x must be float16, bfloat16 "
              "or float32, but it is ", dtype_name(dt));
  std::optional<c10::DeviceGuard> guard;
  enter(x, guard);
  const at::Tensor xm = logical_host_view(x).movedim(d, -1).contiguous();
  const int64_t h2 = xm.size(-1), h = h2 / 2, rows = h2 == 0 ? 0 : xm.numel() / h2;
  const at::Tensor xf = xm.reshape({rows, h2}).to(at::kFloat).contiguous();
  at::Tensor yf = at::empty({rows, h}, at::kFloat);
  const k::MoeRowKernels& rows_k = row_kernels();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rows_k.swiglu_row(xf.const_data_ptr<float>() + r * h2, h, true, yf.mutable_data_ptr<float>() + r * h);
  });
  auto sizes = xm.sizes().vec();
  sizes.back() = h;
  at::Tensor ym = yf.reshape(sizes).to(dt).movedim(-1, d);
  at::Tensor out = at::empty(ym.sizes(), x.options());
  logical_host_view(out).copy_(ym);
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> npu_add_rms_norm_quant(
    const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& gamma, const at::Tensor& scales1,
    const std::optional<at::Tensor>& zero_points1, const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& scales2, const std::optional<at::Tensor>& zero_points2, int64_t axis,
    double epsilon, bool div_mode) {
  constexpr const char* op = "npu_add_rms_norm_quant";
  TORCH_CHECK(axis == -1, op, ": only axis -1 is supported, got ", axis);
  for (const auto* t : {&zero_points1, &beta, &scales2, &zero_points2}) same_device(*t, x1);
  same_device(gamma, x1);
  same_device(scales1, x1);
  TORCH_CHECK(!given(zero_points2) || given(scales2), op, ": zero_points2 needs scales2");
  std::optional<c10::DeviceGuard> guard;
  enter(x1, guard);
  const auto [h, rows] = norm_rows(x1, gamma, op);
  auto [x, xf] = add_inputs(x1, x2, h, op);
  const Rows g = param_rows(gamma, gamma, op, "gamma"), s1 = param_rows(scales1, gamma, op, "scales1");
  std::optional<Rows> b, z1, s2, z2;
  if (given(beta)) b = param_rows(*beta, gamma, op, "beta");
  if (given(zero_points1)) z1 = param_rows(*zero_points1, gamma, op, "zero_points1");
  if (given(scales2)) s2 = param_rows(*scales2, gamma, op, "scales2");
  if (given(zero_points2)) z2 = param_rows(*zero_points2, gamma, op, "zero_points2");
  at::Tensor y1 = at::empty(x1.sizes(), x1.options().dtype(at::kChar));
  at::Tensor y2 = at::empty(given(scales2) ? x1.sizes() : c10::IntArrayRef{1}, x1.options().dtype(at::kChar));
  at::Tensor y1h = logical_host_view(y1), y2h = logical_host_view(y2);
  if (!given(scales2)) y2h.zero_();
  int8_t* q1 = y1h.mutable_data_ptr<int8_t>();
  int8_t* q2 = y2h.mutable_data_ptr<int8_t>();
  const float eps = static_cast<float>(epsilon);
  const k::MoeRowKernels& rows_k = row_kernels();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> y(static_cast<size_t>(h));
    for (int64_t r = r0; r < r1; ++r) {
      rows_k.rms_norm_row(xf.const_data_ptr<float>() + r * h, h, g.row(r), b ? b->row(r) : nullptr, eps, y.data());
      rows_k.quant_row_static(y.data(), h, s1.row(r), z1 ? z1->row(r) : nullptr, div_mode, q1 + r * h);
      if (s2) rows_k.quant_row_static(y.data(), h, s2->row(r), z2 ? z2->row(r) : nullptr, div_mode, q2 + r * h);
    }
  });
  return {y1, y2, x};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> npu_add_rms_norm_dynamic_quant(
    const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& gamma, const std::optional<at::Tensor>& smooth_scale1,
    const std::optional<at::Tensor>& smooth_scale2, const std::optional<at::Tensor>& beta, double epsilon,
    std::optional<std::array<bool, 2>> output_mask) {
  constexpr const char* op = "npu_add_rms_norm_dynamic_quant";
  for (const auto* t : {&smooth_scale1, &smooth_scale2, &beta}) same_device(*t, x1);
  same_device(gamma, x1);
  bool want1 = true, want2 = given(smooth_scale2);
  if (output_mask.has_value()) {
    want1 = (*output_mask)[0];
    want2 = (*output_mask)[1];
  }
  TORCH_CHECK(!want2 || given(smooth_scale2), op, ": the second output needs smooth_scale2");
  TORCH_CHECK(!given(smooth_scale2) || given(smooth_scale1), op, ": smooth_scale2 needs smooth_scale1");
  std::optional<c10::DeviceGuard> guard;
  enter(x1, guard);
  const auto [h, rows] = norm_rows(x1, gamma, op);
  auto [x, xf] = add_inputs(x1, x2, h, op);
  const Rows g = param_rows(gamma, gamma, op, "gamma");
  std::optional<Rows> b, sm1, sm2;
  if (given(beta)) b = param_rows(*beta, gamma, op, "beta");
  if (given(smooth_scale1)) sm1 = param_rows(*smooth_scale1, gamma, op, "smooth_scale1");
  if (given(smooth_scale2)) sm2 = param_rows(*smooth_scale2, gamma, op, "smooth_scale2");
  const auto lead = x1.sizes().slice(0, x1.dim() - gamma.dim());
  at::Tensor y1 = at::empty(x1.sizes(), x1.options().dtype(at::kChar));
  at::Tensor y2 = at::empty(want2 ? x1.sizes() : c10::IntArrayRef{1}, x1.options().dtype(at::kChar));
  at::Tensor sc1 = at::empty(lead, x1.options().dtype(at::kFloat));
  at::Tensor sc2 = at::empty(want2 ? lead : c10::IntArrayRef{1}, x1.options().dtype(at::kFloat));
  at::Tensor y1h = logical_host_view(y1), y2h = logical_host_view(y2), s1h = logical_host_view(sc1),
             s2h = logical_host_view(sc2);
  if (!want1) {
    y1h.zero_();
    s1h.zero_();
  }
  if (!want2) {
    y2h.zero_();
    s2h.zero_();
  }
  int8_t* q1 = y1h.mutable_data_ptr<int8_t>();
  int8_t* q2 = y2h.mutable_data_ptr<int8_t>();
  float* o1 = s1h.mutable_data_ptr<float>();
  float* o2 = s2h.mutable_data_ptr<float>();
  const float eps = static_cast<float>(epsilon);
  const k::MoeRowKernels& rows_k = row_kernels();
  at::parallel_for(0, rows, 8, [&](int64_t r0, int64_t r1) {
    std::vector<float> y(static_cast<size_t>(h));
    for (int64_t r = r0; r < r1; ++r) {
      rows_k.rms_norm_row(xf.const_data_ptr<float>() + r * h, h, g.row(r), b ? b->row(r) : nullptr, eps, y.data());
      if (want1) o1[r] = rows_k.quant_row_dynamic(y.data(), h, sm1 ? sm1->row(r) : nullptr, q1 + r * h);
      if (want2) o2[r] = rows_k.quant_row_dynamic(y.data(), h, sm2->row(r), q2 + r * h);
    }
  });
  return {y1, y2, x, sc1, sc2};
}

}  // namespace at::native::qdev
