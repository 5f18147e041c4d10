// W4A8 dynamic on CUDA (sm80+): pack kernel for the family-2 buffer
// (qd_cuda_w4_layout.h), the qai8dx row quantizer, and two matmul kernels.
//
// Nibbles become mma operands with two logic ops per 32-bit word: the packer
// stores signed int4 so that (w << 4) & 0xF0F0F0F0 and w & 0xF0F0F0F0 are int8
// lanes holding 16 * w (exact); the int32 sum is shifted back by 4. The
// zero-point term needs sum(w) per group and column: each lane takes it from
// the same fragments with dp4a and the four lanes of a column add theirs with
// two shuffles, so the buffer carries no column sums.
//
// Every mma k-step covers 32 consecutive k, so a group (a multiple of 32)
// ends on a k-step boundary. At each group end the lane owning an output turns
// its exact int32 group sum into float and adds it in group order:
//   acc = acc + float(iacc_g) * s[g, n]         (no FMA: __fmul_rn, __fadd_rn)
// exactly the CPU reference's sequence, so results match it bit for bit.
//
// Decode (m <= 16): one warp per 8-column n-tile over all of K, four warps a
// block. A lane streams 16 contiguous bytes per 128-k chunk (the tile's chunks
// are contiguous: the weight is read front to back, once) and four chunks are
// in flight ahead of the mma (the next four prefetched while the current four
// compute). Activations come in "decode order" (two 128-bit loads give a lane
// its fragments of all four k-steps) and stay in L1/L2 (m x K bytes).
//
// Prefill (m > 16): 128 x 128 tiles, 8 warps of 64 x 32, a 3-stage cp.async
// ring of 128-k chunks: activations (natural order) into 128-byte rows XOR-
// swizzled by row % 8 for ldmatrix, nibbles copied as they are (each lane reads
// its 16 bytes of an n-tile with one 128-bit shared load and unpacks in registers).
#include <algorithm>

#include "qd_cuda_common.cuh"

namespace qdev::cuda_kernels {
namespace {

using namespace dev;
using qdev::kernels::W4CudaHeader;
using qdev::kernels::W4CudaLayout;

constexpr uint32_t kHighNibbles = 0xF0F0F0F0u;
constexpr int kOnes = 0x01010101;

// ---------------------------------------------------------------------------
// Packing: torch's (N, K/2) bytes (low nibble = even k, nibble = w + 8).
// ---------------------------------------------------------------------------
__device__ __forceinline__ uint32_t signed_nibble(const uint8_t* weights, int64_t k_total, int64_t n_total, int64_t k,
                                                  int64_t n) {
  if (k >= k_total || n >= n_total) return 0;
  const uint8_t byte = weights[n * (k_total / 2) + k / 2];
  const uint32_t nib = (k & 1) ? (byte >> 4) : (byte & 0xF);
  return nib ^ 8u;  // w + 8 -> w as 4-bit two's complement
}

__global__ void w4_pack_nibbles_kernel(W4CudaLayout L, const uint8_t* weights, uint32_t* out_words) {
  const int64_t k_chunks = L.k_pad / qdev::kernels::kW4CudaChunkK;
  const int64_t words = (L.n_pad / 8) * k_chunks * 128;
  for (int64_t w = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; w < words;
       w += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tile_chunk = w / 128;
    const int within = static_cast<int>(w % 128);
    const int64_t tile = tile_chunk / k_chunks, chunk = tile_chunk % k_chunks;
    const int g = within / 16, q = (within / 4) % 4, s = within % 4;
    const int64_t n = tile * 8 + g;
    const int64_t k_lo = chunk * 128 + s * 32 + q * 4;
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t lo = signed_nibble(weights, L.k, L.n, k_lo + j, n);
      const uint32_t hi = signed_nibble(weights, L.k, L.n, k_lo + 16 + j, n);
      word |= (lo | (hi << 4)) << (8 * j);
    }
    out_words[w] = word;
  }
}

__global__ void w4_pack_scales_bias_kernel(W4CudaLayout L, W4CudaHeader header, const void* scales, bool scales_bf16_in,
                                           const float* bias, uint8_t* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < qdev::kernels::kW4CudaHeaderBytes / 4) {
    uint32_t word = 0;
    if (i * 4 < static_cast<int64_t>(sizeof(W4CudaHeader))) word = reinterpret_cast<const uint32_t*>(&header)[i];
    reinterpret_cast<uint32_t*>(out)[i] = word;
  }
  if (i < L.groups * L.n_pad) {
    const int64_t g = i / L.n_pad, n = i % L.n_pad;
    const int64_t src = n * L.groups + g;  // torch: (N, K/group), n-major
    if (L.scales_bf16) {
      reinterpret_cast<uint16_t*>(out + L.off_scales)[i] =
          n < L.n ? static_cast<const uint16_t*>(scales)[src] : uint16_t{0};
    } else {
      float v = 0.0f;
      if (n < L.n) {
        v = scales_bf16_in ? bf16_bits_to_float(static_cast<const uint16_t*>(scales)[src])
                           : static_cast<const float*>(scales)[src];
      }
      reinterpret_cast<float*>(out + L.off_scales)[i] = v;
    }
  }
  if (L.has_bias && i < L.n_pad) reinterpret_cast<float*>(out + L.off_bias)[i] = i < L.n ? bias[i] : 0.0f;
}

