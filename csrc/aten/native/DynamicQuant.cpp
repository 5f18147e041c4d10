// npu_dynamic_quant / npu_dynamic_quant_asymmetric: per-token (per-tensor,
// per-channel) int8 or int4 quantization of activations, torch_npu semantics.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../../kernels/quant/qd_quant_rows.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QuantCommon.h"
#include "QuantOps.h"
#include "QuantPlans.h"

namespace at::native::qdev {
namespace {

using Mode = DynamicQuantMode;
using DqPlan = DynamicQuantPlan;

}  // namespace

DqPlan plan_dynamic_quant(const at::Tensor& x, const std::optional<at::Tensor>& smooth,
                          const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
                          c10::string_view quant_mode, double dst_type_max) {
  DqPlan p;
  check_required(x, "npu_dynamic_quant", "input");
  TORCH_CHECK(x.dim() > 1, "Input shape dim should be greater than 1");
  const auto xt = x.scalar_type();
  TORCH_CHECK(xt == at::kHalf || xt == at::kBFloat16 || xt == at::kFloat,
              "npu_dynamic_quant: input must be float16, bfloat16 or float32, but it is ", xt);
  const int64_t dt = dst_type.value_or(static_cast<int64_t>(at::kChar));
  if (dt == 290 || dt == static_cast<int64_t>(at::kFloat8_e5m2) ||
      dt == static_cast<int64_t>(at::kFloat8_e4m3fn) || dt == 291 || dt == 292) {
    TORCH_CHECK_NOT_IMPLEMENTED(false, "npu_dynamic_quant: float8/hifloat8 outputs are Ascend 950 "
                                "features and are not supported on qdev");
  }
  TORCH_CHECK(dt == static_cast<int64_t>(at::kChar) || dt == static_cast<int64_t>(at::kQUInt4x2),
              "npu_dynamic_quant: dst_type must be torch.int8 or torch.quint4x2, but it is ", dt);
  p.int4 = dt == static_cast<int64_t>(at::kQUInt4x2);
  if (p.int4) {
    p.dst_max = 7.0f;
    p.dst_min = -8.0f;
    TORCH_CHECK(x.size(-1) % 8 == 0, "Input shape last dim must be divded by 8 when int4 quantization");
  }
  if (dst_type_max != 0.0) {
    // An override of the output's maximum can only narrow the integer range: an integer in
    // [1, 127] for int8, [1, 7] for int4 (CANN's wider values are for its float8/hifloat8 outputs).
    TORCH_CHECK(std::isfinite(dst_type_max) && dst_type_max >= 1.0 && dst_type_max <= p.dst_max &&
                    dst_type_max == std::floor(dst_type_max),
                "npu_dynamic_quant: dst_type_max must be 0 (the output dtype's maximum) or an integer in [1, ",
                p.dst_max, "] for ", p.int4 ? "int4" : "int8", " output, but it is ", dst_type_max);
    p.dst_max = static_cast<float>(dst_type_max);
    p.dst_min = -p.dst_max - 1.0f;
  }
  if (quant_mode == "pertoken") {
    p.mode = Mode::kPerToken;
  } else if (quant_mode == "pertensor") {
    p.mode = Mode::kPerTensor;
  } else if (quant_mode == "perchannel") {
    p.mode = Mode::kPerChannel;
  } else {
    TORCH_CHECK(false, "quant_mode must be one of pertoken, pertensor and perchannel, but it is ",
                std::string(quant_mode));
  }
  p.h = x.size(-1);
  if (defined(group_index)) {
    TORCH_CHECK(p.mode == Mode::kPerToken, "group_index is only supported with quant_mode pertoken");
    TORCH_CHECK(defined(smooth) && smooth->dim() == 2 && smooth->size(1) == p.h,
                "with group_index, smooth_scales must be 2-D (group_num, ", p.h, ")");
    TORCH_CHECK(group_index->scalar_type() == at::kInt && group_index->dim() == 1 &&
                    group_index->size(0) == smooth->size(0),
                "group_index must be a 1-D int32 tensor with one entry per smooth_scales row");
    TORCH_CHECK(smooth->size(0) <= 1024, "group_index supports at most 1024 groups");
    TORCH_CHECK(group_index->device() == x.device(), "Expected all tensors to be on the same device, but "
                "found at least two devices, ", x.device(), " and ", group_index->device(), "!");
  } else if (defined(smooth)) {
    const int64_t want = p.mode == Mode::kPerChannel ? x.size(-2) : p.h;
    TORCH_CHECK(smooth->dim() == 1 && smooth->size(0) == want,
                "smooth_scales must be 1-D of size ", want, ", but its shape is ", smooth->sizes());
  }
  if (defined(smooth)) {
    TORCH_CHECK(smooth->scalar_type() == xt, "smooth_scales must have the dtype of input (", xt,
                "), but it is ", smooth->scalar_type());
    TORCH_CHECK(smooth->device() == x.device(), "Expected all tensors to be on the same device, but "
                "found at least two devices, ", x.device(), " and ", smooth->device(), "!");
  }
  p.y_shape = x.sizes().vec();
  if (p.int4) p.y_shape.back() /= 8;
  switch (p.mode) {
    case Mode::kPerToken:
      p.scale_shape.assign(x.sizes().begin(), x.sizes().end() - 1);
      break;
    case Mode::kPerTensor:
      p.scale_shape = {1};
      break;
    case Mode::kPerChannel:
      p.scale_shape.assign(x.sizes().begin(), x.sizes().end() - 2);
      p.scale_shape.push_back(p.h);
      break;
  }
  return p;
}

namespace {

// Quantizes n values at xs[i * stride] with one (scale, offset); writes q[i * stride].
struct Group {
  float scale = 0, offset = 0;
};

Group choose_params(const float* xs, int64_t n, int64_t stride, const DqPlan& p, bool asym) {
  float mx = -INFINITY, mn = INFINITY, amax = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = xs[i * stride];
    mx = std::max(mx, v);
    mn = std::min(mn, v);
    amax = std::max(amax, std::fabs(v));
  }
  Group g;
  if (asym) {
    g.scale = (mx - mn) / (p.dst_max - p.dst_min);
    g.offset = g.scale == 0.0f ? 0.0f : p.dst_max - mx / g.scale;
  } else {
    g.scale = amax * (1.0f / p.dst_max);
  }
  return g;
}

void quantize(const float* xs, int64_t n, int64_t stride, const Group& g, const DqPlan& p, bool asym,
              int32_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    float v = 0.0f;
    if (g.scale != 0.0f) {
      v = xs[i * stride] / g.scale;
      if (asym) v = v + g.offset;
      v = std::nearbyint(v);
      v = std::isnan(v) ? 0.0f : std::min(std::max(v, p.dst_min), p.dst_max);  // NaN -> 0, as the row kernels
    }
    q[i * stride] = static_cast<int32_t>(v);
  }
}

