// torch-free CUDA kernels of torch_qdev: raw device pointers, a stream, and a
// status code back (no exceptions, no torch). The op glue (csrc/aten/cuda)
// validates tensors, lays them out as documented here and maps the codes to
// messages. Every launcher is asynchronous on `stream` and checks only what it
// needs to stay in bounds.
//
// This header compiles without the CUDA toolkit (cudaStream_t is declared the
// way the CUDA runtime declares it), so host code and a host-only check can use it.
#pragma once

#include <cstdint>

#include "qd_cuda_w4_layout.h"

typedef struct CUstream_st* cudaStream_t;

namespace qdev::cuda_kernels {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // a contract below is broken (alignment, strides, sizes)
  kUnsupported = 2,      // a valid request these kernels do not implement
  kLaunchFailed = 3,     // the CUDA runtime refused the launch (see cuda_error_text)
};
const char* status_text(Status s);
// The CUDA runtime's text for the last failed launch on this thread ("" if none).
const char* cuda_error_text();

// ---------------------------------------------------------------------------
// A8W8: C = epilogue(A (m x k, int8) @ B^T (B: n x k, int8)), batched.
//
// Layout contract (the glue makes copies where a tensor does not satisfy it):
//   A rows: lda bytes apart, B rows (one per output column): ldb bytes apart;
//   lda, ldb multiples of 16 and >= round_up(k, 16); base pointers 16-byte
//   aligned; rows readable up to round_up(k, 16) (bytes past k are ignored).
//   Batch b uses A + b*a_batch_stride, B + b*b_batch_stride (0 = shared),
//   C + b*c_batch_stride; C rows are ldc elements apart.
//
// Epilogue per element (row r of the batch, column j), identical to the CPU
// reference (matmul/qd_qgemm.h, qgemm_epilogue_ref):
//   t = acc + bias_i32[j]                               (int32, wrapping)
//   kInt32:  t
//   kInt8:   clamp(clamp(rint(float(t) * s[j]), -256, 255) + offset[j], -128, 127)
//   kFloat16/kBFloat16: round_nearest_even(((float(t) * s[j]) * pertoken[r % period]) + bias_f[j])
// where s[j] is the float32 scale (optionally truncated to torch_npu's 19 bits),
// a bfloat16 scale widened, or the scale decoded from torch_npu's packed int64
// (which also carries the 9-bit offset). No FMA contraction anywhere.
// ---------------------------------------------------------------------------
enum class GemmOut : int { kInt32 = 0, kInt8 = 1, kFloat16 = 2, kBFloat16 = 3 };
enum class ScaleKind : int { kNone = 0, kFloat32 = 1, kBFloat16 = 2, kPackedInt64 = 3 };
enum class BiasKind : int { kNone = 0, kInt32 = 1, kFloat16 = 2, kBFloat16 = 3, kFloat32 = 4 };

struct GemmEpilogue {
  GemmOut out = GemmOut::kInt32;
  ScaleKind scale_kind = ScaleKind::kNone;
  const void* scale = nullptr;  // per column (scale_per_column) or one value
  bool scale_per_column = false;
  bool scale_fp19 = false;      // float32 scale truncated to 19 bits (torch_npu's int8/fp16 path)
  const float* offset = nullptr;  // float32 offsets (int8 output; rint + 9-bit clamp on device)
  bool offset_per_column = false;
  const float* pertoken = nullptr;  // per row; index r % pertoken_period
  int64_t pertoken_period = 0;
  BiasKind bias_kind = BiasKind::kNone;
  const void* bias = nullptr;  // per column; + b * bias_batch_stride elements for batch b
  int64_t bias_batch_stride = 0;
};

struct GemmArgs {
  int64_t batches = 1, m = 0, n = 0, k = 0;
  const int8_t* a = nullptr;
  int64_t lda = 0, a_batch_stride = 0;
  const int8_t* b = nullptr;
  int64_t ldb = 0, b_batch_stride = 0;
  void* c = nullptr;
  int64_t ldc = 0, c_batch_stride = 0;
  GemmEpilogue ep;
};

// Picks the kernel: the streaming GEMV for m <= 16 (weights read once), the
// tiled tensor-core GEMM otherwise. `sm_count` sizes the grid heuristics.
Status qgemm_s8(const GemmArgs& args, int sm_count, cudaStream_t stream);
// The two kernels, callable directly (tests and benchmarks pin one).
Status qgemm_s8_tiled(const GemmArgs& args, cudaStream_t stream);
Status qgemm_s8_gemv(const GemmArgs& args, cudaStream_t stream);  // m <= 16
// Hopper's wgmma variant of the tiled GEMM (qd_qgemm_s8_sm90a.cu; only in builds
// with an sm_90a target, where QD_HAVE_WGMMA is defined). qgemm_s8 takes it for
// m > 16 on compute capability 9.x when QDEV_CUDA_WGMMA=1 (opt-in until it has
// been verified on hardware).
bool qgemm_s8_wgmma_available(int device);
Status qgemm_s8_wgmma(const GemmArgs& args, cudaStream_t stream);

