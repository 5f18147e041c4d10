// A8W8 on CUDA tensor cores (sm80+): int8 x int8 -> int32 with the output
// stage fused, as two kernels.
//
// Tiled GEMM (m > 16). A block computes a 128 x 128 tile of C with 8 warps in a
// 2 (m) x 4 (n) grid, each warp 64 x 32 = 4 x 4 mma.m16n8k32 tiles (64 int32
// accumulators per thread). K advances 64 bytes per stage through a 4-stage
// cp.async ring (64 KiB of shared memory): loads run three stages ahead of the
// tensor cores. A and B tiles are stored as 64-byte rows with the 16-byte chunks
// XOR-swizzled by (row / 2) % 4, so that ldmatrix's eight row addresses of one
// phase hit eight distinct bank groups. Both operands are k-contiguous (B is
// the (n, k) weight, nn.Linear's layout), so one ldmatrix.x4 yields a whole A
// fragment or the B fragments of two n-tiles. Blocks are rasterised in groups
// of 8 m-tiles so that neighbouring blocks share B tiles in L2.
//
// Streaming GEMV (m <= 16). The weight is read exactly once: a block of 4 warps
// owns 8 output columns, each warp takes every 4th 64-byte k-chunk; a lane
// loads 16 bytes of one weight row (column gid, k 16*tig..16*tig+15) and the
// matching 16 bytes of activation rows gid and gid+8, which feed two mma
// k-steps directly (the k order inside an mma is a permutation shared by A and
// B, so no shuffles are needed). Warps meet in shared memory for the epilogue.
//
// The output stage (see qd_cuda_kernels.h) is evaluated per element from the
// int32 accumulator with the CPU reference's operation order.
#include <algorithm>

#include "qd_qgemm_s8_common.cuh"

namespace qdev::cuda_kernels {
namespace {

using namespace dev;
using namespace gemm;

// --- tiled tensor-core GEMM ------------------------------------------------------
constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4;
constexpr int kWarpsM = 2, kWarpsN = 4, kThreads = kWarpsM * kWarpsN * 32;
constexpr int kWarpTileM = kBM / kWarpsM, kWarpTileN = kBN / kWarpsN;  // 64 x 32
constexpr int kMTiles = kWarpTileM / 16, kNTiles = kWarpTileN / 8;      // 4 x 4
constexpr int kStageBytes = (kBM + kBN) * kBK;
constexpr int kSmemBytes = kStages * kStageBytes;  // 64 KiB
constexpr int kRasterGroup = 8;

// Byte offset of (row, 16-byte chunk) in a 64-byte-row tile.
__device__ __forceinline__ int swizzle64(int row, int chunk) { return row * kBK + ((chunk ^ ((row >> 1) & 3)) << 4); }

// Loads rows [row0, row0 + rows) x bytes [k0, k0 + 64) of a k-contiguous operand.
template <int kRows>
__device__ __forceinline__ void load_tile(uint8_t* smem, const int8_t* base, int64_t ld, int64_t row0, int64_t rows_total,
                                          int64_t k0, int64_t k) {
  constexpr int kChunks = kRows * kBK / 16;
  static_assert(kChunks % kThreads == 0, "whole chunks per thread");
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int row = c >> 2, chunk = c & 3;
    const int64_t grow = row0 + row, gk = k0 + chunk * 16;
    int bytes = 0;
    const int8_t* src = base;
    if (grow < rows_total && gk < k) {
      bytes = static_cast<int>(k - gk < 16 ? k - gk : 16);
      src = base + grow * ld + gk;
    }
    cp_async_16(smem + swizzle64(row, chunk), src, bytes);
  }
}

__global__ void __launch_bounds__(kThreads, 1) qgemm_s8_tiled_kernel(GemmArgs args, OutCtx out) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp / kWarpsN, wn = warp % kWarpsN;
  const int gid = lane >> 2, tig = lane & 3;

  // Grouped rasterisation: consecutive blocks walk down kRasterGroup m-tiles first.
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

