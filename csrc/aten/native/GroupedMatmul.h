// Internal pieces of npu_grouped_matmul shared by its argument handling (GroupedMatmul.cpp)
// and its kernel drivers (GroupedMatmulRun.cpp): the job list, the weights and per-expert
// parameters as read from the arguments, and the one-parallel-region task runner.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <vector>

#include "../../runtime/QdevStorageImpl.h"

namespace at::native::qdev::gmm {

// One GEMM of the group: rows [row0, row0 + m) of the (concatenated) x against weight `w`,
// written to `out` (row stride ldo elements).
struct Job {
  int64_t row0 = 0, m = 0;
  int64_t w = 0;   // weight index (expert)
  void* out = nullptr;
  int64_t ldo = 0;
};

// float32 copy of a small parameter tensor (scales, biases), host side.
std::vector<float> floats(const at::Tensor& t);
// Last two dims stored column-major.
bool is_transposed(const at::Tensor& t);
// Splits tasks [0, n) with per-task costs into about `chunks` contiguous ranges of equal cost.
std::vector<int64_t> balanced_cuts(const std::vector<int64_t>& cost, int64_t chunks);

// Runs fn(task) for every task inside ONE parallel region, tasks split by cost.
template <typename Fn>
void run_tasks(const std::vector<int64_t>& cost, Fn&& fn) {
  if (cost.empty()) return;
  const int64_t total = std::accumulate(cost.begin(), cost.end(), int64_t{0});
  // ~1M MACs per chunk at least (a region costs microseconds), a few chunks per thread for balance.
  const int64_t threads = at::get_num_threads();
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(4 * threads, total >> 20));
  const std::vector<int64_t> cuts = balanced_cuts(cost, chunks);
  const int64_t n_chunks = static_cast<int64_t>(cuts.size()) - 1;
  at::parallel_for(0, n_chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(cuts[static_cast<size_t>(c)], cuts[static_cast<size_t>(c) + 1]);
  });
}

// Weights as E matrices of (K, N), whatever the container (one 3-D tensor or a list).
struct Weights {
  std::vector<at::Tensor> host;  // per expert: (K, N) int8/float, or (K, N/8) int32 words (host views)
  int64_t e = 0, k = 0, n = 0;
  bool int4 = false;
  at::ScalarType dtype = at::kChar;
  // qdev FRACTAL_NZ 3-D/2-D int8: packed bytes per expert, column sums from the storage cache
  bool nz = false;
  const int8_t* nz_data = nullptr;
  const int32_t* nz_colsum = nullptr;
  bool nz_has_min = true;
  // qdev FRACTAL_NZ 3-D int32 (int4 words): its storage caches the repacked W4A8 experts
  c10::qdev::QdevStorageImpl* nz4_storage = nullptr;
  at::Tensor nz4_tensor;  // host views (unpacking the NZ bytes) are made only when the cache misses
};

// Per-expert parameters (scale, bias, antiquant_*): one stacked (E, ...) tensor or a list of E,
// held as one (E, per_expert_numel) host tensor so that they convert in one op, not one per expert.
struct PerExpert {
  at::Tensor all;  // undefined when the parameter is absent
  bool empty() const { return !all.defined(); }
  at::ScalarType dtype() const { return all.scalar_type(); }
  at::Tensor operator[](size_t e) const { return all.select(0, static_cast<int64_t>(e)); }
  // all as contiguous float32 (values of `via` first, e.g. the activation dtype)
  std::vector<float> floats_all(std::optional<at::ScalarType> via = std::nullopt) const {
    at::Tensor t = via ? all.to(*via) : all;
    return floats(t);
  }
};

// The kernel drivers (GroupedMatmulRun.cpp): every job with rows, outputs written in place.
void run_w8a8(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
              const PerExpert& scales, const PerExpert& biases,
              const at::Tensor& pertoken, at::ScalarType out_t);
void run_w4a8(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
              const PerExpert& scales, int64_t groups, const PerExpert& biases,
              const at::Tensor& pertoken, at::ScalarType out_t, std::pair<const void*, uint32_t> scale_key);
void run_weight_only(const at::Tensor& xh, const Weights& W, const std::vector<Job>& jobs,
                     const PerExpert& ascale, const PerExpert& aoffset, int64_t groups,
                     const PerExpert& biases, at::ScalarType xdt);

}  // namespace at::native::qdev::gmm
