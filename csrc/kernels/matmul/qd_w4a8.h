// W4A8 dynamic matmul (the semantics of aten::_dyn_quant_matmul_4bit):
//   activations: per-row asymmetric int8 ("qai8dx": scale, nudged zero point)
//   weights:     symmetric int4 per group of k (or per channel), scales fp32/bf16
//   y[m, n] = ((sum_g float(iacc_g) * s[g, n]) * recip[m]) + bias[n]
//   iacc_g   = sum_{k in g} (q[m, k] - zp[m]) * w[k, n]       (exact int32)
// Asymmetric extension (torch_qdev's, not PyTorch's): a per-group zero term z[g, n]
// (torch's _weight_int4pack_mm convention: weight = s * w + z, w = nibble - 8); each
// group then adds, after its scale term, float(asum_g) * z[g, n] with
//   asum_g   = sum_{k in g} (q[m, k] - zp[m]) = rowsum_g - zp[m] * |g|  (exact int32)
//   acc = (acc + float(iacc_g) * s[g, n]) + float(asum_g) * z[g, n]
//
// Packed weight buffer (self-describing, "QDW4" v1), 64-byte aligned sections:
//   header | nibbles | scales [N_pad/32][G][32] (bf16 when given bf16, else fp32) |
//   column sums [N_pad/32][G][32] (int16 groupwise, int32 channelwise; sum of w in
//   the group, for the zero-point term) | bias [N_pad] fp32 (optional) |
//   zeros [N_pad/32][G][32] as the scales (optional: version 4, flag 8; v3 has none).
// Scales and sums are panel-major so that a panel's are contiguous (a stride of
// N_pad per group would cross a page per group and defeat the prefetcher).
#pragma once

#include <cstdint>

#include "../common/qd_cpu_features.h"