// ---------------------------------------------------------------------------
// npu_trans_quant_param: out[i] = packed int64 of (scale[i % ns], offset[i % no]).
// ns, no are 1 or n (broadcast); offset may be null. round_mode 0 or 1.
// ---------------------------------------------------------------------------
Status trans_quant_param(const float* scale, int64_t ns, const float* offset, int64_t no, int64_t n,
                         int round_mode, int64_t* out, cudaStream_t stream);

// ---------------------------------------------------------------------------
// npu_dynamic_quant, per-token mode: per row xs = float(x) * smooth, then
//   symmetric:  scale = max|xs| * (1 / dst_max),            q = rint(xs / scale)
//   asymmetric: scale = (max - min) / (dst_max - dst_min),  offset = dst_max - max / scale,
//               q = rint(xs / scale + offset)
// saturated to [dst_min, dst_max]; scale 0 gives q = 0. int4 output packs 8
// values per int32 word, least significant nibble first (h % 8 == 0).
// x: rows x h contiguous; q: rows x h int8 or rows x h/8 int32.
// ---------------------------------------------------------------------------
enum class FloatKind : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
struct DynamicQuantArgs {
  const void* x = nullptr;
  FloatKind x_kind = FloatKind::kFloat32;
  int64_t rows = 0, h = 0;
  const void* smooth = nullptr;  // h values of x_kind, or null
  float dst_max = 127.0f, dst_min = -128.0f;
  bool asymmetric = false;
  bool int4_out = false;
  void* q = nullptr;
  float* scale = nullptr;   // per row
  float* offset = nullptr;  // per row (asymmetric)
};
Status dynamic_quant_rows(const DynamicQuantArgs& args, cudaStream_t stream);

// ---------------------------------------------------------------------------
// W4A8 dynamic (aten::_dyn_quant_matmul_4bit numerics, see qd_cuda_w4_layout.h):
//   q, zp, recip = qai8dx(x) per row (nudged zero point, as the CPU packer)
//   y[m, n] = ((sum_g float(iacc_g) * s[g, n]) * recip[m]) + bias[n]
//   iacc_g  = sum_{k in g} (q - zp) * w  = sum q*w - zp * sum w     (exact int32)
// Groups are summed in order in float32 by one thread per output element, as
// the CPU reference does, so outputs match it bit for bit.
// ---------------------------------------------------------------------------

// Packs torch's format (weights uint8 (N, K/2) row-major, low nibble = even k,
// nibble = w + 8; scales (N, K/group) fp32 or bf16; bias fp32 (N) or null) into
// the family-2 buffer `out` (L.total_bytes, device memory), header included.
Status w4_cuda_pack(const qdev::kernels::W4CudaLayout& L, const uint8_t* weights, const void* scales,
                    bool scales_bf16_in, const float* bias, uint8_t* out, cudaStream_t stream);

// Row quantization: x (rows x k, fp32 or bf16, row stride ldx elements) ->
// q (rows x k_pad int8, zero padded; k_pad a multiple of 128), recip and zp per
// row. `decode_order` stores each 128-k chunk as [lane q: 4][k-step s: 4][half: 2][byte j: 4]
// holding k = 32s + 16*half + 4q + j (lane q of the decode kernel then loads
// its a0/a2 fragments of all four k-steps with two 128-bit loads); otherwise
// natural k order.
Status w4a8_quant_rows(const void* x, bool x_bf16, int64_t rows, int64_t k, int64_t ldx, int64_t k_pad,
                       bool decode_order, int8_t* q, float* recip, int32_t* zp, cudaStream_t stream);

struct W4A8Args {
  int64_t m = 0;
  const uint8_t* packed = nullptr;  // device buffer, family 2
  qdev::kernels::W4CudaLayout L;
  const int8_t* q = nullptr;        // m x L.k_pad (order per the kernel, see above)
  const float* recip = nullptr;
  const int32_t* zp = nullptr;
  void* out = nullptr;              // m x ldo, fp32, or bf16 bits (truncated, as torch's x86 path)
  bool out_bf16 = false;
  int64_t ldo = 0;
};
// m <= 16; q in decode order.
Status w4a8_decode(const W4A8Args& args, cudaStream_t stream);
// any m; q in natural order.
Status w4a8_prefill(const W4A8Args& args, cudaStream_t stream);
// Whether w4a8_decode is the kernel for m rows (the glue quantizes accordingly).
static inline bool w4a8_use_decode(int64_t m) { return m <= 16; }

}  // namespace qdev::cuda_kernels