// ---------------------------------------------------------------------------
// qai8dx row quantization (one block per row).
// ---------------------------------------------------------------------------
constexpr int kQuantThreads = 256;

__device__ __forceinline__ float load_x(const void* x, bool bf16, int64_t i) {
  return bf16 ? bf16_bits_to_float(static_cast<const uint16_t*>(x)[i]) : static_cast<const float*>(x)[i];
}

// Position p of a 128-k chunk in decode order -> its k offset inside the chunk.
__device__ __forceinline__ int decode_order_k(int r) {
  const int q = r / 32, s = (r / 8) % 4, half = (r / 4) % 2, j = r % 4;
  return 32 * s + 16 * half + 4 * q + j;
}

__global__ void __launch_bounds__(kQuantThreads) w4a8_quant_rows_kernel(const void* x, bool x_bf16, int64_t k, int64_t ldx,
                                                                        int64_t k_pad, bool decode_order, int8_t* q,
                                                                        float* recip_out, int32_t* zp_out) {
  __shared__ float red_min[kQuantThreads / 32], red_max[kQuantThreads / 32];
  const int64_t row = blockIdx.x;
  const void* xr = x_bf16 ? static_cast<const void*>(static_cast<const uint16_t*>(x) + row * ldx)
                          : static_cast<const void*>(static_cast<const float*>(x) + row * ldx);
  float mn = INFINITY, mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < k; i += kQuantThreads) {
    const float v = load_x(xr, x_bf16, i);
    mn = fminf(mn, v);
    mx = fmaxf(mx, v);
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    mn = fminf(mn, __shfl_xor_sync(0xFFFFFFFFu, mn, off));
    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
  }
  if ((threadIdx.x & 31) == 0) {
    red_min[threadIdx.x >> 5] = mn;
    red_max[threadIdx.x >> 5] = mx;
  }
  __syncthreads();
  mn = red_min[0];
  mx = red_max[0];
