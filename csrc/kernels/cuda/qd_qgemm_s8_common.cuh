// The A8W8 GEMM kernels' shared pieces: the fused output stage (per element,
// in the CPU reference's operation order) and the host-side argument checks.
#pragma once

#include "qd_cuda_common.cuh"

namespace qdev::cuda_kernels::gemm {

using namespace dev;

// --- the fused output stage ----------------------------------------------------
struct OutCtx {
  GemmEpilogue ep;
  void* c;
  int64_t ldc, c_batch_stride, m, n;
  bool pair_stores;  // two adjacent outputs can be written as one aligned vector
};

__device__ __forceinline__ float column_scale(const GemmEpilogue& ep, int64_t j) {
  const int64_t i = ep.scale_per_column ? j : 0;
  switch (ep.scale_kind) {
    case ScaleKind::kFloat32: {
      const float s = static_cast<const float*>(ep.scale)[i];
      return ep.scale_fp19 ? __uint_as_float(__float_as_uint(s) & kFp19Mask) : s;
    }
    case ScaleKind::kBFloat16: return bf16_bits_to_float(static_cast<const uint16_t*>(ep.scale)[i]);
    case ScaleKind::kPackedInt64:
      return __uint_as_float(static_cast<uint32_t>(static_cast<const int64_t*>(ep.scale)[i]) & kFp19Mask);
    default: return 1.0f;
  }
}

__device__ __forceinline__ int32_t column_offset(const GemmEpilogue& ep, int64_t j) {
  if (ep.offset) return float_offset9(ep.offset[ep.offset_per_column ? j : 0]);
  if (ep.scale_kind == ScaleKind::kPackedInt64) {
    return packed_offset9(static_cast<const int64_t*>(ep.scale)[ep.scale_per_column ? j : 0]);
  }
  return 0;
}

__device__ __forceinline__ float bias_float(const GemmEpilogue& ep, int64_t batch, int64_t j) {
  const int64_t i = batch * ep.bias_batch_stride + j;
  switch (ep.bias_kind) {
    case BiasKind::kFloat16: return f16_bits_to_float(static_cast<const uint16_t*>(ep.bias)[i]);
    case BiasKind::kBFloat16: return bf16_bits_to_float(static_cast<const uint16_t*>(ep.bias)[i]);
    case BiasKind::kFloat32: return static_cast<const float*>(ep.bias)[i];
    default: return 0.0f;
  }
}

// Output value of one element as raw bits (int8 / int32 / fp16 / bf16).
__device__ __forceinline__ uint32_t output_bits(const GemmEpilogue& ep, int32_t acc, int64_t batch, int64_t row,
                                                int64_t j) {
  int32_t t = acc;
  if (ep.bias_kind == BiasKind::kInt32) {
    t = static_cast<int32_t>(static_cast<uint32_t>(t) +
                             static_cast<uint32_t>(static_cast<const int32_t*>(ep.bias)[batch * ep.bias_batch_stride + j]));
  }
  switch (ep.out) {
    case GemmOut::kInt32: return static_cast<uint32_t>(t);
    case GemmOut::kInt8: {
      float v = __fmul_rn(static_cast<float>(t), column_scale(ep, j));
      v = fminf(fmaxf(v, -256.0f), 255.0f);  // torch_npu's 9-bit intermediate
      int32_t q = __float2int_rn(v) + column_offset(ep, j);
      q = min(max(q, -128), 127);
      return static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(q)));
    }
    default: {
      float f = static_cast<float>(t);
      if (ep.scale_kind != ScaleKind::kNone) f = __fmul_rn(f, column_scale(ep, j));
      if (ep.pertoken) f = __fmul_rn(f, ep.pertoken[row % ep.pertoken_period]);
      if (ep.bias_kind != BiasKind::kNone && ep.bias_kind != BiasKind::kInt32) f = __fadd_rn(f, bias_float(ep, batch, j));
      return ep.out == GemmOut::kFloat16 ? float_to_f16_bits(f) : float_to_bf16_bits(f);
    }
  }
}

