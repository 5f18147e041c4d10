// Shared helpers of the torch-free kernel layer: no torch, no c10, no Python.
// Header helpers are `static inline`: files compiled with different ISA flags
// must never share (and let the linker merge) one copy of a function.
#pragma once

#include <cstdint>
#include <cstring>

namespace qdev::kernels {

static inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
static inline int64_t div_up(int64_t v, int64_t m) { return (v + m - 1) / m; }

static inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// float32 -> bfloat16 bits, round to nearest even; NaN stays a quiet NaN.
static inline uint16_t f32_to_bf16_rne(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// float32 -> IEEE half bits, round to nearest even (what F16C's vcvtps2ph does).
uint16_t f32_to_f16_rne(float f);
float f16_to_f32(uint16_t h);
static inline float bf16_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }

}  // namespace qdev::kernels
