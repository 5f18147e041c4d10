// A8W8 GEMM with Hopper's warpgroup MMA (wgmma, sm_90a only). Opt-in
// (QDEV_CUDA_WGMMA=1) until it has been checked on an H100/H200: the default
// sm90 path is the mma.sync kernel of qd_qgemm_s8_sm80.cu.
//
// A block computes a 128 x 256 tile with two warpgroups, each one
// wgmma.m64n256k32 (s32 += s8 x s8, both operands K-major in shared memory,
// 128 int32 accumulators per thread). K advances 128 bytes per stage through
// a 4-stage cp.async ring (48 KiB a stage): A (128 rows) and B (256 rows) are
// stored as 128-byte rows in the 128-byte-swizzle layout the descriptors name
// (16-byte chunk c of row r at r * 128 + ((c ^ (r % 8)) * 16), 1024-byte
// aligned 8-row atoms), four k32 steps per stage advance the descriptors by 32
// bytes; one stage's wgmmas stay in flight while the next stage is waited for.
// cp.async writes reach the tensor cores' async proxy through
// fence.proxy.async before the barrier. The output stage is the shared one.
#include <cstdlib>

#include "qd_qgemm_s8_common.cuh"

namespace qdev::cuda_kernels {
namespace {

using namespace dev;
using namespace gemm;

constexpr int kBM = 128, kBN = 256, kBK = 128, kStages = 4, kThreads = 256;
constexpr int kStageA = kBM * kBK, kStageB = kBN * kBK, kStageBytes = kStageA + kStageB;
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + slack to align the ring to 1024 bytes
constexpr int kRasterGroup = 8;

__device__ __forceinline__ int swizzle128(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

// Shared-memory matrix descriptor: start address, leading byte offset (unused
// by swizzled K-major operands: 1), stride byte offset 1024 (8 rows x 128 B),
// 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_descriptor(const void* p) {
  const uint64_t addr = smem_u32(p);
  return ((addr >> 4) & 0x3FFF) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmma_m64n256k32_s8(int32_t (&d)[128], uint64_t desc_a, uint64_t desc_b) {
  asm volatile(
      "{\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
      "}, %128, %129, 1;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]),
        "+r"(d[64]), "+r"(d[65]), "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]),
        "+r"(d[72]), "+r"(d[73]), "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]),
        "+r"(d[80]), "+r"(d[81]), "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]),
        "+r"(d[88]), "+r"(d[89]), "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]),
        "+r"(d[96]), "+r"(d[97]), "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]),
        "+r"(d[104]), "+r"(d[105]), "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]),
        "+r"(d[112]), "+r"(d[113]), "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]),
        "+r"(d[120]), "+r"(d[121]), "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127])
      : "l"(desc_a), "l"(desc_b));
}
#endif

template <int kRows>
__device__ __forceinline__ void load_tile128(uint8_t* smem, const int8_t* base, int64_t ld, int64_t row0,
                                             int64_t rows_total, int64_t k0, int64_t k) {
  constexpr int kChunks = kRows * kBK / 16;
  static_assert(kChunks % kThreads == 0, "whole chunks per thread");
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int row = c >> 3, chunk = c & 7;
    const int64_t grow = row0 + row, gk = k0 + chunk * 16;
    int bytes = 0;
    const int8_t* src = base;
    if (grow < rows_total && gk < k) {
      bytes = static_cast<int>(k - gk < 16 ? k - gk : 16);
      src = base + grow * ld + gk;
    }
    cp_async_16(smem + swizzle128(row, chunk), src, bytes);
  }
}

__global__ void __launch_bounds__(kThreads, 1) qgemm_s8_wgmma_kernel(GemmArgs args, OutCtx out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wg = warp >> 2, warp_in_wg = warp & 3;
  const int gid = lane >> 2, tig = lane & 3;

  const int tiles_n = gridDim.x, tiles_m = gridDim.y;
  const int pid = blockIdx.y * tiles_n + blockIdx.x;
  const int width = kRasterGroup * tiles_n;
  const int first_m = (pid / width) * kRasterGroup;
  const int group_m = min(tiles_m - first_m, kRasterGroup);
  const int tile_m = first_m + (pid % width) % group_m;
  const int tile_n = (pid % width) / group_m;
  const int64_t batch = blockIdx.z;
  const int64_t m0 = static_cast<int64_t>(tile_m) * kBM, n0 = static_cast<int64_t>(tile_n) * kBN;
  const int8_t* a = args.a + batch * args.a_batch_stride;
  const int8_t* b = args.b + batch * args.b_batch_stride;
  const int64_t k_tiles = (args.k + kBK - 1) / kBK;

  auto load_stage = [&](int64_t kt) {
    uint8_t* sa = smem + static_cast<int>(kt % kStages) * kStageBytes;
    load_tile128<kBM>(sa, a, args.lda, m0, args.m, kt * kBK, args.k);
    load_tile128<kBN>(sa + kStageA, b, args.ldb, n0, args.n, kt * kBK, args.k);
  };

  int32_t d[128];
#pragma unroll
  for (int i = 0; i < 128; ++i) d[i] = 0;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s);
    cp_async_commit();
  }
  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // cp.async data -> async proxy
    __syncthreads();  // stage kt landed for everyone