__device__ __forceinline__ int out_bytes(GemmOut o) {
  return o == GemmOut::kInt32 ? 4 : o == GemmOut::kInt8 ? 1 : 2;
}

__device__ __forceinline__ void store_one(const OutCtx& o, int64_t batch, int64_t row, int64_t col, uint32_t v) {
  const int64_t at = batch * o.c_batch_stride + row * o.ldc + col;
  switch (out_bytes(o.ep.out)) {
    case 4: static_cast<uint32_t*>(o.c)[at] = v; break;
    case 2: static_cast<uint16_t*>(o.c)[at] = static_cast<uint16_t>(v); break;
    default: static_cast<uint8_t*>(o.c)[at] = static_cast<uint8_t>(v);
  }
}

// Columns col and col + 1 of one row (col even).
__device__ __forceinline__ void store_pair(const OutCtx& o, int64_t batch, int64_t row, int64_t col, int32_t acc0,
                                           int32_t acc1) {
  if (row >= o.m || col >= o.n) return;
  const uint32_t v0 = output_bits(o.ep, acc0, batch, row, col);
  if (col + 1 >= o.n) {
    store_one(o, batch, row, col, v0);
    return;
  }
  const uint32_t v1 = output_bits(o.ep, acc1, batch, row, col + 1);
  if (!o.pair_stores) {
    store_one(o, batch, row, col, v0);
    store_one(o, batch, row, col + 1, v1);
    return;
  }
  const int64_t at = batch * o.c_batch_stride + row * o.ldc + col;
  switch (out_bytes(o.ep.out)) {
    case 4: reinterpret_cast<uint2*>(static_cast<uint32_t*>(o.c) + at)[0] = make_uint2(v0, v1); break;
    case 2: reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(o.c) + at)[0] = v0 | (v1 << 16); break;
    default: reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(o.c) + at)[0] = static_cast<uint16_t>(v0 | (v1 << 8));
  }
}

inline int out_size(GemmOut o) { return o == GemmOut::kInt32 ? 4 : o == GemmOut::kInt8 ? 1 : 2; }

inline Status validate(const GemmArgs& g) {
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batches < 1) return Status::kInvalidArgument;
  if (!g.a || !g.b || !g.c) return Status::kInvalidArgument;
  const int64_t k16 = (g.k + 15) / 16 * 16;
  if (g.lda % 16 || g.ldb % 16 || g.lda < k16 || g.ldb < k16) return Status::kInvalidArgument;
  if (g.a_batch_stride % 16 || g.b_batch_stride % 16) return Status::kInvalidArgument;
  if (reinterpret_cast<uintptr_t>(g.a) % 16 || reinterpret_cast<uintptr_t>(g.b) % 16) return Status::kInvalidArgument;
  if (g.ldc < g.n) return Status::kInvalidArgument;
  const GemmEpilogue& ep = g.ep;
  if (ep.out != GemmOut::kInt32 && ep.scale_kind == ScaleKind::kNone) return Status::kInvalidArgument;
  if (ep.scale_kind != ScaleKind::kNone && !ep.scale) return Status::kInvalidArgument;
  if (ep.pertoken && ep.pertoken_period <= 0) return Status::kInvalidArgument;
  if (ep.bias_kind != BiasKind::kNone && !ep.bias) return Status::kInvalidArgument;
  if (g.batches > 65535) return Status::kUnsupported;
  return Status::kOk;
}

inline OutCtx make_out(const GemmArgs& g) {
  OutCtx o;
  o.ep = g.ep;
  o.c = g.c;
  o.ldc = g.ldc;
  o.c_batch_stride = g.c_batch_stride;
  o.m = g.m;
  o.n = g.n;
  const int e = out_size(g.ep.out);
  o.pair_stores = g.ldc % 2 == 0 && g.c_batch_stride % 2 == 0 && reinterpret_cast<uintptr_t>(g.c) % (2 * e) == 0;
  return o;
}

}  // namespace qdev::cuda_kernels::gemm