#pragma unroll
  for (int w = 1; w < kQuantThreads / 32; ++w) {
    mn = fminf(mn, red_min[w]);
    mx = fmaxf(mx, red_max[w]);
  }
  // The CPU reference's parameter arithmetic, operation by operation.
  const float rmin = fminf(0.0f, mn), rmax = fmaxf(0.0f, mx);
  const float scale = rmin == rmax ? 1.0f : __fdiv_rn(255.0f, __fsub_rn(rmax, rmin));
  const float recip = scale != 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
  const float dmin = __fmul_rn(rmin, scale), dmax = __fmul_rn(rmax, scale);
  float zpf = __fadd_rn(__fadd_rn(-128.0f, dmin), __fadd_rn(127.0f, dmax)) > 0.0f ? __fsub_rn(-128.0f, dmin)
                                                                                   : __fsub_rn(127.0f, dmax);
  zpf = fminf(fmaxf(zpf, -128.0f), 127.0f);
  const int32_t zp = __float2int_rn(zpf);  // half to even, as lrintf

  int8_t* qr = q + row * k_pad;
  for (int64_t p = threadIdx.x; p < k_pad; p += kQuantThreads) {
    const int64_t kk = decode_order ? (p / 128) * 128 + decode_order_k(static_cast<int>(p % 128)) : p;
    int32_t v = 0;
    if (kk < k) {
      v = static_cast<int32_t>(roundf(__fmul_rn(load_x(xr, x_bf16, kk), scale))) + zp;  // half away from zero
      v = min(max(v, -128), 127);
    }
    qr[p] = static_cast<int8_t>(v);
  }
  if (threadIdx.x == 0) {
    recip_out[row] = recip;
    zp_out[row] = zp;
  }
}

// ---------------------------------------------------------------------------
// Shared pieces of the two matmul kernels.
// ---------------------------------------------------------------------------
__device__ __forceinline__ float w4_scale(const W4CudaLayout& L, const uint8_t* packed, int64_t g, int64_t col) {
  if (col >= L.n_pad) return 0.0f;
  const int64_t i = g * L.n_pad + col;
  return L.scales_bf16 ? bf16_bits_to_float(reinterpret_cast<const uint16_t*>(packed + L.off_scales)[i])
                       : reinterpret_cast<const float*>(packed + L.off_scales)[i];
}

// 16 * sum(w) of column 8*tile + gid summed over the four lanes of the column,
// then fetched for this lane's two output columns (2*tig, 2*tig + 1).
__device__ __forceinline__ void column_sums(int cs, int tig, int* cs_even, int* cs_odd) {
  cs += __shfl_xor_sync(0xFFFFFFFFu, cs, 1);
  cs += __shfl_xor_sync(0xFFFFFFFFu, cs, 2);
  *cs_even = __shfl_sync(0xFFFFFFFFu, cs, (2 * tig) * 4);
  *cs_odd = __shfl_sync(0xFFFFFFFFu, cs, (2 * tig + 1) * 4);
}

// One group's contribution to four outputs (rows r_lo, r_hi; columns c, c + 1).
__device__ __forceinline__ void flush_group(int32_t (&c)[4], float (&acc)[4], int zp_lo, int zp_hi, int cs_even,
                                            int cs_odd, float s_even, float s_odd) {
  const int32_t sum_even = cs_even >> 4, sum_odd = cs_odd >> 4;
  const int32_t iacc[4] = {(c[0] >> 4) - zp_lo * sum_even, (c[1] >> 4) - zp_lo * sum_odd,
                           (c[2] >> 4) - zp_hi * sum_even, (c[3] >> 4) - zp_hi * sum_odd};
  const float s[4] = {s_even, s_odd, s_even, s_odd};
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    acc[e] = __fadd_rn(acc[e], __fmul_rn(static_cast<float>(iacc[e]), s[e]));
    c[e] = 0;
  }
}

__device__ __forceinline__ void store_w4_out(const W4A8Args& a, int64_t row, int64_t col, float acc) {
  if (row >= a.m || col >= a.L.n) return;
  float y = __fmul_rn(acc, a.recip[row]);
  if (a.L.has_bias) y = __fadd_rn(y, reinterpret_cast<const float*>(a.packed + a.L.off_bias)[col]);
  if (a.out_bf16) {
    static_cast<uint16_t*>(a.out)[row * a.ldo + col] = static_cast<uint16_t>(__float_as_uint(y) >> 16);  // truncation
  } else {
    static_cast<float*>(a.out)[row * a.ldo + col] = y;
  }
}

// Whether the group ends with the k-step ending at k_end (groupwise only).
__device__ __forceinline__ bool group_ends(const W4CudaLayout& L, int64_t k_end) {
  return !L.channelwise && k_end <= L.k && k_end % L.group == 0;
}

// ---------------------------------------------------------------------------
// Decode.
// ---------------------------------------------------------------------------
constexpr int kDecodeWarps = 4;
constexpr int kDecodeUnroll = 4;

