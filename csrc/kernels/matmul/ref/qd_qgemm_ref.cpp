// Scalar reference GEMM and output stage: always built, obviously correct,
// the yardstick for every SIMD variant (which must match it bit for bit).
#include <algorithm>
#include <cmath>
#include <vector>

#include "../../common/qd_common.h"
#include "../qd_qgemm.h"

namespace qdev::kernels {

void qgemm_epilogue_ref(const QGemmArgs& args, const int32_t* tile, int64_t ld_tile, int64_t r0,
                        int64_t rows, int64_t c0, int64_t cols) {
  const QGemmEpilogue& ep = args.ep;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = r0 + r;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = c0 + c;
      int32_t t = tile[r * ld_tile + c];
      if (ep.bias_i32) t = static_cast<int32_t>(static_cast<uint32_t>(t) + static_cast<uint32_t>(ep.bias_i32[j]));
      const int64_t at = row * args.ldc + j;
      switch (ep.out) {
        case QGemmOut::kInt32:
          static_cast<int32_t*>(args.c)[at] = t;
          break;
        case QGemmOut::kInt8: {
          float v = static_cast<float>(t) * ep.scale[j * ep.scale_stride];
          v = std::min(std::max(v, -256.0f), 255.0f);  // the 9-bit intermediate
          int32_t q = static_cast<int32_t>(std::nearbyint(v));
          if (ep.offset) q += ep.offset[j * ep.offset_stride];
          static_cast<int8_t*>(args.c)[at] = static_cast<int8_t>(std::min(std::max(q, -128), 127));
          break;
        }
        default: {
          float f = static_cast<float>(t);
          if (ep.scale) f = f * ep.scale[j * ep.scale_stride];
          if (ep.pertoken) f = f * ep.pertoken[row];
          if (ep.bias_f) f = f + ep.bias_f[j];
          if (ep.out == QGemmOut::kFloat32) {
            static_cast<float*>(args.c)[at] = f;
          } else if (ep.out == QGemmOut::kFloat16) {
            static_cast<uint16_t*>(args.c)[at] = f32_to_f16_rne(f);
          } else {
            static_cast<uint16_t*>(args.c)[at] = f32_to_bf16_rne(f);
          }
        }
      }
    }
  }
}

void qgemm_panels_ref(const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  int32_t tile[kNzCols];
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    for (int64_t r = 0; r < args.m; ++r) {
      const uint8_t* a = args.a + r * args.lda;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t j = c0 + c;
        int32_t acc = 0;
        for (int64_t i = 0; i < args.k; ++i) {
          acc += static_cast<int32_t>(a[i]) * args.b[nz_offset(i, j, args.k)];
        }
        tile[c] = acc - 128 * args.b_colsum[j];
      }
      qgemm_epilogue_ref(args, tile, kNzCols, r, 1, c0, cols);
    }
  }
}

}  // namespace qdev::kernels
