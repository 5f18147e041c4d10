// Scalar reference of the A4W4 GEMM on NZ4-VNNI weights.
#include <algorithm>

#include "../qd_qgemm_s4.h"

namespace qdev::kernels {

void qgemm4_panels_ref(const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end) {
  const int64_t k_blocks = (args.k + kNzRows - 1) / kNzRows;
  QGemmArgs out;  // the shared output stage needs the destination description only
  out.c = args.c;
  out.ldc = args.ldc;
  out.ep = args.ep;
  int32_t tile[kNzCols];
  for (int64_t p = panel_begin; p < panel_end; ++p) {
    const int64_t c0 = p * kNzCols;
    const int64_t cols = std::min(kNzCols, args.n - c0);
    const uint8_t* panel = args.b + p * k_blocks * kNz4FractalBytes;
    for (int64_t r = 0; r < args.m; ++r) {
      const int8_t* a = args.a + r * args.lda;
      for (int64_t jc = 0; jc < cols; ++jc) {
        int32_t acc = 0;
        for (int64_t i = 0; i < args.k; ++i) {
          const int64_t kr = i % kNzRows;
          const uint8_t byte = panel[(i / kNzRows) * kNz4FractalBytes + (kr / 4) * 64 + (jc / 16) * 32 +
                                     (jc % 16) * 2 + (kr % 4) / 2];
          const int32_t biased = (kr % 2 == 0) ? (byte & 0xF) : (byte >> 4);
          acc += biased * a[i];
        }
        tile[jc] = acc - 8 * args.a_rowsum[r];
      }
      qgemm_epilogue_ref(out, tile, kNzCols, r, 1, c0, cols);
    }
  }
}

void qgemm4_panels(Isa isa, const QGemmS4Args& args, int64_t panel_begin, int64_t panel_end) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return qgemm4_panels_avx512vnni(args, panel_begin, panel_end);
#endif
  (void)isa;
  qgemm4_panels_ref(args, panel_begin, panel_end);
}

bool qgemm4_has_kernel(Isa isa) { return isa == Isa::kRef || isa == Isa::kAvx512Vnni; }

}  // namespace qdev::kernels