// Per-token quantization in the row kernel (the hot path of dynamic A8W8).
std::vector<at::Tensor> quant_rows_fast(const at::Tensor& input, const std::optional<at::Tensor>& smooth,
                                        const DqPlan& p, bool asym, int64_t rows) {
  namespace k = ::qdev::kernels;
  const at::Tensor x = logical_host_view(input).contiguous();
  std::vector<float> smooth_f;
  if (defined(smooth)) {
    const at::Tensor s = logical_host_view(*smooth).to(at::kFloat).contiguous();
    smooth_f.assign(s.const_data_ptr<float>(), s.const_data_ptr<float>() + s.numel());
  }
  auto options = input.options();
  at::Tensor y = at::empty(p.y_shape, options.dtype(p.int4 ? at::kInt : at::kChar));
  at::Tensor scale = at::empty(p.scale_shape, options.dtype(at::kFloat));
  at::Tensor offset = asym ? at::empty(p.scale_shape, options.dtype(at::kFloat)) : at::Tensor();
  at::Tensor q8 = p.int4 ? at::empty({rows, p.h}, x.options().dtype(at::kChar)) : logical_host_view(y);
  k::QuantRowsArgs args;
  args.x = x.const_data_ptr();
  args.type = x.scalar_type() == at::kHalf       ? k::FloatType::kF16
              : x.scalar_type() == at::kBFloat16 ? k::FloatType::kBF16
                                                 : k::FloatType::kF32;
  args.h = p.h;
  args.ldx = p.h;
  args.smooth = smooth_f.empty() ? nullptr : smooth_f.data();
  args.dst_max = p.dst_max;
  args.dst_min = p.dst_min;
  args.asymmetric = asym;
  args.q = q8.mutable_data_ptr<int8_t>();
  args.ldq = p.h;
  args.scale = logical_host_view(scale).mutable_data_ptr<float>();
  args.offset = asym ? logical_host_view(offset).mutable_data_ptr<float>() : nullptr;
  const k::Isa isa = k::active_isa();
  at::parallel_for(0, rows, parallel_grain(rows, p.h, kMinTaskElems),
                   [&](int64_t r0, int64_t r1) { k::quant_rows(isa, args, r0, r1); });
  if (p.int4) {
    const int8_t* src = q8.const_data_ptr<int8_t>();
    uint32_t* dst = reinterpret_cast<uint32_t*>(logical_host_view(y).mutable_data_ptr<int32_t>());
    pack_int4_words(src, dst, rows * p.h / 8);
  }
  if (asym) return {y, scale, offset};
  return {y, scale};
}