__global__ void __launch_bounds__(kDecodeWarps * 32) w4a8_decode_kernel(W4A8Args a) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const W4CudaLayout& L = a.L;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) * kDecodeWarps + warp;
  if (tile >= L.n_pad / 8) return;
  const int64_t k_chunks = L.k_pad / 128;
  const uint4* wstream = reinterpret_cast<const uint4*>(a.packed + L.off_weights + tile * k_chunks * 512) + lane;
  const int8_t* q_lo = gid < a.m ? a.q + gid * L.k_pad + tig * 32 : nullptr;
  const int8_t* q_hi = gid + 8 < a.m ? a.q + (gid + 8) * L.k_pad + tig * 32 : nullptr;
  const int zp_lo = gid < a.m ? a.zp[gid] : 0, zp_hi = gid + 8 < a.m ? a.zp[gid + 8] : 0;

  int32_t c[4] = {0, 0, 0, 0};
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int cs = 0;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  // Weight chunks are prefetched one batch ahead (evict-first: read once), so a
  // lane keeps up to 2 x kDecodeUnroll x 16 bytes in flight while it computes.
  uint4 bw_next[kDecodeUnroll];
#pragma unroll
  for (int u = 0; u < kDecodeUnroll; ++u) bw_next[u] = u < k_chunks ? __ldcs(wstream + u * 32) : zero;
  for (int64_t c0 = 0; c0 < k_chunks; c0 += kDecodeUnroll) {
    uint4 bw[kDecodeUnroll], alo[kDecodeUnroll][2], ahi[kDecodeUnroll][2];
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      bw[u] = bw_next[u];
      const int64_t ahead = c0 + kDecodeUnroll + u;
      bw_next[u] = ahead < k_chunks ? __ldcs(wstream + ahead * 32) : zero;
    }
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      const bool in = c0 + u < k_chunks;
      const int64_t at = (c0 + u) * 128;
      alo[u][0] = (in && q_lo) ? __ldg(reinterpret_cast<const uint4*>(q_lo + at)) : zero;
      alo[u][1] = (in && q_lo) ? __ldg(reinterpret_cast<const uint4*>(q_lo + at) + 1) : zero;
      ahi[u][0] = (in && q_hi) ? __ldg(reinterpret_cast<const uint4*>(q_hi + at)) : zero;
      ahi[u][1] = (in && q_hi) ? __ldg(reinterpret_cast<const uint4*>(q_hi + at) + 1) : zero;
    }
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      if (c0 + u >= k_chunks) break;
      const uint32_t words[4] = {bw[u].x, bw[u].y, bw[u].z, bw[u].w};
      const uint32_t lo[8] = {alo[u][0].x, alo[u][0].y, alo[u][0].z, alo[u][0].w,
                              alo[u][1].x, alo[u][1].y, alo[u][1].z, alo[u][1].w};
      const uint32_t hi[8] = {ahi[u][0].x, ahi[u][0].y, ahi[u][0].z, ahi[u][0].w,
                              ahi[u][1].x, ahi[u][1].y, ahi[u][1].z, ahi[u][1].w};
#pragma unroll
      for (int s = 0; s < 4; ++s) {
        const uint32_t b0 = (words[s] << 4) & kHighNibbles, b1 = words[s] & kHighNibbles;
        cs = __dp4a(static_cast<int>(b0), kOnes, cs);
        cs = __dp4a(static_cast<int>(b1), kOnes, cs);
        const uint32_t af[4] = {lo[2 * s], hi[2 * s], lo[2 * s + 1], hi[2 * s + 1]};
        mma_s8_16832(c, af, b0, b1);
        const int64_t k_end = ((c0 + u) * 4 + s + 1) * 32;
        if (group_ends(L, k_end)) {
          int cs_even, cs_odd;
          column_sums(cs, tig, &cs_even, &cs_odd);
          const int64_t g = k_end / L.group - 1, col = tile * 8 + 2 * tig;
          flush_group(c, acc, zp_lo, zp_hi, cs_even, cs_odd, w4_scale(L, a.packed, g, col),
                      w4_scale(L, a.packed, g, col + 1));
          cs = 0;
        }
      }
    }
  }
  if (L.channelwise) {
    int cs_even, cs_odd;
    column_sums(cs, tig, &cs_even, &cs_odd);
    const int64_t col = tile * 8 + 2 * tig;
    flush_group(c, acc, zp_lo, zp_hi, cs_even, cs_odd, w4_scale(L, a.packed, 0, col), w4_scale(L, a.packed, 0, col + 1));
  }
  const int64_t col = tile * 8 + 2 * tig;
  store_w4_out(a, gid, col, acc[0]);
  store_w4_out(a, gid, col + 1, acc[1]);
  store_w4_out(a, gid + 8, col, acc[2]);
  store_w4_out(a, gid + 8, col + 1, acc[3]);
}

