// npu_grouped_matmul: torch_npu's grouped GEMM, the one GEMM of a quantized MoE layer.
//
// Every call becomes a list of jobs (rows of x, one weight, one output block). The quantized
// paths run all jobs' column panels as ONE parallel region over (job, panel) tasks, cut into
// chunks of equal estimated cost, so that an expert without tokens costs nothing and the
// active experts' weights stream concurrently:
//   W8A8     int8 x, int8 weights                -> the NZ-VNNI int8 GEMM with its fused epilogue
//                                                   (int32 / int8 requant / scale * per-token fp16/bf16)
//   W4A8     int8 x, int32-packed int4 weights   -> the W4A8 kernel (zero point 0, recip = per-token scale)
//   W8A16    fp16/bf16 x, int8 / int4 weights    -> the weight-only GEMV (decode) or W' panels + GEMM
//   float    fp16/bf16/fp32 x and weights        -> at::mm per job
// Weights: one (E, K, N) tensor (int4: (E, K, N/8) int32), or a list of (K, N) tensors.
// A qdev int8 weight cast to FRACTAL_NZ (npu_format_cast(w, 29), also 3-D) is the GEMM's
// packed operand as is; an ND weight is packed per call, for the active experts only.
#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/stack.h>
#include <c10/core/DeviceGuard.h>

#include <memory>
#include <numeric>

#include "../../kernels/matmul/qd_qgemm.h"
#include "../../runtime/QdevStorageImpl.h"
#include "../../runtime/QdevStream.h"
#include "GroupedMatmul.h"
#include "MoeOps.h"
#include "QdevFormat.h"
#include "QuantCommon.h"