namespace qdev::kernels {

// Nibble layout ("W4-VNNI2"): per 32-column panel, per 8 k, 128 bytes ordered
// [n-half 2][n 16][k 4]; the low nibble holds k = 8t + k, the high nibble
// k = 8t + 4 + k, both as w + 8. One AND gives a 16-column x 4-k vpdpbusd operand,
// one shift and AND the next: no interleaving shuffles at run time.
static inline int64_t w4_weight_offset(int64_t k, int64_t jc) {
  return (k / 8) * 128 + (jc / 16) * 64 + (jc % 16) * 4 + k % 4;
}

// Bytes of one 32-column panel over the (16-padded) k.
constexpr int64_t kW4PanelCols = 32;
static inline int64_t w4_panel_bytes(int64_t k_pad) { return k_pad * 16; }

// Index of (group g, column j) in the scale and column-sum sections.
static inline int64_t w4_group_index(int64_t groups, int64_t g, int64_t j) {
  return ((j / kW4PanelCols) * groups + g) * kW4PanelCols + j % kW4PanelCols;
}

constexpr uint32_t kW4Magic = 0x34574451;  // "QDW4"
constexpr uint32_t kW4Version = 3;  // 3: W4-VNNI2 nibbles, panel-major scales and sums
constexpr uint32_t kW4VersionZeros = 4;  // 4: as 3 plus a zero section (asymmetric); readers of 3 refuse it
constexpr uint32_t kW4FamilyNz4Vnni = 1;
// Buffers packed on CUDA tensors (torch_qdev/triton/w4a8.py: the same header, a Triton layout).
constexpr uint32_t kW4FamilyCuda = 2;

struct W4Header {
  uint32_t magic;
  uint32_t version;
  int64_t k, n, group;  // group == k: channelwise
  uint32_t family;
  uint32_t flags;       // bit 0: bias present, 1: bf16 scales, 2: int16 column sums, 3: zeros
  int64_t off_weights, off_scales, off_colsum, off_bias, total_bytes;
  int64_t off_zeros;    // version 4 only
};
constexpr int64_t kW4HeaderBytes = 128;
static_assert(sizeof(W4Header) <= kW4HeaderBytes, "the header fits its slot");

struct W4Layout {
  int64_t k, n, group, groups, n_pad, k_pad;
  bool channelwise, has_bias, scales_bf16;
  bool has_zeros = false;
  int64_t off_weights, off_scales, off_colsum, off_bias, total_bytes;
  int64_t off_zeros = 0;
};

// Sizes and offsets of a packed buffer (has_zeros: the asymmetric form, zeros stored as the scales).
W4Layout w4_layout(int64_t k, int64_t n, int64_t group, bool has_bias, bool scales_bf16, bool has_zeros = false);
// The zero term of (group g, column j) as fp32 (0 without zeros), and the group's length.
float w4_zero_at(const uint8_t* packed, const W4Layout& L, int64_t g, int64_t j);
static inline int64_t w4_group_len(const W4Layout& L) { return L.channelwise ? L.k : L.group; }

// Packs torch's format: weights uint8 (N, K/2) row-major, low nibble = even k,
// nibble = q + 8; scales (N, K/group) n-major as fp32 or bf16 bits (scales_bf16;
// stored as bf16 when the layout says so, else widened to fp32);
// bias fp32 (N) or null. Columns [n_begin, n_end) (multiples of 32 but the end);
// call w4_pack_header once.
void w4_pack_header(const W4Layout& L, uint8_t* out);
void w4_pack_columns(const W4Layout& L, const uint8_t* weights, const void* scales, bool scales_bf16,
                     const float* bias, uint8_t* out, int64_t n_begin, int64_t n_end);
// The zeros (N, K/group) n-major, same type rule as the scales, of a has_zeros layout.
void w4_pack_zeros(const W4Layout& L, const void* zeros, bool zeros_bf16, uint8_t* out, int64_t n_begin,
                   int64_t n_end);
// Whether the column sums are stored as int16 (else int32).
bool w4_colsum16(const W4Layout& L);
// Validates a buffer (magic, version, family, sizes); returns its layout or an error text.
const char* w4_read_header(const uint8_t* data, int64_t nbytes, W4Layout* out);

// Row quantization of activations (qai8dx): q rows of ldq bytes (zero padded),
// per-row recip and zero point, per-row per-group sums of q. With q_unsigned the
// rows hold q + 128 (q XOR 0x80, padding included), the u8 operand of the
// AVX-512 prefill kernel (see w4a8_lhs_unsigned); zp and the sums stay signed.
struct Qai8dxArgs {
  const void* x = nullptr;
  bool x_bf16 = false;
  int64_t k = 0, ldx = 0;
  int8_t* q = nullptr;
  int64_t ldq = 0;
  float* recip = nullptr;
  int32_t* zp = nullptr;
  int32_t* rowsum = nullptr;  // [rows][groups]
  int64_t group = 0, groups = 0;
  bool q_unsigned = false;
};
void quant_rows_qai8dx(Isa isa, const Qai8dxArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_qai8dx_ref(const Qai8dxArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_qai8dx_avx2(const Qai8dxArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_qai8dx_avx512(const Qai8dxArgs& args, int64_t row_begin, int64_t row_end);
void quant_rows_qai8dx_neon(const Qai8dxArgs& args, int64_t row_begin, int64_t row_end);

struct W4A8Args {
  int64_t m = 0;
  const uint8_t* packed = nullptr;
  W4Layout L;
  const int8_t* q = nullptr;
  int64_t ldq = 0;
  const float* recip = nullptr;
  const int32_t* zp = nullptr;
  const int32_t* rowsum = nullptr;
  bool q_unsigned = false;  // q holds q + 128: exactly when w4a8_lhs_unsigned says so
  void* out = nullptr;     // fp32, or bf16 bits (truncated, as torch's x86 path)
  bool out_bf16 = false;
  int64_t ldo = 0;
};
// Whether w4a8_panels(isa, ...) for m rows of this layout wants the activations
// quantized with q_unsigned (the AVX-512 prefill kernel multiplies u8 activations
// by s8 16 * w; its int32 sums stay exact up to 65536 k per group).
bool w4a8_lhs_unsigned(Isa isa, int64_t m, const W4Layout& L);
void w4a8_panels(Isa isa, const W4A8Args& args, int64_t panel_begin, int64_t panel_end);
void w4a8_panels_ref(const W4A8Args& args, int64_t panel_begin, int64_t panel_end);
void w4a8_panels_avx2(const W4A8Args& args, int64_t panel_begin, int64_t panel_end);
void w4a8_panels_avx512vnni(const W4A8Args& args, int64_t panel_begin, int64_t panel_end);
void w4a8_panels_neon_dotprod(const W4A8Args& args, int64_t panel_begin, int64_t panel_end);
void w4a8_panels_neon_i8mm(const W4A8Args& args, int64_t panel_begin, int64_t panel_end);

}  // namespace qdev::kernels