  auto stage_a = [&](int s) { return smem + s * kStageBytes; };
  auto stage_b = [&](int s) { return smem + s * kStageBytes + kBM * kBK; };
  auto load_stage = [&](int64_t kt) {
    const int s = static_cast<int>(kt % kStages);
    load_tile<kBM>(stage_a(s), a, args.lda, m0, args.m, kt * kBK, args.k);
    load_tile<kBN>(stage_b(s), b, args.ldb, n0, args.n, kt * kBK, args.k);
  };

  int32_t acc[kMTiles][kNTiles][4];
#pragma unroll
  for (int i = 0; i < kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s);
    cp_async_commit();
  }

  for (int64_t kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage kt landed for everyone; stage kt-1 is free to refill
    if (kt + kStages - 1 < k_tiles) load_stage(kt + kStages - 1);
    cp_async_commit();

    const uint8_t* sa = stage_a(static_cast<int>(kt % kStages));
    const uint8_t* sb = stage_b(static_cast<int>(kt % kStages));
#pragma unroll
    for (int ks = 0; ks < kBK / 32; ++ks) {
      uint32_t af[kMTiles][4];
      uint32_t bf[kNTiles][2];
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi) {
        const int row = wm * kWarpTileM + mi * 16 + (lane & 15);
        ldmatrix_x4(af[mi], sa + swizzle64(row, ks * 2 + (lane >> 4)));
      }
#pragma unroll
      for (int nj = 0; nj < kNTiles / 2; ++nj) {
        const int row = wn * kWarpTileN + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
        uint32_t r[4];
        ldmatrix_x4(r, sb + swizzle64(row, ks * 2 + ((lane >> 3) & 1)));
        bf[2 * nj][0] = r[0];
        bf[2 * nj][1] = r[1];
        bf[2 * nj + 1][0] = r[2];
        bf[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < kMTiles; ++mi)
#pragma unroll
        for (int ni = 0; ni < kNTiles; ++ni) mma_s8_16832(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mi = 0; mi < kMTiles; ++mi) {
    const int64_t row = m0 + wm * kWarpTileM + mi * 16 + gid;
#pragma unroll
    for (int ni = 0; ni < kNTiles; ++ni) {
      const int64_t col = n0 + wn * kWarpTileN + ni * 8 + tig * 2;
      store_pair(out, batch, row, col, acc[mi][ni][0], acc[mi][ni][1]);
      store_pair(out, batch, row + 8, col, acc[mi][ni][2], acc[mi][ni][3]);
    }
  }
}

// --- streaming GEMV for m <= 16 ---------------------------------------------------
constexpr int kGemvWarps = 4;
constexpr int kGemvChunk = 64;   // k bytes per warp step (4 lanes x 16 bytes)
constexpr int kGemvUnroll = 4;   // chunks whose loads are in flight before the first mma

// 16 bytes of a k-contiguous row at byte k0 (k0 % 16 == 0), bytes past k zeroed.
// Weights are read once (evict-first loads); activations are re-read by every block.
template <bool kStreaming>
__device__ __forceinline__ uint4 load_row16(const int8_t* row, int64_t k0, int64_t k) {
  if (k0 >= k) return make_uint4(0, 0, 0, 0);
  const uint4* p = reinterpret_cast<const uint4*>(row + k0);
  uint4 v = kStreaming ? __ldcs(p) : __ldg(p);
  const int64_t valid = k - k0;
  if (valid < 16) {
    uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t rest = valid - 4 * i;
      const int64_t keep = rest < 0 ? 0 : (rest > 4 ? 4 : rest);
      w[i] = keep == 4 ? w[i] : (w[i] & ((1u << (8 * keep)) - 1u));
    }
    v = make_uint4(w[0], w[1], w[2], w[3]);
  }
  return v;
}