// ---------------------------------------------------------------------------
// Prefill.
// ---------------------------------------------------------------------------
constexpr int kPBM = 128, kPBN = 128, kPStages = 3;
constexpr int kPWarpsM = 2, kPWarpsN = 4, kPThreads = kPWarpsM * kPWarpsN * 32;
constexpr int kPMTiles = kPBM / kPWarpsM / 16, kPNTiles = kPBN / kPWarpsN / 8;  // 4 x 4
constexpr int kPTilesPerBlock = kPBN / 8;                                        // 16 n-tiles
constexpr int kPStageA = kPBM * 128, kPStageB = kPTilesPerBlock * 512;
constexpr int kPStageBytes = kPStageA + kPStageB;
constexpr int kPSmemBytes = kPStages * kPStageBytes;  // 72 KiB

__device__ __forceinline__ int swizzle128(int row, int chunk) { return row * 128 + ((chunk ^ (row & 7)) << 4); }

__global__ void __launch_bounds__(kPThreads, 1) w4a8_prefill_kernel(W4A8Args a) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int wm = warp / kPWarpsN, wn = warp % kPWarpsN;
  const int gid = lane >> 2, tig = lane & 3;
  const W4CudaLayout& L = a.L;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kPBM;
  const int64_t tile0 = static_cast<int64_t>(blockIdx.x) * kPTilesPerBlock;  // first n-tile of the block
  const int64_t n_tiles = L.n_pad / 8, k_chunks = L.k_pad / 128;
  const uint8_t* weights = a.packed + L.off_weights;

  auto load_stage = [&](int64_t chunk) {
    uint8_t* sa = smem + static_cast<int>(chunk % kPStages) * kPStageBytes;
    uint8_t* sb = sa + kPStageA;
#pragma unroll
    for (int i = 0; i < kPStageA / 16 / kPThreads; ++i) {
      const int cidx = threadIdx.x + i * kPThreads;
      const int row = cidx >> 3, ch = cidx & 7;
      const int64_t grow = m0 + row;
      const bool in = grow < a.m;
      const int8_t* src = in ? a.q + grow * L.k_pad + chunk * 128 + ch * 16 : a.q;
      cp_async_16(sa + swizzle128(row, ch), src, in ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < kPStageB / 16 / kPThreads; ++i) {
      const int cidx = threadIdx.x + i * kPThreads;
      const int t = cidx >> 5, part = cidx & 31;
      const bool in = tile0 + t < n_tiles;
      const uint8_t* src = in ? weights + ((tile0 + t) * k_chunks + chunk) * 512 + part * 16 : weights;
      cp_async_16(sb + t * 512 + part * 16, src, in ? 16 : 0);
    }
  };

  int32_t c[kPMTiles][kPNTiles][4];
  float acc[kPMTiles][kPNTiles][4];
  int cs[kPNTiles];
  int zp[kPMTiles][2];
#pragma unroll
  for (int mi = 0; mi < kPMTiles; ++mi) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = m0 + wm * 64 + mi * 16 + gid + 8 * h;
      zp[mi][h] = row < a.m ? a.zp[row] : 0;
    }
#pragma unroll
    for (int ni = 0; ni < kPNTiles; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        c[mi][ni][e] = 0;
        acc[mi][ni][e] = 0.0f;
      }
  }
