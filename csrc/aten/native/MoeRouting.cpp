// MoE token routing (torch_npu semantics): npu_moe_init_routing_v2 sorts the (token, k)
// pairs by expert (stable), gathers (and optionally quantizes) the token rows into expert
// order and counts tokens per expert; npu_moe_finalize_routing / npu_moe_token_unpermute
// scatter the expert outputs back, weighted by the router probabilities.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>

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

// Rows of x as fp32 (host), contiguous.
at::Tensor f32_rows(const at::Tensor& t, int64_t h) {
  return logical_host_view(t).reshape({-1, h}).to(at::kFloat).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> npu_moe_init_routing_v2(
    const at::Tensor& x, const at::Tensor& expert_idx, const std::optional<at::Tensor>& scale,
    const std::optional<at::Tensor>& offset, int64_t active_num, int64_t expert_capacity, int64_t expert_num,
    int64_t drop_pad_mode, int64_t expert_tokens_num_type, bool expert_tokens_num_flag, int64_t quant_mode,
    at::IntArrayRef active_expert_range, int64_t row_idx_type) {
  (void)expert_capacity;  // only checked in drop/pad mode, which qdev does not implement
  (void)expert_tokens_num_flag;
  TORCH_CHECK(x.dim() == 2, "npu_moe_init_routing_v2: x must be 2-D (NUM_ROWS, H), but it is ", x.dim(), "-D");
  TORCH_CHECK(expert_idx.dim() == 2 && expert_idx.size(0) == x.size(0), "npu_moe_init_routing_v2: expert_idx must be "
              "2-D (NUM_ROWS, K) with the rows of x, but its shape is ", expert_idx.sizes());
  TORCH_CHECK(expert_idx.scalar_type() == at::kInt, "npu_moe_init_routing_v2: expert_idx must be int32, but it is ",
              dtype_name(expert_idx.scalar_type()));
  const auto xdt = x.scalar_type();
  TORCH_CHECK(xdt == at::kHalf || xdt == at::kBFloat16 || xdt == at::kFloat || xdt == at::kChar,
              "npu_moe_init_routing_v2: x must be float16, bfloat16, float32 or int8, but it is ", dtype_name(xdt));
  TORCH_CHECK(drop_pad_mode == 0, "npu_moe_init_routing_v2: only drop_pad_mode 0 (dropless) is supported on qdev, "
              "got ", drop_pad_mode);
  TORCH_CHECK(quant_mode == -1 || quant_mode == 1, "npu_moe_init_routing_v2: quant_mode must be -1 (no quantization) "
              "or 1 (dynamic); static quantization (0) is not supported, got ", quant_mode);
  TORCH_CHECK(expert_tokens_num_type == 0 || expert_tokens_num_type == 1, "npu_moe_init_routing_v2: "
              "expert_tokens_num_type must be 0 (cumsum) or 1 (count) on qdev, got ", expert_tokens_num_type);
  TORCH_CHECK(row_idx_type == 0 || row_idx_type == 1, "npu_moe_init_routing_v2: row_idx_type must be 0 or 1, got ",
              row_idx_type);
  TORCH_CHECK(expert_num > 0, "npu_moe_init_routing_v2: expert_num must be positive, got ", expert_num);
  TORCH_CHECK(!(quant_mode == 1 && xdt == at::kChar), "npu_moe_init_routing_v2: dynamic quantization needs float x");
  TORCH_CHECK(!offset.has_value() || !offset->defined(), "npu_moe_init_routing_v2: offset only supports None");
  int64_t e0 = 0, e1 = expert_num;
  if (!active_expert_range.empty()) {
    TORCH_CHECK(active_expert_range.size() == 2, "npu_moe_init_routing_v2: active_expert_range must hold 2 values");
    e0 = active_expert_range[0];
    e1 = active_expert_range[1];
    TORCH_CHECK(0 <= e0 && e0 < e1 && e1 <= expert_num, "npu_moe_init_routing_v2: active_expert_range must satisfy "
                "0 <= start < end <= expert_num, got [", e0, ", ", e1, "]");
  }
  same_device(expert_idx, x);
  const int64_t rows = x.size(0), h = x.size(1), topk = expert_idx.size(1), total = rows * topk;
  const int64_t ne = e1 - e0;
  if (scale.has_value() && scale->defined()) {
    same_device(*scale, x);
    TORCH_CHECK(scale->scalar_type() == at::kFloat, "npu_moe_init_routing_v2: scale must be float32");
    if (quant_mode == 1) {
      TORCH_CHECK(scale->numel() == ne * h || scale->numel() == h, "npu_moe_init_routing_v2: with quant_mode 1 the "
                  "scale must be (", ne, ", ", h, ") (one smooth row per active expert) or (", h, "), but it is ",
                  scale->sizes());
    } else {
      TORCH_CHECK(scale->numel() == rows, "npu_moe_init_routing_v2: without quantization the scale must be (NUM_ROWS,)"
                  " = (", rows, "), but it is ", scale->sizes());
    }
  }
  std::optional<c10::DeviceGuard> guard;
  enter(x, guard);

  const at::Tensor idx = logical_host_view(expert_idx).contiguous();
  const int32_t* ei = idx.const_data_ptr<int32_t>();
  std::vector<int64_t> count(static_cast<size_t>(ne), 0);
  for (int64_t i = 0; i < total; ++i) {
    TORCH_CHECK(ei[i] >= 0 && ei[i] < expert_num, "npu_moe_init_routing_v2: expert_idx holds ", ei[i],
                ", outside [0, expert_num = ", expert_num, ")");
    if (ei[i] >= e0 && ei[i] < e1) ++count[static_cast<size_t>(ei[i] - e0)];
  }
  std::vector<int64_t> start(static_cast<size_t>(ne) + 1, 0);
  for (int64_t e = 0; e < ne; ++e) start[static_cast<size_t>(e) + 1] = start[static_cast<size_t>(e)] + count[static_cast<size_t>(e)];
  const int64_t valid = start[static_cast<size_t>(ne)];
  const int64_t limit = active_num > 0 ? std::min(valid, active_num) : valid;
  std::vector<int64_t> sorted(static_cast<size_t>(valid));  // dst -> src (flattened row * K + k)
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < total; ++i) {
      if (ei[i] >= e0 && ei[i] < e1) sorted[static_cast<size_t>(fill[static_cast<size_t>(ei[i] - e0)]++)] = i;
    }
  }

  const auto opts = x.options();
  at::Tensor expanded_x = at::empty({total, h}, opts.dtype(quant_mode == 1 ? at::kChar : xdt));
  at::Tensor row_idx = at::empty({total}, opts.dtype(at::kInt));
  at::Tensor tokens = at::empty({ne}, opts.dtype(at::kLong));
  at::Tensor expanded_scale = at::empty({total}, opts.dtype(at::kFloat));
  at::Tensor ex_h = logical_host_view(expanded_x), ri_h = logical_host_view(row_idx), tk_h = logical_host_view(tokens),
             es_h = logical_host_view(expanded_scale);
  int32_t* ri = ri_h.mutable_data_ptr<int32_t>();
  std::fill_n(ri, total, -1);
  for (int64_t d = 0; d < limit; ++d) {
    const int64_t s = sorted[static_cast<size_t>(d)];
    if (row_idx_type == 0) ri[s] = static_cast<int32_t>(d);
    else ri[d] = static_cast<int32_t>(s);
  }
  int64_t* tk = tk_h.mutable_data_ptr<int64_t>();
  for (int64_t e = 0; e < ne; ++e) {
    tk[e] = expert_tokens_num_type == 0 ? start[static_cast<size_t>(e) + 1] : count[static_cast<size_t>(e)];
  }
  float* es = es_h.mutable_data_ptr<float>();
  std::fill_n(es, total, 0.0f);
  if (total > limit) ex_h.narrow(0, limit, total - limit).zero_();
  if (limit == 0 || h == 0) return {expanded_x, row_idx, tokens, expanded_scale};

  const at::Tensor xh = logical_host_view(x);
  if (quant_mode == -1) {
    const at::Tensor xc = xh.contiguous();
    const char* src = static_cast<const char*>(xc.const_data_ptr());
    char* dst = static_cast<char*>(ex_h.data_ptr());
    const int64_t row_bytes = h * static_cast<int64_t>(xc.element_size());
    const at::Tensor sc = scale.has_value() && scale->defined() ? logical_host_view(*scale).to(at::kFloat).contiguous()
                                                               : at::Tensor();
    at::parallel_for(0, limit, 16, [&](int64_t d0, int64_t d1) {
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t r = sorted[static_cast<size_t>(d)] / topk;
        std::memcpy(dst + d * row_bytes, src + r * row_bytes, static_cast<size_t>(row_bytes));
        if (sc.defined()) es[d] = sc.const_data_ptr<float>()[r];
      }
    });
  } else {
    const at::Tensor xf = f32_rows(xh, h);
    const at::Tensor sm = scale.has_value() && scale->defined() ? logical_host_view(*scale).to(at::kFloat).contiguous()
                                                               : at::Tensor();
    const bool per_expert_smooth = sm.defined() && sm.numel() == ne * h && ne > 1;
    int8_t* q = ex_h.mutable_data_ptr<int8_t>();
    const k::MoeRowKernels& rows_k = row_kernels();
    at::parallel_for(0, limit, 16, [&](int64_t d0, int64_t d1) {
      std::vector<float> row;
      int64_t e = 0;
      for (int64_t d = d0; d < d1; ++d) {
        const int64_t s = sorted[static_cast<size_t>(d)], r = s / topk;
        const float* smooth = nullptr;
        if (sm.defined()) {
          while (e + 1 < ne && start[static_cast<size_t>(e) + 1] <= d) ++e;
          while (e > 0 && start[static_cast<size_t>(e)] > d) --e;
          smooth = sm.const_data_ptr<float>() + (per_expert_smooth ? e * h : 0);
        }
        es[d] = rows_k.quant_row_dynamic(xf.const_data_ptr<float>() + r * h, h, smooth, q + d * h);
      }
    });
  }
  return {expanded_x, row_idx, tokens, expanded_scale};
}

