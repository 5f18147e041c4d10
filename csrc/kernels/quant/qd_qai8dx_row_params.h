// Scale, reciprocal and nudged zero point of one qai8dx row from its min and max,
// shared by every quantizer variant so that they agree bit for bit (scalar fp32,
// compiled without contraction everywhere).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace qdev::kernels {

struct Qai8dxRowParams {
  float scale, recip;
  int32_t zp;
};

// mn, mx: the row's min and max (NaN ignored; +-inf for an empty row).
inline Qai8dxRowParams qai8dx_row_params(float mn, float mx) {
  const float rmin = std::min(0.0f, mn), rmax = std::max(0.0f, mx);  // the range contains 0
  const float scale = rmin == rmax ? 1.0f : 255.0f / (rmax - rmin);
  const float recip = scale != 0.0f ? 1.0f / scale : 0.0f;
  const float dmin = rmin * scale, dmax = rmax * scale;
  float zpf = ((-128.0f + dmin) + (127.0f + dmax) > 0.0f) ? (-128.0f - dmin) : (127.0f - dmax);
  zpf = std::min(std::max(zpf, -128.0f), 127.0f);
  return {scale, recip, static_cast<int32_t>(std::nearbyint(zpf))};  // TFLite nudging: half to even
}

}  // namespace qdev::kernels
