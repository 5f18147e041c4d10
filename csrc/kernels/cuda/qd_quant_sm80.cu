// npu_dynamic_quant (per-token rows) and npu_trans_quant_param on CUDA.
// Both repeat the CPU reference's float operations one by one (explicitly
// rounded intrinsics, no FMA), so their outputs are bit-identical to it.
#include "qd_cuda_common.cuh"

namespace qdev::cuda_kernels {
namespace {

using namespace dev;

constexpr int kRowThreads = 256;

__device__ __forceinline__ float smoothed(const DynamicQuantArgs& a, const void* xr, int64_t i) {
  float v = load_float(xr, a.x_kind, i);
  if (a.smooth) v = __fmul_rn(v, load_float(a.smooth, a.x_kind, i));
  return v;
}

__device__ __forceinline__ int32_t quantize(const DynamicQuantArgs& a, float xs, float scale, float offset) {
  if (scale == 0.0f) return 0;
  float v = __fdiv_rn(xs, scale);
  if (a.asymmetric) v = __fadd_rn(v, offset);
  v = fminf(fmaxf(rintf(v), a.dst_min), a.dst_max);
  return static_cast<int32_t>(v);
}

__global__ void __launch_bounds__(kRowThreads) dynamic_quant_rows_kernel(DynamicQuantArgs a) {
  __shared__ float red[3][kRowThreads / 32];
  const int64_t row = blockIdx.x;
  const int esize = a.x_kind == FloatKind::kFloat32 ? 4 : 2;
  const void* xr = static_cast<const uint8_t*>(a.x) + row * a.h * esize;
  float mx = -INFINITY, mn = INFINITY, amax = 0.0f;
  for (int64_t i = threadIdx.x; i < a.h; i += kRowThreads) {
    const float v = smoothed(a, xr, i);
    mx = fmaxf(mx, v);
    mn = fminf(mn, v);
    amax = fmaxf(amax, fabsf(v));
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, off));
    mn = fminf(mn, __shfl_xor_sync(0xFFFFFFFFu, mn, off));
    amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, off));
  }
  if ((threadIdx.x & 31) == 0) {
    red[0][threadIdx.x >> 5] = mx;
    red[1][threadIdx.x >> 5] = mn;
    red[2][threadIdx.x >> 5] = amax;
  }
  __syncthreads();
  mx = red[0][0];
  mn = red[1][0];
  amax = red[2][0];
#pragma unroll
  for (int w = 1; w < kRowThreads / 32; ++w) {
    mx = fmaxf(mx, red[0][w]);
    mn = fminf(mn, red[1][w]);
    amax = fmaxf(amax, red[2][w]);
  }
  float scale, offset = 0.0f;
  if (a.asymmetric) {
    scale = __fdiv_rn(__fsub_rn(mx, mn), __fsub_rn(a.dst_max, a.dst_min));
    offset = scale == 0.0f ? 0.0f : __fsub_rn(a.dst_max, __fdiv_rn(mx, scale));
  } else {
    scale = __fmul_rn(amax, __fdiv_rn(1.0f, a.dst_max));
  }
  if (a.int4_out) {
    uint32_t* out = static_cast<uint32_t*>(a.q) + row * (a.h / 8);
    for (int64_t w = threadIdx.x; w < a.h / 8; w += kRowThreads) {
      uint32_t word = 0;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int32_t v = quantize(a, smoothed(a, xr, w * 8 + j), scale, offset);
        word |= (static_cast<uint32_t>(v) & 0xFu) << (4 * j);
      }
      out[w] = word;
    }
  } else {
    int8_t* out = static_cast<int8_t*>(a.q) + row * a.h;
    for (int64_t i = threadIdx.x; i < a.h; i += kRowThreads) {
      out[i] = static_cast<int8_t>(quantize(a, smoothed(a, xr, i), scale, offset));
    }
  }
  if (threadIdx.x == 0) {
    a.scale[row] = scale;
    if (a.offset) a.offset[row] = offset;
  }
}

// torch_npu's FP19 scale: truncation (round_mode 0) or round half to even on
// the 13 dropped bits (round_mode 1; zero and subnormals become signed zero).
__device__ __forceinline__ uint32_t fp19_bits(float scale, int round_mode) {
  uint32_t u = __float_as_uint(scale);
  if (round_mode == 1) {
    const uint32_t exp = (u >> 23) & 0xFFu;
    if (exp == 0) return u & 0x80000000u;
    if (exp != 0xFFu) {
      const bool round = u & 0x1000u, sticky = u & 0x0FFFu, lsb = u & 0x2000u;
      if (round && (sticky || lsb)) u += 0x2000u;
    }
  }
  return u & kFp19Mask;
}

__global__ void trans_quant_param_kernel(const float* scale, int64_t ns, const float* offset, int64_t no, int64_t n,
                                         int round_mode, int64_t* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  int64_t v = static_cast<int64_t>(fp19_bits(scale[ns == 1 ? 0 : i], round_mode)) | (int64_t{1} << 46);
  if (offset) v |= static_cast<int64_t>(float_offset9(offset[no == 1 ? 0 : i]) & 0x1FF) << 37;
  out[i] = v;
}

}  // namespace

Status dynamic_quant_rows(const DynamicQuantArgs& a, cudaStream_t stream) {
  if (!a.x || !a.q || !a.scale || a.rows < 0 || a.h <= 0) return Status::kInvalidArgument;
  if (a.asymmetric && !a.offset) return Status::kInvalidArgument;
  if (a.int4_out && a.h % 8) return Status::kInvalidArgument;
  if (a.rows == 0) return Status::kOk;
  if (a.rows > 0x7FFFFFFF) return Status::kUnsupported;
  dynamic_quant_rows_kernel<<<static_cast<unsigned>(a.rows), kRowThreads, 0, stream>>>(a);
  return launch_status(cudaGetLastError());
}

Status trans_quant_param(const float* scale, int64_t ns, const float* offset, int64_t no, int64_t n, int round_mode,
                         int64_t* out, cudaStream_t stream) {
  if (!scale || !out || n < 0 || ns < 1 || (offset && no < 1)) return Status::kInvalidArgument;
  if (round_mode != 0 && round_mode != 1) return Status::kInvalidArgument;
  if (n == 0) return Status::kOk;
  const int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 0x7FFFFFFF) return Status::kUnsupported;
  trans_quant_param_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(scale, ns, offset, no, n, round_mode,
                                                                                 out);
  return launch_status(cudaGetLastError());
}

}  // namespace qdev::cuda_kernels
