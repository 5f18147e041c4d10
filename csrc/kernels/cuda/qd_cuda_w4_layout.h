// The CUDA kernel family of the self-describing W4A8 weight buffer ("QDW4",
// family 2). Plain C++ (no CUDA, no torch): shared by the CUDA kernels, the
// CUDA glue and the CPU header reader (which names the family in its error).
//
// Same 128-byte W4Header as the CPU family (matmul/qd_w4a8.h: magic, version,
// K, N, group, family, flags, section offsets), different sections:
//
//   header | nibbles | scales [G][N_pad] (bf16 if given bf16, else fp32) | bias [N_pad] fp32
//
//   N_pad = round_up(N, 8)      (one "n-tile" = 8 columns = the n of mma m16n8k32)
//   K_pad = round_up(K, 128)    (one "k-chunk" = 128 k = four mma k-steps)
//
// Nibbles: for n-tile t and k-chunk c, 512 contiguous bytes; n-tiles are
// outermost, so one tile over all of K is one contiguous stream (decode reads
// it once, front to back). Inside the 512 bytes the order is
//   [column g: 8][lane-in-group q: 4][k-step s: 4][byte j: 4]
// i.e. lane (g, q) of a warp loads its 16 bytes with one 128-bit load. Byte j of
// word s holds two signed int4 (two's complement, w & 0xF):
//   low nibble  = W[k = 128c + 32s + 4q + j][n = 8t + g]
//   high nibble = W[k = 128c + 32s + 16 + 4q + j][n]
// so that (word << 4) & 0xF0F0F0F0 is the mma B fragment b0 and
// word & 0xF0F0F0F0 is b1 of k-step s (both 16 x w, exact; the kernel shifts
// the int32 sum back by 4). Every k-step covers 32 consecutive k, so groups of
// 32 (or any multiple) never straddle an mma. Padding nibbles are 0.
//
// There is no column-sum section: the kernels derive sum(w) per group from the
// unpacked fragments (dp4a), which costs no memory traffic.
#pragma once

#include <cstdint>

namespace qdev::kernels {

constexpr uint32_t kW4FamilyCudaMma = 2;
constexpr uint32_t kW4CudaFlagBias = 1u, kW4CudaFlagScalesBf16 = 2u;
constexpr int64_t kW4CudaTileCols = 8;
constexpr int64_t kW4CudaChunkK = 128;
constexpr int64_t kW4CudaTileChunkBytes = kW4CudaTileCols * kW4CudaChunkK / 2;  // 512
constexpr int64_t kW4CudaHeaderBytes = 128;

struct W4CudaLayout {
  int64_t k = 0, n = 0, group = 0, groups = 0, n_pad = 0, k_pad = 0;
  bool channelwise = false, has_bias = false, scales_bf16 = false;
  int64_t off_weights = 0, off_scales = 0, off_bias = 0, total_bytes = 0;
};

// The header as stored (binary-identical to qd_w4a8.h's W4Header).
struct W4CudaHeader {
  uint32_t magic;
  uint32_t version;
  int64_t k, n, group;
  uint32_t family;
  uint32_t flags;
  int64_t off_weights, off_scales, off_colsum, off_bias, total_bytes;
};
static_assert(sizeof(W4CudaHeader) <= kW4CudaHeaderBytes, "the header fits its slot");

constexpr uint32_t kW4CudaMagic = 0x34574451;  // "QDW4", as the CPU family
constexpr uint32_t kW4CudaVersion = 3;         // the header version shared with the CPU family

static inline int64_t w4_cuda_align256(int64_t v) { return (v + 255) / 256 * 256; }

static inline W4CudaLayout w4_cuda_layout(int64_t k, int64_t n, int64_t group, bool has_bias, bool scales_bf16) {
  W4CudaLayout L;
  L.k = k;
  L.n = n;
  L.group = group;
  L.channelwise = group == k;
  L.groups = L.channelwise ? 1 : k / group;
  L.n_pad = (n + kW4CudaTileCols - 1) / kW4CudaTileCols * kW4CudaTileCols;
  L.k_pad = (k + kW4CudaChunkK - 1) / kW4CudaChunkK * kW4CudaChunkK;
  L.has_bias = has_bias;
  L.scales_bf16 = scales_bf16;
  L.off_weights = w4_cuda_align256(kW4CudaHeaderBytes);
  L.off_scales = w4_cuda_align256(L.off_weights + L.n_pad * L.k_pad / 2);
  L.off_bias = w4_cuda_align256(L.off_scales + L.groups * L.n_pad * (scales_bf16 ? 2 : 4));
  L.total_bytes = w4_cuda_align256(L.off_bias + (has_bias ? L.n_pad * 4 : 0));
  return L;
}

static inline W4CudaHeader w4_cuda_header(const W4CudaLayout& L) {
  W4CudaHeader h{};
  h.magic = kW4CudaMagic;
  h.version = kW4CudaVersion;
  h.k = L.k;
  h.n = L.n;
  h.group = L.group;
  h.family = kW4FamilyCudaMma;
  h.flags = (L.has_bias ? kW4CudaFlagBias : 0u) | (L.scales_bf16 ? kW4CudaFlagScalesBf16 : 0u);
  h.off_weights = L.off_weights;
  h.off_scales = L.off_scales;
  h.off_colsum = 0;  // none in this family
  h.off_bias = L.off_bias;
  h.total_bytes = L.total_bytes;
  return h;
}

// Validates a header copied to the host; returns null or an error text.
// `family_out` receives the stored family even when it is not this one, so the
// caller can say which kernel family the buffer was packed for.
static inline const char* w4_cuda_read_header(const W4CudaHeader& h, int64_t nbytes, W4CudaLayout* out,
                                              uint32_t* family_out) {
  if (nbytes < kW4CudaHeaderBytes) return "the buffer is shorter than the header";
  if (h.magic != kW4CudaMagic) return "bad magic: not a 4-bit weight packed by torch_qdev";
  if (h.version != kW4CudaVersion) return "unsupported packed-weight format version";
  if (family_out) *family_out = h.family;
  if (h.family != kW4FamilyCudaMma) return "packed for another kernel family";
  if (h.k <= 0 || h.n <= 0 || h.group <= 0 || (h.group != h.k && (h.k % h.group != 0 || h.group % 32 != 0))) {
    return "corrupt header (sizes)";
  }
  *out = w4_cuda_layout(h.k, h.n, h.group, (h.flags & kW4CudaFlagBias) != 0, (h.flags & kW4CudaFlagScalesBf16) != 0);
  if (out->total_bytes != h.total_bytes || out->off_scales != h.off_scales || out->off_bias != h.off_bias) {
    return "corrupt header (layout)";
  }
  if (nbytes < h.total_bytes) return "the buffer is truncated";
  return nullptr;
}

}  // namespace qdev::kernels