at::Tensor npu_moe_finalize_routing(const at::Tensor& expanded_permuted_rows, const std::optional<at::Tensor>& skip1,
                                    const std::optional<at::Tensor>& skip2, const std::optional<at::Tensor>& bias,
                                    const std::optional<at::Tensor>& scales, const at::Tensor& expanded_src_to_dst_row,
                                    const std::optional<at::Tensor>& export_for_source_row,
                                    std::optional<int64_t> drop_pad_mode) {
  const at::Tensor& ex = expanded_permuted_rows;
  TORCH_CHECK(ex.dim() == 2, "npu_moe_finalize_routing: expanded_permuted_rows must be 2-D, but it is ", ex.dim(), "-D");
  const int64_t mode = drop_pad_mode.value_or(0);
  TORCH_CHECK(mode >= 0 && mode <= 3, "npu_moe_finalize_routing: drop_pad_mode must be in [0, 3], got ", mode);
  TORCH_CHECK(mode == 0 || mode == 2, "npu_moe_finalize_routing: only the dropless layouts (drop_pad_mode 0: index "
              "k * NUM_ROWS + row, 2: row * K + k) are supported on qdev, got ", mode);
  TORCH_CHECK(expanded_src_to_dst_row.scalar_type() == at::kInt, "npu_moe_finalize_routing: expanded_src_to_dst_row "
              "must be int32");
  const bool has_scales = scales.has_value() && scales->defined();
  int64_t topk = 1;
  if (has_scales) {
    TORCH_CHECK(scales->dim() == 2, "npu_moe_finalize_routing: scales must be 2-D (NUM_ROWS, K)");
    topk = scales->size(1);
  } else if (export_for_source_row.has_value() && export_for_source_row->defined()) {
    topk = export_for_source_row->size(-1);
  }
  const int64_t total = expanded_src_to_dst_row.numel();
  TORCH_CHECK(topk > 0 && total % topk == 0, "npu_moe_finalize_routing: expanded_src_to_dst_row (", total,
              " values) must hold NUM_ROWS * K values, K = ", topk);
  const int64_t rows = total / topk, h = ex.size(1);
  if (has_scales) TORCH_CHECK(scales->size(0) == rows, "npu_moe_finalize_routing: scales must have ", rows, " rows");
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (export_for_source_row.has_value() && export_for_source_row->defined()),
              "npu_moe_finalize_routing: bias needs export_for_source_row (the expert of each (row, k))");
  for (const auto* t : {&skip1, &skip2}) {
    if (t->has_value() && (*t)->defined()) {
      TORCH_CHECK((*t)->numel() == rows * h, "npu_moe_finalize_routing: skip tensors must be (", rows, ", ", h, ")");
      same_device(**t, ex);
    }
  }
  same_device(expanded_src_to_dst_row, ex);
  std::optional<c10::DeviceGuard> guard;
  enter(ex, guard);
  const at::Tensor exf = f32_rows(ex, h);
  const at::Tensor idx = logical_host_view(expanded_src_to_dst_row).contiguous();
  const at::Tensor sc = has_scales ? logical_host_view(*scales).to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor bf = has_bias ? f32_rows(*bias, h) : at::Tensor();
  const at::Tensor eid = has_bias ? logical_host_view(*export_for_source_row).to(at::kLong).contiguous() : at::Tensor();
  at::Tensor acc = at::zeros({rows, h}, at::kFloat);
  if (skip1.has_value() && skip1->defined()) acc.add_(f32_rows(*skip1, h));
  if (skip2.has_value() && skip2->defined()) acc.add_(f32_rows(*skip2, h));
  const int32_t* ix = idx.const_data_ptr<int32_t>();
  const int64_t ex_rows = ex.size(0);
  for (int64_t i = 0; i < total; ++i) {
    TORCH_CHECK(ix[i] < ex_rows, "npu_moe_finalize_routing: expanded_src_to_dst_row holds ", ix[i],
                ", but expanded_permuted_rows has ", ex_rows, " rows");
  }
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = acc.mutable_data_ptr<float>() + r * h;
      for (int64_t kk = 0; kk < topk; ++kk) {
        const int64_t src = mode == 0 ? kk * rows + r : r * topk + kk;
        const int32_t d = ix[src];
        if (d < 0) continue;
        const float w = has_scales ? sc.const_data_ptr<float>()[r * topk + kk] : 1.0f;
        const float* e = exf.const_data_ptr<float>() + d * h;
        const float* b = has_bias ? bf.const_data_ptr<float>() + eid.const_data_ptr<int64_t>()[r * topk + kk] * h : nullptr;
        for (int64_t j = 0; j < h; ++j) o[j] += w * (b ? e[j] + b[j] : e[j]);
      }
    }
  });
  at::Tensor out = at::empty({rows, h}, ex.options());
  logical_host_view(out).copy_(acc);
  return out;
}

