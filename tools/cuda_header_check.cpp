// Host-only check (tools/check_cuda_kernels.sh): the CUDA kernel API header
// compiles as plain C++ without the CUDA toolkit, and the CUDA family's header
// struct stays binary-compatible with the CPU family's (both are "QDW4").
#include <cstddef>

#include "cuda/qd_cuda_kernels.h"
#include "matmul/qd_w4a8.h"

namespace k = qdev::kernels;
namespace ck = qdev::cuda_kernels;

static_assert(sizeof(k::W4CudaHeader) == sizeof(k::W4Header), "one header format for both families");
static_assert(offsetof(k::W4CudaHeader, family) == offsetof(k::W4Header, family), "family at the same offset");
static_assert(offsetof(k::W4CudaHeader, total_bytes) == offsetof(k::W4Header, total_bytes), "same offsets");
static_assert(k::kW4CudaMagic == k::kW4Magic && k::kW4CudaVersion == k::kW4Version, "same magic and version");
static_assert(k::kW4FamilyCudaMma != k::kW4FamilyNz4Vnni, "distinct kernel families");
static_assert(k::kW4CudaHeaderBytes == k::kW4HeaderBytes, "same header slot");

int main() {
  const k::W4CudaLayout L = k::w4_cuda_layout(4096, 4096, 32, true, true);
  const k::W4CudaHeader h = k::w4_cuda_header(L);
  k::W4CudaLayout back;
  uint32_t family = 0;
  const bool ok = k::w4_cuda_read_header(h, L.total_bytes, &back, &family) == nullptr && back.off_bias == L.off_bias;
  ck::GemmArgs args;
  (void)args;
  return ok && ck::w4a8_use_decode(1) ? 0 : 1;
}