    const uint8_t* sa = smem + static_cast<int>(kt % kStages) * kStageBytes + wg * 64 * kBK;
    const uint8_t* sb = smem + static_cast<int>(kt % kStages) * kStageBytes + kStageA;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      wgmma_m64n256k32_s8(d, smem_descriptor(sa + ks * 32), smem_descriptor(sb + ks * 32));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    // Keep this stage's wgmmas in flight; the previous stage's must be done (in
    // both warpgroups) before its buffer is refilled.
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    __syncthreads();
    if (kt + kStages - 1 < k_tiles) load_stage(kt + kStages - 1);  // into stage (kt - 1) % kStages
    cp_async_commit();
  }
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  cp_async_wait<0>();

  // Accumulators: warp w of the warpgroup holds rows 16w..16w+15 of its 64, in
  // the m16n8 pattern repeated over the 32 n8 blocks.
  const int64_t row = m0 + wg * 64 + warp_in_wg * 16 + gid;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int64_t col = n0 + j * 8 + tig * 2;
    store_pair(out, batch, row, col, d[4 * j], d[4 * j + 1]);
    store_pair(out, batch, row + 8, col, d[4 * j + 2], d[4 * j + 3]);
  }
#else
  __trap();  // compiled for another architecture: the launcher never selects this
#endif
}

}  // namespace

bool qgemm_s8_wgmma_available(int device) {
  static int cc_major[64] = {0};
  if (device < 0 || device >= 64) return false;
  if (cc_major[device] == 0) {
    int major = -1;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) major = -1;
    cc_major[device] = major;
  }
  const char* opt_in = std::getenv("QDEV_CUDA_WGMMA");
  return cc_major[device] == 9 && opt_in && opt_in[0] == '1';
}

Status qgemm_s8_wgmma(const GemmArgs& args, cudaStream_t stream) {
  if (Status s = validate(args); s != Status::kOk) return s;
  if (args.m == 0 || args.n == 0) return Status::kOk;
  const int64_t tiles_m = (args.m + kBM - 1) / kBM, tiles_n = (args.n + kBN - 1) / kBN;
  if (tiles_m > 65535 || tiles_n > (int64_t{1} << 30) / tiles_m) return Status::kUnsupported;
  const cudaError_t err =
      cudaFuncSetAttribute(qgemm_s8_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (err != cudaSuccess) return launch_status(err);
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m), static_cast<unsigned>(args.batches));
  qgemm_s8_wgmma_kernel<<<grid, kThreads, kSmemBytes, stream>>>(args, make_out(args));
  return launch_status(cudaGetLastError());
}

}  // namespace qdev::cuda_kernels
