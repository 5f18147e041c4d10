// Which SIMD variant the CPU kernels run: probed once (CPUID + XCR0 on x86,
// getauxval(AT_HWCAP/AT_HWCAP2) on aarch64 Linux), capped by
// QDEV_CPU_ISA=ref|avx2|avx512vnni|neon_dotprod|neon_i8mm, switchable by tests.
//
// The variants form two chains above the scalar reference, one per architecture:
//   x86:     ref < avx2 < avx512vnni
//   aarch64: ref < neon_dotprod < neon_i8mm   (i8mm CPUs also have dotprod)
#pragma once

namespace qdev::kernels {

enum class Isa : int { kRef = 0, kAvx2 = 1, kAvx512Vnni = 2, kNeonDotprod = 3, kNeonI8mm = 4 };
constexpr int kNumIsas = 5;

const char* isa_name(Isa isa);
bool parse_isa(const char* name, Isa* out);

// Whether this CPU and OS can run the variant, and whether it was compiled in.
bool isa_supported(Isa isa);

// The variant in use: the best supported one, capped by QDEV_CPU_ISA (a cap naming
// the other architecture's variant is ignored with a warning).
Isa active_isa();

// Selects a variant; returns false (and changes nothing) if it is unsupported.
bool set_active_isa(Isa isa);

// AVX512_BF16 inside the avx512vnni variant (vdpbf16ps for the weight-only GEMV):
// whether the CPU has it, it was compiled in and it is not switched off (by
// QDEV_CPU_AVX512_BF16=0, or by tests to run the plain AVX-512 code on this CPU).
bool cpu_avx512_bf16();
// Switches it on or off (on only where supported); returns the previous setting.
bool set_cpu_avx512_bf16(bool on);

}  // namespace qdev::kernels