namespace at::native::qdev {
namespace {

namespace k = ::qdev::kernels;
using namespace gmm;

constexpr int64_t kMaxTensorList = 128;
constexpr int64_t kMaxGroups = 1024;
constexpr int64_t kInnerLimit = 65536;

void check_device(const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.device() == like.device(), "Expected all tensors to be on the same device, but found at least "
              "two devices, ", like.device(), " and ", t.device(), "!");
}

std::vector<at::Tensor> list_of(const std::optional<at::TensorList>& l) {
  std::vector<at::Tensor> out;
  if (l.has_value()) {
    for (const auto& t : *l) out.push_back(t);
  }
  return out;
}

bool whole_nz_int8(const at::Tensor& w) {
  if (!is_internal_format(w) || w.scalar_type() != at::kChar || (w.dim() != 3 && w.dim() != 2)) return false;
  const auto* impl = c10::qdev::qdev_storage_impl(w.storage());
  return impl->c0 == k::kNzCols && w.storage_offset() == 0 && w.is_contiguous() &&
         w.sizes() == c10::IntArrayRef(impl->base_sizes);
}

// Column sums of every matrix of an int8 NZ weight, cached on its storage (dropped on writes).
void nz_grouped_view(const at::Tensor& w, int64_t e, int64_t kk, int64_t n, Weights& W) {
  auto* impl = c10::qdev::qdev_storage_impl(w.storage());
  W.nz_data = static_cast<const int8_t*>(impl->data());
  const int64_t n_pad = k::round_up(n, k::kNzCols), mat = k::nz_packed_bytes(kk, n);
  std::lock_guard<std::mutex> lock(impl->cache_mu);
  if (!impl->colsum_valid || static_cast<int64_t>(impl->colsum.size()) != e * n_pad) {
    impl->colsum.assign(static_cast<size_t>(e * n_pad), 0);
    at::parallel_for(0, e, 1, [&](int64_t e0, int64_t e1) {
      for (int64_t i = e0; i < e1; ++i) k::colsum_b_nz(W.nz_data + i * mat, kk, n, impl->colsum.data() + i * n_pad, 0, n);
    });
    impl->has_min = k::has_int8_min(W.nz_data, e * mat);
    impl->colsum_valid = true;
  }
  W.nz_colsum = impl->colsum.data();
  W.nz_has_min = impl->has_min;
}

Weights read_weights(const std::vector<at::Tensor>& weight, bool int8_x) {
  Weights W;
  const at::Tensor& w0 = weight[0];
  W.dtype = w0.scalar_type();
  W.int4 = W.dtype == at::kInt;
  if (weight.size() == 1 && whole_nz_int8(w0)) {  // packed already: never unpacked to ND
    W.e = w0.dim() == 3 ? w0.size(0) : 1;
    W.k = w0.size(-2);
    W.n = w0.size(-1);
    W.nz = true;
    if (W.e > 0 && W.k > 0 && W.n > 0) nz_grouped_view(w0, W.e, W.k, W.n, W);
    return W;
  }
  if (int8_x && weight.size() == 1 && w0.dim() == 3 && is_internal_format(w0) && w0.scalar_type() == at::kInt &&
      w0.storage_offset() == 0 && w0.is_contiguous()) {
    auto* impl = c10::qdev::qdev_storage_impl(w0.storage());
    if (w0.sizes() == c10::IntArrayRef(impl->base_sizes) && w0.size(0) > 0) {
      W.nz4_storage = impl;
      W.nz4_tensor = w0;
      W.e = w0.size(0);
      W.k = w0.size(1);
      W.n = w0.size(2) * 8;
      return W;
    }
  }
  if (weight.size() == 1 && w0.dim() == 3) {
    W.e = w0.size(0);
    TORCH_CHECK(W.e > 0, "npu_grouped_matmul: the weight holds no expert (", w0.sizes(), ")");
    const at::Tensor hw = logical_host_view(w0);
    for (int64_t i = 0; i < W.e; ++i) W.host.push_back(hw.select(0, i));
  } else {
    W.e = static_cast<int64_t>(weight.size());
    for (const auto& w : weight) {
      TORCH_CHECK(w.dim() == 2, "npu_grouped_matmul: with a list of weights every weight must be 2-D, but one is ",
                  w.dim(), "-D");
      TORCH_CHECK(w.scalar_type() == W.dtype, "npu_grouped_matmul: all weights must have one dtype, but found ",
                  dtype_name(W.dtype), " and ", dtype_name(w.scalar_type()));
      W.host.push_back(logical_host_view(w));
    }
  }
  W.k = W.host[0].size(0);
  W.n = W.host[0].size(1) * (W.int4 ? 8 : 1);
  for (const auto& h : W.host) {
    TORCH_CHECK(h.size(0) == W.k && h.size(1) * (W.int4 ? 8 : 1) == W.n, "npu_grouped_matmul: every weight must "
                "have the same (K, N) on qdev, but found (", W.k, ", ", W.n, ") and ", h.sizes());
  }
  return W;
}

PerExpert per_expert(const std::vector<at::Tensor>& list, int64_t e, const char* name, int64_t per_expert_numel,
                     const at::Tensor& like) {
  PerExpert out;
  if (list.empty()) return out;
  for (const auto& t : list) check_device(t, like);
  if (list.size() == 1 && e > 1) {
    const at::Tensor h = logical_host_view(list[0]);
    TORCH_CHECK(h.dim() >= 1 && h.size(0) == e && h.numel() == e * per_expert_numel, "npu_grouped_matmul: ", name,
                " must hold ", per_expert_numel, " values for each of the ", e, " experts, but its shape is ",
                list[0].sizes());
    out.all = h.reshape({e, per_expert_numel});
  } else {
    TORCH_CHECK(static_cast<int64_t>(list.size()) == e, "npu_grouped_matmul: the length of ", name, " (",
                list.size(), ") must equal the number of weights (", e, ")");
    std::vector<at::Tensor> rows;
    for (const auto& t : list) {
      TORCH_CHECK(t.numel() == per_expert_numel, "npu_grouped_matmul: each ", name, " must hold ", per_expert_numel,
                  " values, but one has shape ", t.sizes());
      TORCH_CHECK(t.scalar_type() == list[0].scalar_type(), "npu_grouped_matmul: every ", name, " must have one dtype");
      rows.push_back(logical_host_view(t).reshape({per_expert_numel}));
    }
    out.all = at::stack(rows, 0);
  }
  return out;
}
// ---------------------------------------------------------------------------------------
void run_float(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
               const PerExpert& biases, at::ScalarType out_t) {
  for (const auto& j : jobs) {
    if (j.m == 0) continue;
    const at::Tensor a = xh.narrow(0, j.row0, j.m);
    at::Tensor r = at::mm(a.to(at::kFloat), W.host[static_cast<size_t>(j.w)].to(at::kFloat));
    if (!biases.empty()) r = r.add(biases[static_cast<size_t>(j.w)].to(at::kFloat));
    at::from_blob(j.out, {j.m, W.n}, {j.ldo, 1}, at::TensorOptions().dtype(out_t)).copy_(r);
  }
}
}  // namespace

