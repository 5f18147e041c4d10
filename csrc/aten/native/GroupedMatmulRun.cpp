// npu_grouped_matmul's kernel drivers: W8A8 (NZ-VNNI int8 GEMM), W4A8 (the W4A8 kernel) and
// weight-only (GEMV / W' panels + GEMM), each as one parallel region over (job, column panel)
// tasks; see GroupedMatmul.cpp for the op.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/mm.h>

#include <memory>

#include "../../kernels/matmul/qd_qgemm.h"
#include "../../kernels/matmul/qd_w4a8.h"
#include "../../kernels/matmul/qd_wq_gemv.h"
#include "GroupedMatmul.h"
#include "QdevFormat.h"
#include "QuantCommon.h"

namespace at::native::qdev::gmm {

namespace k = ::qdev::kernels;

// float32 copy of a small parameter tensor (scales, biases), host side.
std::vector<float> floats(const at::Tensor& t) {
  const at::Tensor f = logical_host_view(t).to(at::kFloat).contiguous();
  return std::vector<float>(f.const_data_ptr<float>(), f.const_data_ptr<float>() + f.numel());
}

bool is_transposed(const at::Tensor& t) {  // last two dims stored column-major
  if (t.dim() < 2) return false;
  const int64_t r = t.size(-2), c = t.size(-1);
  if (r == 1 || c == 1) return false;
  return t.stride(-2) == 1 && t.stride(-1) == r;
}

// Splits tasks [0, n) with per-task costs into about `chunks` contiguous ranges of equal cost.
std::vector<int64_t> balanced_cuts(const std::vector<int64_t>& cost, int64_t chunks) {
  const int64_t total = std::accumulate(cost.begin(), cost.end(), int64_t{0});
  std::vector<int64_t> cuts{0};
  int64_t acc = 0, next = 1;
  for (size_t i = 0; i < cost.size(); ++i) {
    acc += cost[i];
    if (next < chunks && acc * chunks >= next * total && static_cast<int64_t>(i) + 1 < static_cast<int64_t>(cost.size())) {
      cuts.push_back(static_cast<int64_t>(i) + 1);
      while (next < chunks && acc * chunks >= next * total) ++next;
    }
  }
  cuts.push_back(static_cast<int64_t>(cost.size()));
  return cuts;
}

// ---------------------------------------------------------------------------------------
// W8A8: int8 x, int8 weights.
void run_w8a8(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
              const PerExpert& scales, const PerExpert& biases,
              const at::Tensor& pertoken, at::ScalarType out_t) {
  const auto isa = k::active_isa();
  const int64_t kk = W.k, n = W.n, lda = k::round_up(kk, k::kNzRows);
  const int64_t rows = xh.size(0);
  // A: all rows once, as u8.
  std::unique_ptr<uint8_t[]> a_u8(new uint8_t[static_cast<size_t>(std::max<int64_t>(rows, 1) * lda)]);
  const int8_t* a_src = xh.const_data_ptr<int8_t>();
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    k::pack_a_u8(a_src + r0 * kk, r1 - r0, kk, kk, a_u8.get() + r0 * lda, lda);
  });

  // Epilogue parameters of all experts, converted once: scales (float, or packed int64 with offset), biases.
  std::vector<float> scale_f, bias_f;
  std::vector<int32_t> offset_i, bias_i;
  if (!scales.empty()) {
    if (scales.dtype() == at::kLong) {
      const at::Tensor c = scales.all.contiguous();
      const int64_t* v = c.const_data_ptr<int64_t>();
      for (int64_t i = 0; i < c.numel(); ++i) {
        scale_f.push_back(unpack_scale(v[i]));
        offset_i.push_back(unpack_offset(v[i]));
      }
    } else {
      scale_f = scales.floats_all();
    }
  }
  if (!biases.empty()) {
    if (biases.dtype() == at::kInt) {
      const at::Tensor c = biases.all.contiguous();
      bias_i.assign(c.const_data_ptr<int32_t>(), c.const_data_ptr<int32_t>() + c.numel());
    } else {
      bias_f = biases.floats_all();
    }
  }
  const std::vector<float> pt = pertoken.defined() ? floats(pertoken) : std::vector<float>{};

  k::QGemmEpilogue ep;
  switch (out_t) {
    case at::kInt: ep.out = k::QGemmOut::kInt32; break;
    case at::kChar: ep.out = k::QGemmOut::kInt8; break;
    case at::kHalf: ep.out = k::QGemmOut::kFloat16; break;
    case at::kBFloat16: ep.out = k::QGemmOut::kBFloat16; break;
    case at::kFloat: ep.out = k::QGemmOut::kFloat32; break;
    default: TORCH_INTERNAL_ASSERT(false, "unexpected output dtype");
  }
  ep.scale_stride = 1;
  ep.offset_stride = 1;

  // B: the NZ storage as is, or the active experts packed now.
  const int64_t panels = k::qgemm_num_panels(n), mat = k::nz_packed_bytes(kk, n), n_pad = k::round_up(n, k::kNzCols);
  std::vector<int64_t> slot(static_cast<size_t>(W.e), -1);
  std::vector<int64_t> active;
  for (const auto& j : jobs) {
    if (j.m > 0 && slot[static_cast<size_t>(j.w)] < 0) {
      slot[static_cast<size_t>(j.w)] = static_cast<int64_t>(active.size());
      active.push_back(j.w);
    }
  }
  std::unique_ptr<int8_t[]> packed;
  std::vector<int32_t> colsum;
  std::vector<uint8_t> has_min;
  if (!W.nz) {
    const int64_t na = static_cast<int64_t>(active.size());
    packed.reset(new int8_t[static_cast<size_t>(std::max<int64_t>(na, 1) * mat)]);
    colsum.assign(static_cast<size_t>(na * n_pad), 0);
    has_min.assign(static_cast<size_t>(na), 1);
    at::parallel_for(0, na * panels, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t a = t / panels, p = t % panels;
        const at::Tensor& b = W.host[static_cast<size_t>(active[static_cast<size_t>(a)])];
        k::pack_b_nz_ref(b.const_data_ptr<int8_t>(), kk, n, b.stride(0), b.stride(1), packed.get() + a * mat,
                         colsum.data() + a * n_pad, p * k::kNzCols, std::min((p + 1) * k::kNzCols, n));
      }
    });
    for (int64_t a = 0; a < na; ++a) has_min[static_cast<size_t>(a)] = k::has_int8_min(packed.get() + a * mat, mat);
  }

  // Tasks: (job, panel); cost ~ (rows + 4) * k per panel (4 rows ~ streaming the panel once).
  std::vector<int64_t> task_job, task_panel, cost;
  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    if (jobs[ji].m == 0) continue;
    for (int64_t p = 0; p < panels; ++p) {
      task_job.push_back(static_cast<int64_t>(ji));
      task_panel.push_back(p);
      cost.push_back((jobs[ji].m + 4) * kk * k::kNzCols);
    }
  }
  const int64_t elem = static_cast<int64_t>(c10::elementSize(out_t));
  const int64_t block = std::max<int64_t>(k::kRowBlockBytes / lda / 16 * 16, 16);
  run_tasks(cost, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1;) {
      const int64_t ji = task_job[static_cast<size_t>(t)];
      int64_t t_end = t;
      while (t_end < t1 && task_job[static_cast<size_t>(t_end)] == ji) ++t_end;
      const int64_t p0 = task_panel[static_cast<size_t>(t)], p1 = task_panel[static_cast<size_t>(t_end) - 1] + 1;
      const Job& j = jobs[static_cast<size_t>(ji)];
      const int64_t e = j.w, a = slot[static_cast<size_t>(e)];
      k::QGemmArgs args;
      args.n = n;
      args.k = kk;
      args.lda = lda;
      args.b = W.nz ? W.nz_data + e * mat : packed.get() + a * mat;
      args.b_colsum = W.nz ? W.nz_colsum + e * n_pad : colsum.data() + a * n_pad;
      args.b_has_min = W.nz ? W.nz_has_min : has_min[static_cast<size_t>(a)] != 0;
      args.ldc = j.ldo;
      args.ep = ep;
      if (!scale_f.empty()) args.ep.scale = scale_f.data() + e * n;
      if (!offset_i.empty()) args.ep.offset = offset_i.data() + e * n;
      if (!bias_i.empty()) args.ep.bias_i32 = bias_i.data() + e * n;
      if (!bias_f.empty()) args.ep.bias_f = bias_f.data() + e * n;
      for (int64_t r0 = 0; r0 < j.m; r0 += block) {
        k::QGemmArgs part = args;
        part.m = std::min(block, j.m - r0);
        part.a = a_u8.get() + (j.row0 + r0) * lda;
        part.c = static_cast<char*>(j.out) + r0 * j.ldo * elem;
        if (!pt.empty()) part.ep.pertoken = pt.data() + j.row0 + r0;
        k::qgemm_panels(isa, part, p0, p1);
      }
      t = t_end;
    }
  });
}

