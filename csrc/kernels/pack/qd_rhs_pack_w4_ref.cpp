// Packing and validation of the self-describing W4A8 weight buffer.
#include <algorithm>
#include <cstring>

#include "../common/qd_common.h"
#include "../matmul/qd_qgemm_s4.h"
#include "../matmul/qd_w4a8.h"

namespace qdev::kernels {
namespace {

constexpr uint32_t kFlagBias = 1u, kFlagScalesBf16 = 2u, kFlagColsum16 = 4u, kFlagZeros = 8u;

int64_t align64(int64_t v) { return (v + 63) / 64 * 64; }

bool colsum16(const W4Layout& L) { return !L.channelwise && L.group * 8 < 32768; }

}  // namespace

W4Layout w4_layout(int64_t k, int64_t n, int64_t group, bool has_bias, bool scales_bf16, bool has_zeros) {
  W4Layout L;
  L.k = k;
  L.n = n;
  L.group = group;
  L.channelwise = group == k;
  L.groups = L.channelwise ? 1 : k / group;
  L.n_pad = round_up(n, kNzCols);
  L.k_pad = round_up(k, kNzRows);
  L.has_bias = has_bias;
  L.scales_bf16 = scales_bf16;
  L.off_weights = kW4HeaderBytes;
  L.off_scales = align64(L.off_weights + nz4_packed_bytes(L.k_pad, L.n_pad));
  L.off_colsum = align64(L.off_scales + L.groups * L.n_pad * (scales_bf16 ? 2 : 4));
  L.off_bias = align64(L.off_colsum + L.groups * L.n_pad * 4);
  L.has_zeros = has_zeros;
  L.off_zeros = has_zeros ? align64(L.off_bias + (has_bias ? L.n_pad * 4 : 0)) : 0;
  L.total_bytes = has_zeros ? align64(L.off_zeros + L.groups * L.n_pad * (scales_bf16 ? 2 : 4))
                            : align64(L.off_bias + (has_bias ? L.n_pad * 4 : 0));
  return L;
}

void w4_pack_header(const W4Layout& L, uint8_t* out) {
  W4Header h{};
  h.magic = kW4Magic;
  h.version = L.has_zeros ? kW4VersionZeros : kW4Version;
  h.k = L.k;
  h.n = L.n;
  h.group = L.group;
  h.family = kW4FamilyNz4Vnni;
  h.flags = (L.has_bias ? kFlagBias : 0u) | (colsum16(L) ? kFlagColsum16 : 0u) |
            (L.scales_bf16 ? kFlagScalesBf16 : 0u) | (L.has_zeros ? kFlagZeros : 0u);
  h.off_weights = L.off_weights;
  h.off_scales = L.off_scales;
  h.off_colsum = L.off_colsum;
  h.off_bias = L.off_bias;
  h.total_bytes = L.total_bytes;
  h.off_zeros = L.off_zeros;
  std::memset(out, 0, kW4HeaderBytes);
  std::memcpy(out, &h, sizeof(h));
}

void w4_pack_columns(const W4Layout& L, const uint8_t* weights, const void* scales, bool scales_bf16,
                     const float* bias, uint8_t* out, int64_t n_begin, int64_t n_end) {
  const int64_t row_bytes = L.k / 2;
  uint8_t* nib = out + L.off_weights;

  for (int64_t p = n_begin / kNzCols; p * kNzCols < n_end; ++p) {
    uint8_t* panel = nib + p * w4_panel_bytes(L.k_pad);
    std::memset(panel, 0x88, static_cast<size_t>(w4_panel_bytes(L.k_pad)));  // w = 0 padding
    for (int64_t jc = 0; jc < kNzCols; ++jc) {
      const int64_t j = p * kNzCols + jc;
      for (int64_t g = 0; g < L.groups; ++g) {
        int32_t sum = 0;
        const int64_t at = j * L.groups + g;
        if (L.scales_bf16) {  // kept as bf16: exact, and half the bytes
          reinterpret_cast<uint16_t*>(out + L.off_scales)[w4_group_index(L.groups, g, j)] =
              j < L.n ? static_cast<const uint16_t*>(scales)[at] : uint16_t{0};
        } else {
          reinterpret_cast<float*>(out + L.off_scales)[w4_group_index(L.groups, g, j)] =
              j >= L.n ? 0.0f
              : scales_bf16 ? bf16_to_f32(static_cast<const uint16_t*>(scales)[at])
                            : static_cast<const float*>(scales)[at];
        }
        if (j < L.n) {
          const int64_t k0 = L.channelwise ? 0 : g * L.group, k1 = L.channelwise ? L.k : k0 + L.group;
          for (int64_t kk = k0; kk < k1; ++kk) {
            const uint8_t byte = weights[j * row_bytes + kk / 2];
            const uint8_t nib = (kk % 2 == 0) ? (byte & 0xF) : (byte >> 4);  // torch: w + 8, even k low
            sum += nib - 8;
            uint8_t& dst = panel[w4_weight_offset(kk, jc)];
            dst = (kk % 8 < 4) ? static_cast<uint8_t>((dst & 0xF0) | nib) : static_cast<uint8_t>((dst & 0x0F) | (nib << 4));
          }
        }
        if (colsum16(L)) {
          reinterpret_cast<int16_t*>(out + L.off_colsum)[w4_group_index(L.groups, g, j)] = static_cast<int16_t>(sum);
        } else {
          reinterpret_cast<int32_t*>(out + L.off_colsum)[w4_group_index(L.groups, g, j)] = sum;
        }
      }
      if (L.has_bias) reinterpret_cast<float*>(out + L.off_bias)[j] = j < L.n ? bias[j] : 0.0f;
    }
  }
}

const char* w4_read_header(const uint8_t* data, int64_t nbytes, W4Layout* out) {
  if (nbytes < kW4HeaderBytes) return "the buffer is shorter than the header";
  W4Header h;
  std::memcpy(&h, data, sizeof(h));
  if (h.magic != kW4Magic) return "bad magic: not a 4-bit weight packed by torch_qdev";
  if (h.version != kW4Version && h.version != kW4VersionZeros) return "unsupported packed-weight format version";
  const bool zeros = (h.flags & kFlagZeros) != 0;
  if (zeros != (h.version == kW4VersionZeros)) return "corrupt header (version and zero flag disagree)";
  if (h.family == kW4FamilyCuda) {
    return "packed for the CUDA kernel family (it runs on CUDA tensors only; pack the weights on the CPU for "
           "the CPU kernels)";
  }
  if (h.family != kW4FamilyNz4Vnni) return "unknown packed-weight kernel family";
  // Sizes bounded as the packer bounds them (2^31 - 1), so the layout below cannot overflow.
  constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;
  if (h.k <= 0 || h.n <= 0 || h.group <= 0 || h.k > kMaxDim || h.n > kMaxDim || h.k % 2 != 0 ||
      (h.group != h.k && (h.k % h.group != 0 || h.group % 32 != 0))) {
    return "corrupt header (sizes)";
  }
  *out = w4_layout(h.k, h.n, h.group, (h.flags & kFlagBias) != 0, (h.flags & kFlagScalesBf16) != 0, zeros);
  // Every field must be the one the packer writes for these sizes and flags: a flipped bit
  // anywhere in the header is refused rather than read as another layout.
  const uint32_t want_flags = (out->has_bias ? kFlagBias : 0u) | (colsum16(*out) ? kFlagColsum16 : 0u) |
                              (out->scales_bf16 ? kFlagScalesBf16 : 0u) | (zeros ? kFlagZeros : 0u);
  if (h.flags != want_flags) return "corrupt header (flags)";
  if (out->total_bytes != h.total_bytes || out->off_weights != h.off_weights || out->off_scales != h.off_scales ||
      out->off_colsum != h.off_colsum || out->off_bias != h.off_bias || out->off_zeros != h.off_zeros) {
    return "corrupt header (layout)";
  }
  for (size_t i = sizeof(h); i < static_cast<size_t>(kW4HeaderBytes); ++i) {
    if (data[i] != 0) return "corrupt header (reserved bytes)";
  }
  if (nbytes < h.total_bytes) return "the buffer is truncated";
  return nullptr;
}

bool w4_colsum16(const W4Layout& L) { return colsum16(L); }

void w4_pack_zeros(const W4Layout& L, const void* zeros, bool zeros_bf16, uint8_t* out, int64_t n_begin,
                   int64_t n_end) {
  for (int64_t j = n_begin; j < std::min(round_up(n_end, kNzCols), L.n_pad); ++j) {
    for (int64_t g = 0; g < L.groups; ++g) {
      const int64_t at = j * L.groups + g, idx = w4_group_index(L.groups, g, j);
      if (L.scales_bf16) {
        // bf16 storage takes bf16 input only (the op converts): exact, as the scales
        reinterpret_cast<uint16_t*>(out + L.off_zeros)[idx] = j < L.n ? static_cast<const uint16_t*>(zeros)[at] : uint16_t{0};
      } else {
        reinterpret_cast<float*>(out + L.off_zeros)[idx] =
            j >= L.n ? 0.0f
            : zeros_bf16 ? bf16_to_f32(static_cast<const uint16_t*>(zeros)[at])
                         : static_cast<const float*>(zeros)[at];
      }
    }
  }
}

float w4_zero_at(const uint8_t* packed, const W4Layout& L, int64_t g, int64_t j) {
  if (!L.has_zeros) return 0.0f;
  const int64_t idx = w4_group_index(L.groups, g, j);
  return L.scales_bf16 ? bf16_to_f32(reinterpret_cast<const uint16_t*>(packed + L.off_zeros)[idx])
                       : reinterpret_cast<const float*>(packed + L.off_zeros)[idx];
}

}  // namespace qdev::kernels