__global__ void __launch_bounds__(kGemvWarps * 32) qgemm_s8_gemv_kernel(GemmArgs args, OutCtx out) {
  __shared__ int32_t partial[kGemvWarps][32][4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int64_t batch = blockIdx.y;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * 8;
  const int64_t col = n0 + gid;  // the weight row this lane streams
  const int8_t* a = args.a + batch * args.a_batch_stride;
  const int8_t* b_row = col < args.n ? args.b + batch * args.b_batch_stride + col * args.ldb : nullptr;
  const int8_t* a_lo = gid < args.m ? a + gid * args.lda : nullptr;
  const int8_t* a_hi = gid + 8 < args.m ? a + (gid + 8) * args.lda : nullptr;

  int32_t c[4] = {0, 0, 0, 0};
  const int64_t chunks = (args.k + kGemvChunk - 1) / kGemvChunk;
  for (int64_t base = warp; base < chunks; base += kGemvWarps * kGemvUnroll) {
    uint4 bv[kGemvUnroll], alo[kGemvUnroll], ahi[kGemvUnroll];
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      const int64_t k0 = (base + static_cast<int64_t>(u) * kGemvWarps) * kGemvChunk + tig * 16;
      const bool in = base + static_cast<int64_t>(u) * kGemvWarps < chunks;
      bv[u] = (b_row && in) ? load_row16<true>(b_row, k0, args.k) : make_uint4(0, 0, 0, 0);
      alo[u] = (a_lo && in) ? load_row16<false>(a_lo, k0, args.k) : make_uint4(0, 0, 0, 0);
      ahi[u] = (a_hi && in) ? load_row16<false>(a_hi, k0, args.k) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kGemvUnroll; ++u) {
      // k-step 0 uses bytes 0..7 of each lane's 16, k-step 1 bytes 8..15:
      // b0/a0 take the first 4, b1/a2 the next 4 (the same permutation on both sides).
      const uint32_t a0[4] = {alo[u].x, ahi[u].x, alo[u].y, ahi[u].y};
      const uint32_t a1[4] = {alo[u].z, ahi[u].z, alo[u].w, ahi[u].w};
      mma_s8_16832(c, a0, bv[u].x, bv[u].y);
      mma_s8_16832(c, a1, bv[u].z, bv[u].w);
    }
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) partial[warp][lane][e] = c[e];
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    int32_t s = 0;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) s += partial[w][lane][e];
    c[e] = s;
  }
  const int64_t ocol = n0 + tig * 2;
  store_pair(out, batch, gid, ocol, c[0], c[1]);
  store_pair(out, batch, gid + 8, ocol, c[2], c[3]);
}

}  // namespace

Status qgemm_s8_tiled(const GemmArgs& args, cudaStream_t stream) {
  if (Status s = validate(args); s != Status::kOk) return s;
  if (args.m == 0 || args.n == 0) return Status::kOk;
  const int64_t tiles_m = (args.m + kBM - 1) / kBM, tiles_n = (args.n + kBN - 1) / kBN;
  if (tiles_m > 65535 || tiles_n > (int64_t{1} << 30) / tiles_m) return Status::kUnsupported;
  // Per device and cheap: set on every launch rather than tracking devices.
  const cudaError_t err =
      cudaFuncSetAttribute(qgemm_s8_tiled_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes);
  if (err != cudaSuccess) return launch_status(err);
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m), static_cast<unsigned>(args.batches));
  qgemm_s8_tiled_kernel<<<grid, kThreads, kSmemBytes, stream>>>(args, make_out(args));
  return launch_status(cudaGetLastError());
}

Status qgemm_s8_gemv(const GemmArgs& args, cudaStream_t stream) {
  if (Status s = validate(args); s != Status::kOk) return s;
  if (args.m > 16) return Status::kInvalidArgument;
  if (args.m == 0 || args.n == 0) return Status::kOk;
  const int64_t tiles_n = (args.n + 7) / 8;
  if (tiles_n > 0x7FFFFFFF) return Status::kUnsupported;
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(args.batches));
  qgemm_s8_gemv_kernel<<<grid, kGemvWarps * 32, 0, stream>>>(args, make_out(args));
  return launch_status(cudaGetLastError());
}

Status qgemm_s8(const GemmArgs& args, int sm_count, cudaStream_t stream) {
  (void)sm_count;  // the kernels size their grids from the problem alone
  if (args.m <= 16) return qgemm_s8_gemv(args, stream);
#ifdef QD_HAVE_WGMMA
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess && qgemm_s8_wgmma_available(device)) return qgemm_s8_wgmma(args, stream);
#endif
  return qgemm_s8_tiled(args, stream);
}

}  // namespace qdev::cuda_kernels
