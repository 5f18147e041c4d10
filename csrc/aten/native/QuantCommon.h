// Numerics shared by the quantized ops: torch_npu's packed int64 scale
// (npu_trans_quant_param) and its decoding, int4 word (un)packing, and small
// tensor helpers.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "../../kernels/common/qd_common.h"

namespace at::native::qdev {

constexpr uint32_t kScaleMask = 0xFFFFE000u;  // keep sign, exponent and 10 mantissa bits
constexpr int64_t kQuantFlag = int64_t{1} << 46;

using ::qdev::kernels::f32_bits;
inline uint32_t float_bits(float f) { return f32_bits(f); }
inline float bits_float(uint32_t u) { return ::qdev::kernels::f32_from_bits(u); }

// float32 -> FP19 (1/8/10) bits in a float32 frame: truncation (round_mode 0) or
// round-to-nearest-even on the 13 dropped bits (round_mode 1).
inline uint32_t fp19_bits(float scale, int64_t round_mode) {
  uint32_t u = float_bits(scale);
  if (round_mode == 1) {
    const uint32_t exp = (u >> 23) & 0xFFu;
    if (exp == 0) return u & 0x80000000u;  // zero and subnormals: signed zero
    if (exp != 0xFFu) {
      const bool round = u & 0x1000u, sticky = u & 0x0FFFu, lsb = u & 0x2000u;
      if (round && (sticky || lsb)) u += 0x2000u;  // a carry may reach the exponent (up to inf)
    }
  }
  return u & kScaleMask;
}

// 9-bit offset: round half to even, then clamp to [-256, 255].
inline int32_t offset9(float offset) {
  float r = std::nearbyint(offset);
  r = std::min(std::max(r, -256.0f), 255.0f);
  return static_cast<int32_t>(r);
}

inline int64_t pack_quant_param(float scale, float offset, bool has_offset, int64_t round_mode) {
  int64_t v = static_cast<int64_t>(fp19_bits(scale, round_mode)) | kQuantFlag;
  if (has_offset) v |= static_cast<int64_t>(offset9(offset) & 0x1FF) << 37;
  return v;
}

inline float unpack_scale(int64_t packed) {
  return bits_float(static_cast<uint32_t>(packed) & kScaleMask);
}
inline int32_t unpack_offset(int64_t packed) {
  int32_t o = static_cast<int32_t>((packed >> 37) & 0x1FF);
  return o >= 256 ? o - 512 : o;  // sign-extend 9 bits
}

inline bool defined(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// A required Tensor argument given as None reaches the op as an undefined tensor:
// refuse it with Python's wording (a TypeError) before anything reads its dtype.
inline void check_required(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.defined(), op, "(): argument '", name, "' must be Tensor, not None");
}

// "torch.int8" etc., as torch_npu's messages spell dtypes.
inline std::string dtype_name(at::ScalarType t) {
  return std::string("torch.") + std::string(c10::getDtypeNames(t).first);
}

// torch_npu's int4 layout: 8 signed nibbles per int32 word, LSB first. The
// values are in [-8, 7] already; only their low 4 bits are kept.
template <typename T>
inline void pack_int4_words(const T* values, uint32_t* words, int64_t n_words) {
  for (int64_t i = 0; i < n_words; ++i) {
    uint32_t w = 0;
    for (int j = 0; j < 8; ++j) w |= (static_cast<uint32_t>(values[i * 8 + j]) & 0xFu) << (4 * j);
    words[i] = w;
  }
}

// Grain for at::parallel_for over `tasks` units of `work_per_task` (multiply-adds, or elements
// for passes that touch each element once): a few tasks per thread for balance, but never under
// `min_task_work` per task, because a parallel region costs microseconds quiet and a whole
// timeslice when another process holds a core. Decode-sized work (one token's row, a small
// weight) therefore runs inline on the calling thread instead of waking the pool.
constexpr int64_t kMinTaskMacs = int64_t{1} << 20;
constexpr int64_t kMinTaskElems = int64_t{1} << 15;  // ATen's elementwise GRAIN_SIZE
inline int64_t parallel_grain(int64_t tasks, int64_t work_per_task, int64_t min_task_work = kMinTaskMacs) {
  const int64_t balance = tasks / (4 * std::max(1, at::get_num_threads()));
  const int64_t by_work = min_task_work / std::max<int64_t>(1, work_per_task);
  return std::max<int64_t>({int64_t{1}, balance, by_work});
}

// int32 words of 8 int4 along the last dim -> a CPU int8 tensor, last dim x8.
inline at::Tensor unpack_int4(const at::Tensor& packed) {
  const at::Tensor src = packed.contiguous();
  auto sizes = src.sizes().vec();
  sizes.back() *= 8;
  at::Tensor out = at::empty(sizes, src.options().dtype(at::kChar).device(at::kCPU));
  const uint32_t* s = reinterpret_cast<const uint32_t*>(src.const_data_ptr<int32_t>());
  int8_t* d = out.mutable_data_ptr<int8_t>();
  at::parallel_for(0, src.numel(), parallel_grain(src.numel(), 8, kMinTaskElems), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const uint32_t w = s[i];
      for (int j = 0; j < 8; ++j) {
        const int32_t nib = static_cast<int32_t>((w >> (4 * j)) & 0xFu);
        d[i * 8 + j] = static_cast<int8_t>(nib > 7 ? nib - 16 : nib);
      }
    }
  });
  return out;
}

}  // namespace at::native::qdev
