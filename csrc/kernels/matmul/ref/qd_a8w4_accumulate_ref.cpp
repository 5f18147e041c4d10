// Scalar reference of the A8W4 float16 group accumulation (qd_a8w4.h), and its dispatch.
#include "../../common/qd_common.h"
#include "../qd_a8w4.h"

namespace qdev::kernels {

void a8w4_accumulate_group_ref(const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const float term = f16_to_f32(f32_to_f16_rne(static_cast<float>(sums[r * n + c]) * scale[c]));
      acc[r * n + c] = f32_to_f16_rne(f16_to_f32(acc[r * n + c]) + term);
    }
  }
}

void a8w4_accumulate_group(Isa isa, const int32_t* sums, const float* scale, int64_t rows, int64_t n, uint16_t* acc) {
#ifdef QD_HAVE_AVX512VNNI
  if (isa == Isa::kAvx512Vnni) return a8w4_accumulate_group_avx512(sums, scale, rows, n, acc);
#endif
  (void)isa;
  a8w4_accumulate_group_ref(sums, scale, rows, n, acc);
}

}  // namespace qdev::kernels
