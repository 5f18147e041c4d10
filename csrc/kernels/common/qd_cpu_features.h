// Which SIMD variant the CPU kernels run: probed once (CPUID + XCR0 on x86,
// HWCAP on Arm), capped by QDEV_CPU_ISA=ref|avx2|avx512vnni, switchable by tests.
#pragma once

namespace qdev::kernels {

enum class Isa : int { kRef = 0, kAvx2 = 1, kAvx512Vnni = 2 };
constexpr int kNumIsas = 3;

const char* isa_name(Isa isa);
bool parse_isa(const char* name, Isa* out);

// Whether this CPU and OS can run the variant, and whether it was compiled in.
bool isa_supported(Isa isa);

// The variant in use: the best supported one, capped by QDEV_CPU_ISA.
Isa active_isa();

// Selects a variant; returns false (and changes nothing) if it is unsupported.
bool set_active_isa(Isa isa);

}  // namespace qdev::kernels