// ---------------------------------------------------------------------------------------
// W4A8: int8 x (per-token scale), int32-packed int4 weights (K, N/8), float scales per
// channel (N) or per group (G, N). y = ((sum_g (x_g @ w_g) * scale[g]) * per_token) + bias.
void run_w4a8(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
              const PerExpert& scales, int64_t groups, const PerExpert& biases,
              const at::Tensor& pertoken, at::ScalarType out_t, std::pair<const void*, uint32_t> scale_key) {
  const auto isa = k::active_isa();
  const int64_t kk = W.k, n = W.n, group = kk / groups;
  const int64_t rows = xh.size(0);
  std::vector<int64_t> slot(static_cast<size_t>(W.e), -1), active;
  for (const auto& j : jobs) {
    if (j.m > 0 && slot[static_cast<size_t>(j.w)] < 0) {
      slot[static_cast<size_t>(j.w)] = static_cast<int64_t>(active.size());
      active.push_back(j.w);
    }
  }
  const int64_t na = static_cast<int64_t>(active.size());
  // Packed without bias (added when the results are copied out: the same fp32 add), so that a
  // cached packing depends on the weight and the scales only.
  const k::W4Layout L = k::w4_layout(kk, n, group, false, false);
  const int64_t stride = k::round_up(L.total_bytes, 64);
  at::Tensor nz4_host;  // the NZ weight's logical values, unpacked on a cache miss only
  auto pack_expert = [&](int64_t e, uint8_t* out, std::vector<uint8_t>& nk) {
    // int32 words along n (K, N/8) -> torch's (N, K/2) u8 (nibble = q + 8, even k low)
    const at::Tensor h = nz4_host.defined() ? nz4_host.select(0, e) : W.host[static_cast<size_t>(e)];
    const int64_t s0 = h.stride(0), s1 = h.stride(1);
    const uint32_t* wd = reinterpret_cast<const uint32_t*>(h.const_data_ptr<int32_t>());
    for (int64_t i = 0; i < kk; i += 2) {
      for (int64_t jw = 0; jw < n / 8; ++jw) {
        const uint32_t w0 = wd[i * s0 + jw * s1] ^ 0x88888888u, w1 = wd[(i + 1) * s0 + jw * s1] ^ 0x88888888u;
        for (int64_t b = 0; b < 8; ++b) {
          nk[static_cast<size_t>((jw * 8 + b) * kk / 2 + i / 2)] =
              static_cast<uint8_t>(((w0 >> (4 * b)) & 0xFu) | (((w1 >> (4 * b)) & 0xFu) << 4));
        }
      }
    }
    const at::Tensor sc = scales[static_cast<size_t>(e)].to(at::kFloat).reshape({groups, n}).t().contiguous();
    k::w4_pack_header(L, out);
    k::w4_pack_columns(L, nk.data(), sc.const_data_ptr<float>(), false, nullptr, out, 0, n);
  };
  struct W4Cache {
    int64_t e, k, n, group;
    const void* scale_ptr;
    uint32_t scale_version;
    std::unique_ptr<uint8_t[]> buf;
    uint8_t* base;
  };
  std::shared_ptr<W4Cache> cache;
  std::unique_ptr<uint8_t[]> packed;
  uint8_t* base = nullptr;
  std::vector<int64_t> where(static_cast<size_t>(W.e), 0);  // byte offset of each packed expert
  if (W.nz4_storage != nullptr) {
    // All experts packed once and kept with the weight's storage (dropped when it is written).
    std::lock_guard<std::mutex> lock(W.nz4_storage->cache_mu);
    cache = std::static_pointer_cast<W4Cache>(W.nz4_storage->derived);
    if (!cache || cache->e != W.e || cache->k != kk || cache->n != n || cache->group != group ||
        cache->scale_ptr != scale_key.first || cache->scale_version != scale_key.second) {
      cache = std::make_shared<W4Cache>();
      *cache = W4Cache{W.e, kk, n, group, scale_key.first, scale_key.second,
                       std::unique_ptr<uint8_t[]>(new uint8_t[static_cast<size_t>(W.e * stride + 64)]), nullptr};
      cache->base = cache->buf.get() + (64 - reinterpret_cast<uintptr_t>(cache->buf.get()) % 64) % 64;
      nz4_host = logical_host_view(W.nz4_tensor);
      at::parallel_for(0, W.e, 1, [&](int64_t e0, int64_t e1) {
        std::vector<uint8_t> nk(static_cast<size_t>(n * kk / 2));
        for (int64_t e = e0; e < e1; ++e) pack_expert(e, cache->base + e * stride, nk);
      });
      W.nz4_storage->derived = cache;
    }
    base = cache->base;
    for (int64_t e = 0; e < W.e; ++e) where[static_cast<size_t>(e)] = e * stride;
  } else {
    // ND weights: the active experts, packed for this call.
    packed.reset(new uint8_t[static_cast<size_t>(std::max<int64_t>(na, 1) * stride + 64)]);
    base = packed.get() + (64 - reinterpret_cast<uintptr_t>(packed.get()) % 64) % 64;
    at::parallel_for(0, na, 1, [&](int64_t a0, int64_t a1) {
      std::vector<uint8_t> nk(static_cast<size_t>(n * kk / 2));
      for (int64_t a = a0; a < a1; ++a) pack_expert(active[static_cast<size_t>(a)], base + a * stride, nk);
    });
    for (int64_t a = 0; a < na; ++a) where[static_cast<size_t>(active[static_cast<size_t>(a)])] = a * stride;
  }
  // Activations: int8 as is (zero point 0), per-group row sums; u8 (q + 128, padding too) for the
  // jobs whose kernel wants it (it depends on the job's rows).
  const int64_t ldq = L.k_pad;
  std::vector<uint8_t> row_u8(static_cast<size_t>(std::max<int64_t>(rows, 1)), 0);
  for (const auto& j : jobs) {
    if (j.m > 0 && k::w4a8_lhs_unsigned(isa, j.m, L)) std::fill_n(row_u8.begin() + j.row0, j.m, 1);
  }
  std::vector<int8_t> q(static_cast<size_t>(std::max<int64_t>(rows, 1) * ldq), 0);
  std::vector<int32_t> zp(static_cast<size_t>(std::max<int64_t>(rows, 1)), 0);
  std::vector<int32_t> rowsum(static_cast<size_t>(std::max<int64_t>(rows, 1) * groups), 0);
  const std::vector<float> pt = floats(pertoken);
  const int8_t* xs = xh.const_data_ptr<int8_t>();
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const bool lhs_u8 = row_u8[static_cast<size_t>(r)] != 0;
      if (lhs_u8) std::fill_n(q.begin() + r * ldq + kk, ldq - kk, static_cast<int8_t>(0x80));
      for (int64_t g = 0; g < groups; ++g) {
        int32_t s = 0;
        for (int64_t i = g * group; i < (g + 1) * group; ++i) {
          const int8_t v = xs[r * kk + i];
          s += v;
          q[static_cast<size_t>(r * ldq + i)] = lhs_u8 ? static_cast<int8_t>(v ^ 0x80) : v;
        }
        rowsum[static_cast<size_t>(r * groups + g)] = s;
      }
    }
  });
  // fp32 results, then bf16/fp16 rounding (round to nearest even) into the outputs.
  std::vector<float> y(static_cast<size_t>(std::max<int64_t>(rows, 1) * n));
  const int64_t panels = k::div_up(n, k::kW4PanelCols);
  std::vector<int64_t> task_job, task_panel, cost;
  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    if (jobs[ji].m == 0) continue;
    for (int64_t p = 0; p < panels; ++p) {
      task_job.push_back(static_cast<int64_t>(ji));
      task_panel.push_back(p);
      cost.push_back((jobs[ji].m + 4) * kk * k::kW4PanelCols);
    }
  }
  run_tasks(cost, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1;) {
      const int64_t ji = task_job[static_cast<size_t>(t)];
      int64_t t_end = t;
      while (t_end < t1 && task_job[static_cast<size_t>(t_end)] == ji) ++t_end;
      const Job& j = jobs[static_cast<size_t>(ji)];
      k::W4A8Args args;
      args.m = j.m;
      args.packed = base + where[static_cast<size_t>(j.w)];
      args.L = L;
      args.q = q.data() + j.row0 * ldq;
      args.ldq = ldq;
      args.recip = pt.data() + j.row0;
      args.zp = zp.data() + j.row0;
      args.rowsum = rowsum.data() + j.row0 * groups;
      args.q_unsigned = row_u8[static_cast<size_t>(j.row0)] != 0;
      args.out = y.data() + j.row0 * n;
      args.ldo = n;
      k::w4a8_panels(isa, args, task_panel[static_cast<size_t>(t)], task_panel[static_cast<size_t>(t_end) - 1] + 1);
      t = t_end;
    }
  });
  // Copy into the outputs (+ bias, the kernel's own last fp32 add).
  const at::Tensor bias_all = biases.empty() ? at::Tensor() : biases.all.to(at::kFloat);
  for (const auto& j : jobs) {
    if (j.m == 0) continue;
    at::Tensor src = at::from_blob(y.data() + j.row0 * n, {j.m, n}, at::kFloat);
    if (bias_all.defined()) src = src.add(bias_all.select(0, j.w));
    at::Tensor dst = at::from_blob(j.out, {j.m, n}, {j.ldo, 1}, at::TensorOptions().dtype(out_t));
    dst.copy_(src);
  }
}

