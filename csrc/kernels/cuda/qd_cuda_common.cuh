// Device helpers shared by the CUDA kernels: PTX wrappers (cp.async, ldmatrix,
// int8 mma), exact float conversions and the launch-status plumbing.
// Arithmetic that must match the CPU reference bit for bit uses the explicit
// round-to-nearest intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn), which the
// compiler never fuses into FMAs.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "qd_cuda_kernels.h"

namespace qdev::cuda_kernels {

// Records the CUDA error of a launch (if any) for cuda_error_text(); returns the status.
Status launch_status(cudaError_t err);

namespace dev {

// --- asynchronous global -> shared copies (sm80+) ----------------------------
// 16 bytes from `src`, of which only `src_bytes` (0..16) are read; the rest of
// the destination is zero-filled. src must be 16-byte aligned.
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* src, int src_bytes) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// --- ldmatrix: four 8x8 b16 matrices = four 8-row x 16-byte int8 tiles --------
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// --- int8 tensor-core MMA: D(16x8 s32) += A(16x32 s8, row) * B(32x8 s8, col) --
// Fragments (gid = lane / 4, tig = lane % 4):
//   a0: row gid,   k 4tig..4tig+3      a1: row gid+8, same k
//   a2: row gid,   k 16+4tig..         a3: row gid+8, k 16+4tig..
//   b0: col gid,   k 4tig..4tig+3      b1: col gid,   k 16+4tig..
//   c0,c1: row gid, cols 2tig, 2tig+1  c2,c3: row gid+8, same cols
__device__ __forceinline__ void mma_s8_16832(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// --- exact conversions ---------------------------------------------------------
__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }
__device__ __forceinline__ float f16_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ uint16_t float_to_f16_bits(float f) { return __half_as_ushort(__float2half_rn(f)); }
__device__ __forceinline__ uint16_t float_to_bf16_bits(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
__device__ __forceinline__ float load_float(const void* p, FloatKind kind, int64_t i) {
  switch (kind) {
    case FloatKind::kFloat16: return f16_bits_to_float(static_cast<const uint16_t*>(p)[i]);
    case FloatKind::kBFloat16: return bf16_bits_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// torch_npu's scale truncation to 19 bits (sign, exponent, 10 mantissa bits).
constexpr uint32_t kFp19Mask = 0xFFFFE000u;
// The 9-bit offset of a packed int64 scale (bits 37..45, two's complement).
__device__ __forceinline__ int32_t packed_offset9(int64_t packed) {
  const int32_t o = static_cast<int32_t>((packed >> 37) & 0x1FF);
  return o >= 256 ? o - 512 : o;
}
// A float32 offset as the 9-bit integer: round half even, clamp to [-256, 255].
__device__ __forceinline__ int32_t float_offset9(float o) {
  const float r = fminf(fmaxf(rintf(o), -256.0f), 255.0f);
  return static_cast<int32_t>(r);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

}  // namespace dev
}  // namespace qdev::cuda_kernels