std::vector<at::Tensor> npu_grouped_matmul(
    at::TensorList x, at::TensorList weight, std::optional<at::TensorList> bias,
    std::optional<at::TensorList> scale, std::optional<at::TensorList> offset,
    std::optional<at::TensorList> antiquant_scale, std::optional<at::TensorList> antiquant_offset,
    std::optional<at::TensorList> per_token_scale, const std::optional<at::Tensor>& group_list,
    std::optional<at::TensorList> activation_input, std::optional<at::TensorList> activation_quant_scale,
    std::optional<at::TensorList> activation_quant_offset, std::optional<int64_t> split_item,
    std::optional<int64_t> group_type, std::optional<int64_t> group_list_type, std::optional<int64_t> act_type,
    at::OptionalIntArrayRef tuning_config, std::optional<int64_t> output_dtype) {
  (void)tuning_config;  // a tiling hint on the NPU; nothing to tune here
  TORCH_CHECK(group_type.has_value(), "Requires manual passing group_type, current is None.");
  const int64_t gt = *group_type;
  TORCH_CHECK(gt == -1 || gt == 0, "group_type currently only support -1 and 0, current value is ", gt);
  const int64_t si = split_item.value_or(0);
  TORCH_CHECK(!x.empty() && !weight.empty(), "Invalid inputs: neither x nor weight could be empty.");
  TORCH_CHECK(si >= 0 && si <= 3, "Invalid value of split_item [", si, "], which should only be one of 0/1/2/3.");
  TORCH_CHECK(static_cast<int64_t>(x.size()) <= kMaxTensorList && static_cast<int64_t>(weight.size()) <= kMaxTensorList,
              "npu_grouped_matmul: x and weight lists hold at most ", kMaxTensorList, " tensors");
  const int64_t glt = group_list_type.value_or(0);
  TORCH_CHECK(glt == 0 || glt == 1, "npu_grouped_matmul: group_list_type must be 0 (cumulative) or 1 (counts) on "
              "qdev, but it is ", glt);
  TORCH_CHECK(act_type.value_or(0) == 0, "npu_grouped_matmul: act_type ", act_type.value_or(0),
              " is not supported on qdev (only 0, no activation)");
  for (const auto* l : {&activation_input, &activation_quant_scale, &activation_quant_offset, &offset}) {
    TORCH_CHECK(!l->has_value() || l->value().empty(), "npu_grouped_matmul: activation_input, "
                "activation_quant_scale, activation_quant_offset and offset only support None");
  }
  const at::Tensor& x0 = x[0];
  for (const auto& t : x) check_device(t, x0);
  for (const auto& t : weight) check_device(t, x0);
  if (group_list.has_value() && group_list->defined()) check_device(*group_list, x0);

  std::optional<c10::DeviceGuard> guard;
  if (x0.device().type() == c10::DeviceType::PrivateUse1) {
    guard.emplace(x0.device());
    c10::qdev::sync_current_stream(x0.device().index());
  }

  const auto xdt = x0.scalar_type();
  for (const auto& t : x) {
    TORCH_CHECK(t.scalar_type() == xdt, "npu_grouped_matmul: all x must have one dtype, but found ",
                dtype_name(xdt), " and ", dtype_name(t.scalar_type()));
  }
  const std::vector<at::Tensor> wl(weight.begin(), weight.end());
  const Weights W = read_weights(wl, xdt == at::kChar);
  const auto wdt = W.dtype;
  const int64_t kk = W.k, n = W.n;
  TORCH_CHECK(kk < kInnerLimit && n < kInnerLimit * (W.int4 ? 8 : 1), "npu_grouped_matmul: the last dim of x and "
              "weight must be less than ", kInnerLimit);

  // Group sizes: from group_list (one group per weight), or one per x tensor.
  const bool has_gl = group_list.has_value() && group_list->defined();
  std::vector<int64_t> counts;
  if (has_gl) {
    const at::Tensor gl = logical_host_view(*group_list);
    TORCH_CHECK(gl.dim() == 1, "npu_grouped_matmul: group_list must be 1-D, but it is ", gl.dim(), "-D");
    TORCH_CHECK(gl.scalar_type() == at::kLong, "npu_grouped_matmul: group_list must be int64, but it is ",
                dtype_name(gl.scalar_type()));
    TORCH_CHECK(gl.numel() == W.e, "npu_grouped_matmul: the length of group_list (", gl.numel(),
                ") must equal the number of weights (", W.e, ")");
    TORCH_CHECK(gl.numel() <= kMaxGroups, "npu_grouped_matmul: group_list holds at most ", kMaxGroups, " groups");
    const at::Tensor glc = gl.contiguous();
    const int64_t* g = glc.const_data_ptr<int64_t>();
    int64_t prev = 0;
    for (int64_t i = 0; i < gl.numel(); ++i) {
      if (glt == 0) {
        TORCH_CHECK(g[i] >= prev, i == 0 ? "group_list[0] should be larger than or equal to 0, but now is " :
                    "group_list must be non-negative and non-decreasing when group_list_type is 0, but group_list[",
                    i == 0 ? "" : std::to_string(i) + "] - group_list[" + std::to_string(i - 1) + "] is ",
                    g[i] - prev, ".");
        counts.push_back(g[i] - prev);
        prev = g[i];
      } else {
        TORCH_CHECK(g[i] >= 0, "group_list must be non-negative when group_list_type is 1, but group_list[", i,
                    "] is ", g[i], ".");
        counts.push_back(g[i]);
      }
    }
  }

  // x as one (rows, K) matrix.
  std::vector<at::Tensor> xs;
  for (const auto& t : x) {
    TORCH_CHECK(t.dim() >= 2 && t.dim() <= 6, "npu_grouped_matmul: each x must be 2-D to 6-D, but one is ", t.dim(), "-D");
    TORCH_CHECK(t.size(-1) == kk, "npu_grouped_matmul: the K of x (", t.size(-1), ") and of weight (", kk,
                ") must be equal");
    TORCH_CHECK(t.dim() == 2 || (si <= 1 && !has_gl), "npu_grouped_matmul: x must be 2-D unless split_item is 0/1 "
                "without group_list");
    xs.push_back(logical_host_view(t).reshape({-1, kk}));
  }
  const at::Tensor xh = (xs.size() == 1 ? xs[0] : at::cat(xs, 0)).contiguous();
  const int64_t rows = xh.size(0);
  std::vector<int64_t> x_rows;
  for (const auto& t : xs) x_rows.push_back(t.size(0));

  // Jobs: (row range, weight).
  std::vector<Job> jobs;
  if (has_gl) {
    TORCH_CHECK(x.size() == 1, "npu_grouped_matmul: with group_list, x must be a single tensor (split x), but it "
                "holds ", x.size());
    int64_t r = 0;
    for (int64_t i = 0; i < W.e; ++i) {
      jobs.push_back(Job{r, counts[static_cast<size_t>(i)], i});
      r += counts[static_cast<size_t>(i)];
    }
    if (glt == 0) {
      TORCH_CHECK(r == rows, "npu_grouped_matmul: the last value of group_list (", r, ") must equal the rows of x (",
                  rows, ") when group_list_type is 0");
    } else {
      TORCH_CHECK(r == rows, "npu_grouped_matmul: the sum of group_list (", r, ") must equal the rows of x (", rows,
                  ") when group_list_type is 1");
    }
  } else {
    TORCH_CHECK(static_cast<int64_t>(x.size()) == W.e, si <= 1 ?
                "When split_item = 0 or 1 and input group_list is None, the num of x tensors must equal the num of "
                "weight tensors." : "npu_grouped_matmul: without group_list the num of x tensors must equal the num "
                "of weight tensors.", "Actual lengths: x [", x.size(), "], weight [", W.e, "].");
    int64_t r = 0;
    for (int64_t i = 0; i < W.e; ++i) {
      jobs.push_back(Job{r, x_rows[static_cast<size_t>(i)], i});
      r += x_rows[static_cast<size_t>(i)];
    }
  }

  // Mode and output dtype.
  const std::vector<at::Tensor> scale_l = list_of(scale), bias_l = list_of(bias), aq_s = list_of(antiquant_scale),
                                aq_o = list_of(antiquant_offset), pts_l = list_of(per_token_scale);
  const bool quant_x = xdt == at::kChar;
  const bool float_x = xdt == at::kHalf || xdt == at::kBFloat16 || xdt == at::kFloat;
  TORCH_CHECK(quant_x || float_x, "npu_grouped_matmul: x must be float16, bfloat16, float32 or int8, but it is ",
              dtype_name(xdt));
  at::ScalarType out_t = xdt;
  if (output_dtype.has_value()) out_t = static_cast<at::ScalarType>(*output_dtype);
  TORCH_CHECK(pts_l.empty() || (quant_x && pts_l.size() == 1), "npu_grouped_matmul: per_token_scale is a list of "
              "one float32 tensor (rows of x), for int8 x only");
  at::Tensor pertoken;
  if (!pts_l.empty()) {
    pertoken = pts_l[0];
    check_device(pertoken, x0);
    TORCH_CHECK(pertoken.scalar_type() == at::kFloat, "npu_grouped_matmul: per_token_scale must be float32, but it is ",
                dtype_name(pertoken.scalar_type()));
    TORCH_CHECK(pertoken.numel() == rows, "npu_grouped_matmul: per_token_scale must hold one value per row of x (",
                rows, "), but its shape is ", pertoken.sizes());
  }
  enum class Mode { kW8A8, kW4A8, kWeightOnly, kFloat } mode;
  if (quant_x) {
    TORCH_CHECK(wdt == at::kChar || wdt == at::kInt, "npu_grouped_matmul: int8 x needs int8 or int32-packed int4 "
                "weights, but the weight is ", dtype_name(wdt));
    TORCH_CHECK(aq_s.empty() && aq_o.empty(), "npu_grouped_matmul: antiquant_scale/antiquant_offset are for float x "
                "(weight-only quantization), x is int8");
    mode = wdt == at::kChar ? Mode::kW8A8 : Mode::kW4A8;
  } else if (wdt == at::kChar || wdt == at::kInt) {
    TORCH_CHECK(xdt != at::kFloat, "npu_grouped_matmul: weight-only quantization needs float16 or bfloat16 x, but it "
                "is torch.float32");
    TORCH_CHECK(!aq_s.empty(), "npu_grouped_matmul: ", dtype_name(wdt), " weights with ", dtype_name(xdt),
                " x need antiquant_scale");
    TORCH_CHECK(scale_l.empty() && pertoken.defined() == false, "npu_grouped_matmul: scale/per_token_scale are for int8 "
                "x; weight-only quantization takes antiquant_scale/antiquant_offset");
    mode = Mode::kWeightOnly;
  } else {
    TORCH_CHECK(wdt == xdt, "npu_grouped_matmul: x and weight must have one dtype without quantization, but x is ",
                dtype_name(xdt), " and weight is ", dtype_name(wdt));
    TORCH_CHECK(scale_l.empty() && aq_s.empty() && aq_o.empty(), "npu_grouped_matmul: scale/antiquant parameters "
                "need quantized weights");
    mode = Mode::kFloat;
  }

  PerExpert scales, biases = per_expert(bias_l, W.e, "bias", n, x0);
  int64_t groups = 1;
  if (mode == Mode::kW8A8) {
    if (out_t == at::kInt) {
      TORCH_CHECK(scale_l.empty() && !pertoken.defined(), "npu_grouped_matmul: int32 output takes no scale and no "
                  "per_token_scale");
      TORCH_CHECK(biases.empty() || biases.dtype() == at::kInt, "npu_grouped_matmul: int32 output takes "
                  "an int32 bias only");
    } else {
      TORCH_CHECK(out_t == at::kChar || out_t == at::kHalf || out_t == at::kBFloat16 || out_t == at::kFloat,
                  "npu_grouped_matmul: output_dtype for int8 x must be int8, float16, bfloat16, float32 or int32, "
                  "but it is ", dtype_name(out_t));
      TORCH_CHECK(!scale_l.empty(), "npu_grouped_matmul: int8 x with ", dtype_name(out_t), " output needs scale");
      scales = per_expert(scale_l, W.e, "scale", n, x0);
      const auto st = scales.dtype();
      if (out_t == at::kChar) {
        TORCH_CHECK(st == at::kLong && !pertoken.defined(), "npu_grouped_matmul: int8 output needs an int64 scale "
                    "(npu_trans_quant_param) and no per_token_scale");
      } else {
        TORCH_CHECK(st == at::kFloat || st == at::kBFloat16, "npu_grouped_matmul: scale must be float32 or bfloat16 "
                    "for ", dtype_name(out_t), " output, but it is ", dtype_name(st));
      }
    }
  } else if (mode == Mode::kW4A8) {
    TORCH_CHECK(out_t == at::kHalf || out_t == at::kBFloat16, "npu_grouped_matmul: int8 x with int4 weights "
                "outputs float16 or bfloat16, but output_dtype is ", dtype_name(out_t));
    TORCH_CHECK(!scale_l.empty() && pertoken.defined(), "npu_grouped_matmul: int8 x with int4 weights needs scale "
                "and per_token_scale");
    const at::Tensor s0 = scale_l[0];
    const int64_t per = s0.numel() / (scale_l.size() == 1 && W.e > 1 ? W.e : 1);
    TORCH_CHECK(per > 0 && per % n == 0, "npu_grouped_matmul: int4 weight scale must be (E, N) per channel or "
                "(E, G, N) per group, but its shape is ", s0.sizes());
    groups = per / n;
    TORCH_CHECK(kk % groups == 0 && (groups == 1 || (kk / groups) % 32 == 0), "npu_grouped_matmul: the int4 "
                "weight's groups must split K (", kk, ") into multiples of 32, but there are ", groups);
    scales = per_expert(scale_l, W.e, "scale", per, x0);
    TORCH_CHECK(scales.dtype() == at::kFloat || scales.dtype() == at::kBFloat16,
                "npu_grouped_matmul: int4 weight scale must be float32 or bfloat16");
    TORCH_CHECK(kk % 2 == 0, "npu_grouped_matmul: K must be even for int4 weights");
  } else if (mode == Mode::kWeightOnly) {
    TORCH_CHECK(out_t == xdt, "npu_grouped_matmul: weight-only quantization outputs x's dtype (", dtype_name(xdt),
                "), but output_dtype is ", dtype_name(out_t));
    const at::Tensor s0 = aq_s[0];
    const int64_t per = s0.numel() / (aq_s.size() == 1 && W.e > 1 ? W.e : 1);
    TORCH_CHECK(per > 0 && per % n == 0, "npu_grouped_matmul: antiquant_scale must be (E, N) per channel or "
                "(E, G, N) per group, but its shape is ", s0.sizes());
    groups = per / n;
    TORCH_CHECK(groups == 1 || W.int4, "npu_grouped_matmul: int8 weights support per-channel antiquant_scale only");
    TORCH_CHECK(kk % groups == 0, "npu_grouped_matmul: the number of groups (", groups, ") must divide K (", kk, ")");
    TORCH_CHECK(!W.int4 || kk % 2 == 0, "npu_grouped_matmul: K must be even for int4 weights");
    scales = per_expert(aq_s, W.e, "antiquant_scale", per, x0);
    TORCH_CHECK(scales.dtype() == xdt, "npu_grouped_matmul: antiquant_scale must have x's dtype (",
                dtype_name(xdt), "), but it is ", dtype_name(scales.dtype()));
  } else {
    TORCH_CHECK(out_t == xdt, "npu_grouped_matmul: without quantization the output has x's dtype (", dtype_name(xdt),
                "), but output_dtype is ", dtype_name(out_t));
  }
  const PerExpert offsets =
      mode == Mode::kWeightOnly ? per_expert(aq_o, W.e, "antiquant_offset", groups * n, x0) : PerExpert{};
  if (!offsets.empty()) {
    TORCH_CHECK(offsets.dtype() == xdt, "npu_grouped_matmul: antiquant_offset must have x's dtype");
  }

  // Outputs: one (rows, N) tensor (split_item 2/3), or one per group (0/1).
  const auto opts = x0.options().dtype(out_t);
  std::vector<at::Tensor> outs;
  if (si >= 2) {
    outs.push_back(at::empty({rows, n}, opts));
    char* base = static_cast<char*>(logical_host_view(outs[0]).data_ptr());
    for (auto& j : jobs) {
      j.out = base + j.row0 * n * static_cast<int64_t>(c10::elementSize(out_t));
      j.ldo = n;
    }
  } else {
    for (size_t i = 0; i < jobs.size(); ++i) {
      std::vector<int64_t> sz;
      if (!has_gl) {
        sz = x[i].sizes().vec();
        sz.back() = n;
      } else {
        sz = {jobs[i].m, n};
      }
      outs.push_back(at::empty(sz, opts));
      jobs[i].out = logical_host_view(outs.back()).data_ptr();
      jobs[i].ldo = n;
    }
  }
  if (rows == 0 || n == 0) return outs;
  if (kk == 0) {  // empty sums: bias only (the quantized epilogues scale 0)
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (jobs[i].m == 0) continue;
      at::Tensor o = at::from_blob(jobs[i].out, {jobs[i].m, n}, {jobs[i].ldo, 1}, at::TensorOptions().dtype(out_t));
      o.zero_();
      if (!biases.empty() && mode != Mode::kW8A8) o.copy_(biases[static_cast<size_t>(jobs[i].w)].to(at::kFloat).expand({jobs[i].m, n}));
    }
    return outs;
  }

  switch (mode) {
    case Mode::kW8A8: run_w8a8(xh, W, jobs, scales, biases, pertoken, out_t); break;
    case Mode::kW4A8: {
      // the scales are baked into the packed experts: a cached packing is keyed on them
      const at::Tensor& s0 = scale_l[0];
      run_w4a8(xh, W, jobs, scales, groups, biases, pertoken, out_t,
               {s0.has_storage() ? s0.const_data_ptr() : nullptr, s0._version()});
      break;
    }
    case Mode::kWeightOnly: run_weight_only(xh, W, jobs, scales, offsets, groups, biases, xdt); break;
    case Mode::kFloat: run_float(xh, W, jobs, biases, out_t); break;
  }
  return outs;
}

}  // namespace at::native::qdev
