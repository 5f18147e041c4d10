#include "qd_qgemm.h"

namespace qdev::kernels {

void qgemm_panels(Isa isa, const QGemmArgs& args, int64_t panel_begin, int64_t panel_end) {
  switch (isa) {
#ifdef QD_HAVE_AVX512VNNI
    case Isa::kAvx512Vnni: return qgemm_panels_avx512vnni(args, panel_begin, panel_end);
#endif
#ifdef QD_HAVE_AVX2
    case Isa::kAvx2: return qgemm_panels_avx2(args, panel_begin, panel_end);
#endif
#ifdef QD_HAVE_NEON_DOTPROD
    case Isa::kNeonDotprod: return qgemm_panels_neon_dotprod(args, panel_begin, panel_end);
#endif
#if defined(QD_HAVE_NEON_I8MM) && defined(QD_HAVE_NEON_DOTPROD)
    case Isa::kNeonI8mm: return qgemm_panels_neon_i8mm(args, panel_begin, panel_end);
#endif
    default: return qgemm_panels_ref(args, panel_begin, panel_end);
  }
}

}  // namespace qdev::kernels
