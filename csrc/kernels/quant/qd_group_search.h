// Error-minimising (scale, minimum) of weight groups for asymmetric low-bit quantization
// (llama.cpp k-quant style, see torch_qdev/quantization/int4_search.py for the method):
// per group, levels u = clamp(round((w - mn) * (qmax + delta) / (mx - mn)), 0, qmax) for each
// delta, then the weighted least-squares (s, m) of those levels; the fit with the smallest
// sum a * (s * u + m - w)^2 wins (the plain min/max fit first). a = importance, or |w| + the
// group's RMS when none is given.
#pragma once

#include <cstdint>

namespace qdev::kernels {

struct GroupSearchArgs {
  const float* w = nullptr;           // groups x gs, contiguous
  const float* importance = nullptr;  // groups x gs, or null
  int64_t gs = 0;
  int qmax = 15;
  const float* deltas = nullptr;
  int ndeltas = 0;
  float* scale = nullptr;    // per group
  float* minimum = nullptr;  // per group
};

void group_search_ref(const GroupSearchArgs& args, int64_t group_begin, int64_t group_end);

}  // namespace qdev::kernels
