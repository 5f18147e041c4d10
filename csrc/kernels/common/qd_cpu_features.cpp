#include "qd_cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define QD_X86 1
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define QD_ARM64_LINUX 1
// The kernel's bit numbers (asm/hwcap.h), spelled out for older libc headers.
constexpr unsigned long kHwcapAsimdDotprod = 1ul << 20;  // HWCAP_ASIMDDP: sdot/udot
constexpr unsigned long kHwcap2I8mm = 1ul << 13;         // HWCAP2_I8MM: smmla/usdot
#endif

namespace qdev::kernels {
namespace {

#ifdef QD_X86
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif

struct Features {
  bool avx2 = false;
  bool avx512vnni = false;
  bool avx512bf16 = false;
  bool neon_dotprod = false;
  bool neon_i8mm = false;
};

Features probe() {
  Features f;
#ifdef QD_X86
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27), fma = ecx & (1u << 12), f16c = ecx & (1u << 29);
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;  // opmask, ZMM_Hi256, Hi16_ZMM
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  const bool vnni = ecx & (1u << 11);
  f.avx2 = ymm_state && avx2 && fma && f16c;
  f.avx512vnni = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) f.avx512bf16 = f.avx512vnni && (eax & (1u << 5));
#endif
#ifdef QD_ARM64_LINUX
  const unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
  f.neon_dotprod = (hwcap & kHwcapAsimdDotprod) != 0;
  // The i8mm variant runs its single-row tiles with sdot, so it needs both.
  f.neon_i8mm = f.neon_dotprod && (hwcap2 & kHwcap2I8mm) != 0;
#endif
  return f;
}

const Features& features() {
  static const Features f = probe();
  return f;
}

Isa best_supported() {
  for (int i = kNumIsas - 1; i > 0; --i) {
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  return Isa::kRef;
}

bool is_arm(Isa isa) { return isa == Isa::kNeonDotprod || isa == Isa::kNeonI8mm; }

// Position in its architecture's chain (ref = 0), for the QDEV_CPU_ISA cap.
int chain_rank(Isa isa) {
  switch (isa) {
    case Isa::kRef: return 0;
    case Isa::kAvx2: case Isa::kNeonDotprod: return 1;
    case Isa::kAvx512Vnni: case Isa::kNeonI8mm: return 2;
  }
  return 0;
}

Isa initial_isa() {
  Isa best = best_supported();
  const char* env = std::getenv("QDEV_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  Isa requested;
  if (!parse_isa(env, &requested)) {
    std::fprintf(stderr,
                 "torch_qdev: ignoring unknown QDEV_CPU_ISA='%s' (ref|avx2|avx512vnni|neon_dotprod|neon_i8mm)\n",
                 env);
    return best;
  }
  if (requested != Isa::kRef && best != Isa::kRef && is_arm(requested) != is_arm(best)) {
    std::fprintf(stderr, "torch_qdev: ignoring QDEV_CPU_ISA='%s': not a variant of this CPU architecture\n", env);
    return best;
  }
  // A cap: asking for more than the machine has gives the best it has.
  return chain_rank(requested) < chain_rank(best) ? requested : best;
}

std::atomic<bool>& bf16_on() {
  static std::atomic<bool> on{[] {
#ifdef QD_HAVE_AVX512BF16
    const char* env = std::getenv("QDEV_CPU_AVX512_BF16");
    return features().avx512bf16 && !(env != nullptr && std::strcmp(env, "0") == 0);
#else
    return false;
#endif
  }()};
  return on;
}

std::atomic<int>& active() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kNeonDotprod: return "neon_dotprod";
    case Isa::kNeonI8mm: return "neon_i8mm";
  }
  return "unknown";
}

bool parse_isa(const char* name, Isa* out) {
  for (int i = 0; i < kNumIsas; ++i) {
    if (std::strcmp(name, isa_name(static_cast<Isa>(i))) == 0) {
      *out = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kRef: return true;
    case Isa::kAvx2:
#ifdef QD_HAVE_AVX2
      return features().avx2;
#else
      return false;
#endif
    case Isa::kAvx512Vnni:
#ifdef QD_HAVE_AVX512VNNI
      return features().avx512vnni;
#else
      return false;
#endif
    case Isa::kNeonDotprod:
#ifdef QD_HAVE_NEON_DOTPROD
      return features().neon_dotprod;
#else
      return false;
#endif
    case Isa::kNeonI8mm:
#if defined(QD_HAVE_NEON_I8MM) && defined(QD_HAVE_NEON_DOTPROD)
      return features().neon_i8mm;
#else
      return false;
#endif
  }
  return false;
}

Isa active_isa() { return static_cast<Isa>(active().load(std::memory_order_relaxed)); }

bool set_active_isa(Isa isa) {
  if (!isa_supported(isa)) return false;
  active().store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

bool cpu_avx512_bf16() { return bf16_on().load(std::memory_order_relaxed); }

bool set_cpu_avx512_bf16(bool on) {
#ifdef QD_HAVE_AVX512BF16
  return bf16_on().exchange(on && features().avx512bf16);
#else
  (void)on;
  return false;
#endif
}

}  // namespace qdev::kernels