std::vector<at::Tensor> run_dynamic_quant(const at::Tensor& input,
                                          const std::optional<at::Tensor>& smooth,
                                          const std::optional<at::Tensor>& group_index,
                                          std::optional<int64_t> dst_type, c10::string_view quant_mode,
                                          double dst_type_max, bool asym) {
  const DqPlan p = plan_dynamic_quant(input, smooth, group_index, dst_type, quant_mode, dst_type_max);
  const bool on_qdev = input.device().type() == c10::DeviceType::PrivateUse1;
  std::optional<c10::DeviceGuard> guard;
  if (on_qdev) {
    guard.emplace(input.device());
    c10::qdev::sync_current_stream(input.device().index());
  }
  const int64_t h = p.h;
  const int64_t total = input.numel();
  const int64_t rows = h == 0 ? 0 : total / h;
  if (total == 0) {
    // Nothing to quantize: scales (and offsets) of empty groups are 0, as for all-zero groups.
    auto options = input.options();
    at::Tensor y = at::empty(p.y_shape, options.dtype(p.int4 ? at::kInt : at::kChar));
    at::Tensor scale = at::zeros(p.scale_shape, options.dtype(at::kFloat));
    if (!asym) return {y, scale};
    return {y, scale, at::zeros(p.scale_shape, options.dtype(at::kFloat))};
  }
  if (p.mode == Mode::kPerToken && !defined(group_index)) {
    return quant_rows_fast(input, smooth, p, asym, rows);
  }
  // xs = float(x) * float(smooth) on the host.
  // A copy whenever it is scaled in place below: a float32 input must not be modified.
  at::Tensor xs = logical_host_view(input).to(at::kFloat, /*non_blocking=*/false, /*copy=*/defined(smooth))
                      .contiguous();
  if (defined(smooth)) {
    at::Tensor s = logical_host_view(*smooth).to(at::kFloat);
    if (defined(group_index)) {
      at::Tensor gi = logical_host_view(*group_index).contiguous();
      const int32_t* ends = gi.const_data_ptr<int32_t>();
      const int64_t groups = gi.numel();
      TORCH_CHECK(groups > 0 && ends[groups - 1] == rows,
                  "the last group_index entry must equal the number of rows (", rows, ")");
      at::Tensor rows_view = xs.view({rows, h});
      int64_t begin = 0;
      for (int64_t e = 0; e < groups; ++e) {
        const int64_t end = ends[e];
        TORCH_CHECK(end >= begin && end <= rows, "group_index must be non-decreasing within [0, ", rows, "]");
        rows_view.narrow(0, begin, end - begin).mul_(s.select(0, e));
        begin = end;
      }
    } else if (p.mode == Mode::kPerChannel) {
      xs.mul_(s.unsqueeze(-1));
    } else {
      xs.mul_(s);
    }
  }
  const float* x = xs.const_data_ptr<float>();
  std::vector<int32_t> q(static_cast<size_t>(total));
  const int64_t groups = p.mode == Mode::kPerToken ? rows
                         : p.mode == Mode::kPerTensor ? 1
                                                      : (input.size(-2) == 0 ? 0 : total / input.size(-2));
  std::vector<float> scales(static_cast<size_t>(groups)), offsets(static_cast<size_t>(groups));
  const int64_t rows_per_mat = input.size(-2);
  at::parallel_for(0, groups, parallel_grain(groups, groups == 0 ? 1 : total / groups, kMinTaskElems), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const float* base;
      int64_t n, stride;
      int32_t* out;
      if (p.mode == Mode::kPerToken) {
        base = x + g * h; n = h; stride = 1; out = q.data() + g * h;
      } else if (p.mode == Mode::kPerTensor) {
        base = x; n = total; stride = 1; out = q.data();
      } else {  // per channel: column g % h of matrix g / h
        const int64_t off = (g / h) * rows_per_mat * h + g % h;
        base = x + off; n = rows_per_mat; stride = h; out = q.data() + off;
      }
      const Group grp = choose_params(base, n, stride, p, asym);
      quantize(base, n, stride, grp, p, asym, out);
      scales[static_cast<size_t>(g)] = grp.scale;
      offsets[static_cast<size_t>(g)] = grp.offset;
    }
  });

  auto out_options = input.options();
  at::Tensor y = at::empty(p.y_shape, out_options.dtype(p.int4 ? at::kInt : at::kChar));
  at::Tensor scale = at::empty(p.scale_shape, out_options.dtype(at::kFloat));
  at::Tensor y_host = logical_host_view(y), scale_host = logical_host_view(scale);
  if (p.int4) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(y_host.mutable_data_ptr<int32_t>());
    pack_int4_words(q.data(), dst, total / 8);
  } else {
    int8_t* dst = y_host.mutable_data_ptr<int8_t>();
    for (int64_t i = 0; i < total; ++i) dst[i] = static_cast<int8_t>(q[static_cast<size_t>(i)]);
  }
  std::copy(scales.begin(), scales.end(), scale_host.mutable_data_ptr<float>());
  if (!asym) return {y, scale};
  at::Tensor offset = at::empty(p.scale_shape, out_options.dtype(at::kFloat));
  std::copy(offsets.begin(), offsets.end(), logical_host_view(offset).mutable_data_ptr<float>());
  return {y, scale, offset};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> npu_dynamic_quant(
    const at::Tensor& input, const std::optional<at::Tensor>& smooth_scales,
    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
    c10::string_view quant_mode, double dst_type_max) {
  auto r = run_dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, false);
  return {r[0], r[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> npu_dynamic_quant_asymmetric(
    const at::Tensor& input, const std::optional<at::Tensor>& smooth_scales,
    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type,
    c10::string_view quant_mode, double dst_type_max) {
  auto r = run_dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, true);
  return {r[0], r[1], r[2]};
}



}  // namespace at::native::qdev