#pragma unroll
  for (int ni = 0; ni < kPNTiles; ++ni) cs[ni] = 0;

  auto flush = [&](int64_t g) {
#pragma unroll
    for (int ni = 0; ni < kPNTiles; ++ni) {
      int cs_even, cs_odd;
      column_sums(cs[ni], tig, &cs_even, &cs_odd);
      cs[ni] = 0;
      const int64_t col = (tile0 + wn * kPNTiles + ni) * 8 + 2 * tig;
      const float s_even = w4_scale(L, a.packed, g, col), s_odd = w4_scale(L, a.packed, g, col + 1);
#pragma unroll
      for (int mi = 0; mi < kPMTiles; ++mi) {
        flush_group(c[mi][ni], acc[mi][ni], zp[mi][0], zp[mi][1], cs_even, cs_odd, s_even, s_odd);
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kPStages - 1; ++s) {
    if (s < k_chunks) load_stage(s);
    cp_async_commit();
  }
  for (int64_t chunk = 0; chunk < k_chunks; ++chunk) {
    cp_async_wait<kPStages - 2>();
    __syncthreads();
    if (chunk + kPStages - 1 < k_chunks) load_stage(chunk + kPStages - 1);
    cp_async_commit();

    const uint8_t* sa = smem + static_cast<int>(chunk % kPStages) * kPStageBytes;
    const uint8_t* sb = sa + kPStageA;
    uint4 bw[kPNTiles];
#pragma unroll
    for (int ni = 0; ni < kPNTiles; ++ni) {
      bw[ni] = *reinterpret_cast<const uint4*>(sb + (wn * kPNTiles + ni) * 512 + lane * 16);
    }
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      uint32_t af[kPMTiles][4];
#pragma unroll
      for (int mi = 0; mi < kPMTiles; ++mi) {
        const int row = wm * 64 + mi * 16 + (lane & 15);
        ldmatrix_x4(af[mi], sa + swizzle128(row, 2 * s + (lane >> 4)));
      }
#pragma unroll
      for (int ni = 0; ni < kPNTiles; ++ni) {
        const uint32_t word = s == 0 ? bw[ni].x : s == 1 ? bw[ni].y : s == 2 ? bw[ni].z : bw[ni].w;
        const uint32_t b0 = (word << 4) & kHighNibbles, b1 = word & kHighNibbles;
        cs[ni] = __dp4a(static_cast<int>(b0), kOnes, cs[ni]);
        cs[ni] = __dp4a(static_cast<int>(b1), kOnes, cs[ni]);
#pragma unroll
        for (int mi = 0; mi < kPMTiles; ++mi) mma_s8_16832(c[mi][ni], af[mi], b0, b1);
      }
      const int64_t k_end = (chunk * 4 + s + 1) * 32;
      if (group_ends(L, k_end)) flush(k_end / L.group - 1);
    }
  }
  cp_async_wait<0>();
  if (L.channelwise) flush(0);

#pragma unroll
  for (int mi = 0; mi < kPMTiles; ++mi) {
    const int64_t row = m0 + wm * 64 + mi * 16 + gid;
#pragma unroll
    for (int ni = 0; ni < kPNTiles; ++ni) {
      const int64_t col = (tile0 + wn * kPNTiles + ni) * 8 + 2 * tig;
      store_w4_out(a, row, col, acc[mi][ni][0]);
      store_w4_out(a, row, col + 1, acc[mi][ni][1]);
      store_w4_out(a, row + 8, col, acc[mi][ni][2]);
      store_w4_out(a, row + 8, col + 1, acc[mi][ni][3]);
    }
  }
}

Status validate(const W4A8Args& a) {
  if (!a.packed || !a.q || !a.recip || !a.zp || !a.out || a.m < 0 || a.ldo < a.L.n) return Status::kInvalidArgument;
  if (reinterpret_cast<uintptr_t>(a.packed) % 256 || reinterpret_cast<uintptr_t>(a.q) % 16) {
    return Status::kInvalidArgument;
  }
  if (a.L.k_pad % 128 || a.L.n_pad % 8) return Status::kInvalidArgument;
  if (!a.L.channelwise && a.L.group % 32) return Status::kUnsupported;
  // 16 * |q| * |w| summed over a group must stay inside int32.
  if ((a.L.channelwise ? a.L.k_pad : a.L.group) > 131072) return Status::kUnsupported;
  return Status::kOk;
}

}  // namespace