// ---------------------------------------------------------------------------------------
// Weight-only (A16W8 / A16W4): fp16/bf16 x, int8 (K, N) or int32-packed int4 (K, N/8) weights,
// antiquant scale/offset per channel (N) or per group (G, N) in x's dtype.
void run_weight_only(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
                     const PerExpert& ascale, const PerExpert& aoffset, int64_t groups,
                     const PerExpert& biases, at::ScalarType xdt) {
  const auto isa = k::active_isa();
  const int64_t kk = W.k, n = W.n;
  std::vector<int64_t> slot(static_cast<size_t>(W.e), -1), active;
  for (const auto& j : jobs) {
    if (j.m > 0 && slot[static_cast<size_t>(j.w)] < 0) {
      slot[static_cast<size_t>(j.w)] = static_cast<int64_t>(active.size());
      active.push_back(j.w);
    }
  }
  const int64_t na = static_cast<int64_t>(active.size());
  // (N, K) rows per expert: a transposed int8 view is read in place, other layouts are copied.
  const int64_t row_bytes = W.int4 ? kk / 2 : kk;
  std::vector<const int8_t*> w_nk(static_cast<size_t>(W.e), nullptr);
  std::vector<int64_t> ldw(static_cast<size_t>(W.e), row_bytes);
  std::unique_ptr<int8_t[]> copy;
  const bool in_place = !W.int4 && is_transposed(W.host[0]);
  if (in_place) {
    for (int64_t e : active) {
      w_nk[static_cast<size_t>(e)] = W.host[static_cast<size_t>(e)].const_data_ptr<int8_t>();
      ldw[static_cast<size_t>(e)] = W.host[static_cast<size_t>(e)].stride(1);
    }
  } else {
    copy.reset(new int8_t[static_cast<size_t>(std::max<int64_t>(na, 1) * n * row_bytes)]);
    at::parallel_for(0, na, 1, [&](int64_t a0, int64_t a1) {
      for (int64_t a = a0; a < a1; ++a) {
        const int64_t e = active[static_cast<size_t>(a)];
        const at::Tensor& h = W.host[static_cast<size_t>(e)];
        int8_t* dst = copy.get() + a * n * row_bytes;
        if (!W.int4) {
          const int8_t* s = h.const_data_ptr<int8_t>();
          for (int64_t j = 0; j < n; ++j)
            for (int64_t i = 0; i < kk; ++i) dst[j * kk + i] = s[i * h.stride(0) + j * h.stride(1)];
        } else {
          const uint32_t* s = reinterpret_cast<const uint32_t*>(h.const_data_ptr<int32_t>());
          for (int64_t j = 0; j < n; ++j) {
            for (int64_t i = 0; i < kk; i += 2) {
              const uint32_t lo = (s[i * h.stride(0) + (j / 8) * h.stride(1)] >> (4 * (j % 8))) & 0xFu;
              const uint32_t hi = (s[(i + 1) * h.stride(0) + (j / 8) * h.stride(1)] >> (4 * (j % 8))) & 0xFu;
              dst[j * row_bytes + i / 2] = static_cast<int8_t>(lo | (hi << 4));
            }
          }
        }
        w_nk[static_cast<size_t>(e)] = dst;
      }
    });
  }
  // Scales/offsets as the kernels' [groups][n] fp32 rows of x-dtype values.
  std::vector<std::vector<float>> s_rows(static_cast<size_t>(W.e)), o_rows(static_cast<size_t>(W.e));
  for (int64_t e : active) {
    s_rows[static_cast<size_t>(e)] = floats(ascale[static_cast<size_t>(e)].to(xdt));
    if (!aoffset.empty()) o_rows[static_cast<size_t>(e)] = floats(aoffset[static_cast<size_t>(e)].to(xdt));
  }
  const at::Tensor xf = xh.to(at::kFloat).contiguous();
  const int64_t rows = xh.size(0);
  at::Tensor y = at::empty({rows, n}, at::kFloat);
  auto args_for = [&](const Job& j) {
    k::WqGemvArgs a;
    a.m = j.m;
    a.n = n;
    a.k = kk;
    a.group = kk / groups;
    a.x = xf.const_data_ptr<float>() + j.row0 * kk;
    a.ldx = kk;
    a.bf16 = xdt == at::kBFloat16;
    a.w = w_nk[static_cast<size_t>(j.w)];
    a.ldw = ldw[static_cast<size_t>(j.w)];
    a.int4 = W.int4;
    a.scale = s_rows[static_cast<size_t>(j.w)].data();
    a.offset = aoffset.empty() ? nullptr : o_rows[static_cast<size_t>(j.w)].data();
    a.y = y.mutable_data_ptr<float>() + j.row0 * n;
    a.ldy = n;
    return a;
  };
  // Decode-sized jobs: one region over (job, 64-column block) GEMV tasks.
  constexpr int64_t kCols = 64;
  const int64_t blocks = k::div_up(n, kCols);
  std::vector<int64_t> task_job, cost;
  std::vector<size_t> big;
  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    if (jobs[ji].m == 0) continue;
    if (jobs[ji].m > k::wq_gemv_max_rows(isa, args_for(jobs[ji]))) {
      big.push_back(ji);
      continue;
    }
    for (int64_t b = 0; b < blocks; ++b) {
      task_job.push_back(static_cast<int64_t>(ji) * blocks + b);
      cost.push_back((jobs[ji].m + 4) * kk * kCols);
    }
  }
  run_tasks(cost, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ji = task_job[static_cast<size_t>(t)] / blocks, b = task_job[static_cast<size_t>(t)] % blocks;
      const k::WqGemvArgs a = args_for(jobs[static_cast<size_t>(ji)]);
      k::wq_gemv(isa, a, b * kCols, std::min(n, (b + 1) * kCols));
    }
  });
  // Prefill-sized jobs: W' of the expert (exact x-dtype values) and one dense GEMM each.
  for (size_t ji : big) {
    const Job& j = jobs[ji];
    const k::WqGemvArgs a = args_for(j);
    at::Tensor wp = at::empty({n, kk}, at::TensorOptions().dtype(xdt));
    uint16_t* bp = reinterpret_cast<uint16_t*>(wp.mutable_data_ptr());
    at::parallel_for(0, n, 8, [&](int64_t c0, int64_t c1) { k::wq_dequant_rows(isa, a, c0, c1, bp + c0 * kk, kk); });
    // bf16 without bias: one bf16 GEMM with fp32 accumulation and one rounding (oneDNN), as the
    // dense weight-only path; otherwise fp32 (the bias is added before the rounding).
    if (xdt == at::kBFloat16 && biases.empty()) {
      y.narrow(0, j.row0, j.m).copy_(at::mm(xh.narrow(0, j.row0, j.m), wp.t()));
    } else {
      y.narrow(0, j.row0, j.m).copy_(at::mm(xf.narrow(0, j.row0, j.m), wp.to(at::kFloat).t()));
    }
  }
  for (const auto& j : jobs) {
    if (j.m == 0) continue;
    at::Tensor r = y.narrow(0, j.row0, j.m);
    if (!biases.empty()) r = r.add(biases[static_cast<size_t>(j.w)].to(at::kFloat));
    at::from_blob(j.out, {j.m, n}, {j.ldo, 1}, at::TensorOptions().dtype(xdt)).copy_(r);
  }
}

}  // namespace at::native::qdev::gmm
