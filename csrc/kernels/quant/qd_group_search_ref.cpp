// Scalar group search (the loops over a group vectorise; groups run in parallel in the glue).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "qd_group_search.h"

namespace qdev::kernels {

void group_search_ref(const GroupSearchArgs& a, int64_t group_begin, int64_t group_end) {
  const int64_t gs = a.gs;
  const float qmax = static_cast<float>(a.qmax);
  std::vector<float> imp(static_cast<size_t>(gs)), lev(static_cast<size_t>(gs));
  for (int64_t g = group_begin; g < group_end; ++g) {
    const float* w = a.w + g * gs;
    float mn = w[0], mx = w[0];
    double sq = 0.0;
    for (int64_t i = 0; i < gs; ++i) {
      mn = std::min(mn, w[i]);
      mx = std::max(mx, w[i]);
      sq += static_cast<double>(w[i]) * w[i];
    }
    if (a.importance) {
      for (int64_t i = 0; i < gs; ++i) imp[i] = a.importance[g * gs + i];
    } else {
      const float rms = static_cast<float>(std::sqrt(sq / static_cast<double>(gs)));
      for (int64_t i = 0; i < gs; ++i) imp[i] = std::fabs(w[i]) + rms;
    }
    const float rng = std::max(mx - mn, FLT_MIN);
    double sw = 0, swx = 0, swx2 = 0;
    for (int64_t i = 0; i < gs; ++i) {
      sw += imp[i];
      swx += static_cast<double>(imp[i]) * w[i];
      swx2 += static_cast<double>(imp[i]) * w[i] * w[i];
    }
    float best_s = rng / qmax, best_m = mn;
    double best_err = INFINITY;
    for (int c = -1; c < a.ndeltas; ++c) {
      const float iscale = (qmax + (c < 0 ? 0.0f : a.deltas[c])) / rng;
      float sl = 0, sl2 = 0, slx = 0;
      for (int64_t i = 0; i < gs; ++i) {
        const float l = std::min(qmax, std::max(0.0f, std::nearbyint((w[i] - mn) * iscale)));
        const float la = l * imp[i];
        sl += la;
        sl2 += la * l;
        slx += la * w[i];
      }
      const double det = sw * sl2 - static_cast<double>(sl) * sl;
      if (!(det > 0)) continue;
      const double s = (sw * slx - sl * swx) / det, m = (sl2 * swx - sl * static_cast<double>(slx)) / det;
      if (!(s > 0)) continue;
      const double err = s * s * sl2 + m * m * sw + swx2 + 2 * s * m * sl - 2 * s * slx - 2 * m * swx;
      if (err < best_err) {
        best_err = err;
        best_s = static_cast<float>(s);
        best_m = static_cast<float>(m);
      }
    }
    a.scale[g] = best_s;
    a.minimum[g] = best_m;
  }
}

}  // namespace qdev::kernels