Status w4_cuda_pack(const W4CudaLayout& L, const uint8_t* weights, const void* scales, bool scales_bf16_in,
                    const float* bias, uint8_t* out, cudaStream_t stream) {
  if (!weights || !scales || !out || (L.has_bias && !bias)) return Status::kInvalidArgument;
  if (L.scales_bf16 && !scales_bf16_in) return Status::kInvalidArgument;
  if (reinterpret_cast<uintptr_t>(out) % 256) return Status::kInvalidArgument;
  if (Status s = launch_status(cudaMemsetAsync(out, 0, static_cast<size_t>(L.total_bytes), stream)); s != Status::kOk) {
    return s;
  }
  const int64_t words = (L.n_pad / 8) * (L.k_pad / 128) * 128;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((words + threads - 1) / threads, 65535 * 16);
  w4_pack_nibbles_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(
      L, weights, reinterpret_cast<uint32_t*>(out + L.off_weights));
  if (Status s = launch_status(cudaGetLastError()); s != Status::kOk) return s;
  const int64_t jobs = std::max<int64_t>(L.groups * L.n_pad, qdev::kernels::kW4CudaHeaderBytes / 4);
  w4_pack_scales_bias_kernel<<<static_cast<unsigned>((jobs + threads - 1) / threads), threads, 0, stream>>>(
      L, qdev::kernels::w4_cuda_header(L), scales, scales_bf16_in, bias, out);
  return launch_status(cudaGetLastError());
}

Status w4a8_quant_rows(const void* x, bool x_bf16, int64_t rows, int64_t k, int64_t ldx, int64_t k_pad,
                       bool decode_order, int8_t* q, float* recip, int32_t* zp, cudaStream_t stream) {
  if (!x || !q || !recip || !zp || k <= 0 || k_pad < k || k_pad % 128 || ldx < k) return Status::kInvalidArgument;
  if (rows == 0) return Status::kOk;
  if (rows > 0x7FFFFFFF) return Status::kUnsupported;
  w4a8_quant_rows_kernel<<<static_cast<unsigned>(rows), kQuantThreads, 0, stream>>>(x, x_bf16, k, ldx, k_pad,
                                                                                   decode_order, q, recip, zp);
  return launch_status(cudaGetLastError());
}

Status w4a8_decode(const W4A8Args& a, cudaStream_t stream) {
  if (Status s = validate(a); s != Status::kOk) return s;
  if (a.m > 16) return Status::kInvalidArgument;
  if (a.m == 0) return Status::kOk;
  const int64_t tiles = a.L.n_pad / 8;
  const int64_t blocks = (tiles + kDecodeWarps - 1) / kDecodeWarps;
  w4a8_decode_kernel<<<static_cast<unsigned>(blocks), kDecodeWarps * 32, 0, stream>>>(a);
  return launch_status(cudaGetLastError());
}

Status w4a8_prefill(const W4A8Args& a, cudaStream_t stream) {
  if (Status s = validate(a); s != Status::kOk) return s;
  if (a.m == 0) return Status::kOk;
  const int64_t tiles_m = (a.m + kPBM - 1) / kPBM;
  const int64_t tiles_n = (a.L.n_pad / 8 + kPTilesPerBlock - 1) / kPTilesPerBlock;
  if (tiles_m > 65535) return Status::kUnsupported;
  const cudaError_t err =
      cudaFuncSetAttribute(w4a8_prefill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kPSmemBytes);
  if (err != cudaSuccess) return launch_status(err);
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m));
  w4a8_prefill_kernel<<<grid, kPThreads, kPSmemBytes, stream>>>(a);
  return launch_status(cudaGetLastError());
}

}  // namespace qdev::cuda_kernels