at::Tensor npu_moe_token_unpermute(const at::Tensor& permuted_tokens, const at::Tensor& sorted_indices,
                                   const std::optional<at::Tensor>& probs, bool padded_mode,
                                   at::OptionalIntArrayRef restore_shape) {
  TORCH_CHECK(!padded_mode, "npu_moe_token_unpermute: padded_mode is not supported on qdev");
  TORCH_CHECK(permuted_tokens.dim() == 2, "npu_moe_token_unpermute: permuted_tokens must be 2-D");
  TORCH_CHECK(sorted_indices.scalar_type() == at::kInt, "npu_moe_token_unpermute: sorted_indices must be int32");
  const bool has_probs = probs.has_value() && probs->defined();
  const int64_t topk = has_probs ? probs->size(-1) : 1;
  const int64_t total = sorted_indices.numel();
  TORCH_CHECK(topk > 0 && total % topk == 0, "npu_moe_token_unpermute: sorted_indices must hold tokens * topk values");
  const int64_t rows = total / topk, h = permuted_tokens.size(1);
  if (has_probs) TORCH_CHECK(probs->numel() == total, "npu_moe_token_unpermute: probs must be (tokens, topk)");
  (void)restore_shape;
  same_device(sorted_indices, permuted_tokens);
  std::optional<c10::DeviceGuard> guard;
  enter(permuted_tokens, guard);
  const at::Tensor pf = f32_rows(permuted_tokens, h);
  const at::Tensor idx = logical_host_view(sorted_indices).contiguous();
  const at::Tensor pr = has_probs ? logical_host_view(*probs).to(at::kFloat).contiguous() : at::Tensor();
  const int32_t* ix = idx.const_data_ptr<int32_t>();
  for (int64_t i = 0; i < total; ++i) {
    TORCH_CHECK(ix[i] < permuted_tokens.size(0), "npu_moe_token_unpermute: sorted_indices holds ", ix[i],
                ", but permuted_tokens has ", permuted_tokens.size(0), " rows");
  }
  at::Tensor acc = at::zeros({rows, h}, at::kFloat);
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = acc.mutable_data_ptr<float>() + r * h;
      for (int64_t kk = 0; kk < topk; ++kk) {
        const int32_t d = ix[r * topk + kk];
        if (d < 0) continue;
        const float w = has_probs ? pr.const_data_ptr<float>()[r * topk + kk] : 1.0f;
        const float* e = pf.const_data_ptr<float>() + d * h;
        for (int64_t j = 0; j < h; ++j) o[j] += w * e[j];
      }
    }
  });
  at::Tensor out = at::empty({rows, h}, permuted_tokens.options());
  logical_host_view(out).copy_(acc);
  return out;
}

}  // namespace at::native::qdev
