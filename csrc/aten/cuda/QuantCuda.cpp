// The qdev:: quantized ops for CUDA tensors: npu_quant_matmul (A8W8, A4W4),
// npu_dynamic_quant(_asymmetric), npu_trans_quant_param and the W4A8 dynamic
// pair dyn_quant_pack_4bit_weight / dyn_quant_matmul_4bit.
//
// Glue only, as the CPU glue: the same argument checks (QuantPlans.h, same
// messages), then operands laid out for the torch-free kernels
// (csrc/kernels/cuda/qd_cuda_kernels.h), a launch on the current stream under
// a CUDAGuard, and status codes turned into errors. Built only when the
// installed torch has CUDA and nvcc exists (see CMakeLists.txt).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../kernels/cuda/qd_cuda_kernels.h"
#include "../../kernels/matmul/qd_w4a8.h"
#include "../native/QuantCommon.h"
#include "../native/QuantOps.h"
#include "../native/QuantPlans.h"

namespace at::native::qdev::cuda {
namespace {

namespace ck = ::qdev::cuda_kernels;
namespace qk = ::qdev::kernels;

void check_status(ck::Status s, const char* op) {
  TORCH_CHECK(s == ck::Status::kOk, op, " (CUDA kernel): ", ck::status_text(s),
              s == ck::Status::kLaunchFailed ? std::string(": ") + ck::cuda_error_text() : std::string());
}

// c10::cuda's current stream (what at::cuda::getCurrentCUDAStream returns); the
// c10/cuda headers keep this file free of ATen/cuda's cuBLAS/cuSPARSE includes.
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

int sm_count(c10::DeviceIndex device) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// An int8 (rows, k) matrix as the GEMM kernels read it: k-contiguous rows
// whose stride is a multiple of 16 and >= round_up(k, 16), 16-byte aligned,
// readable up to round_up(k, 16). Copied into a zero-padded buffer otherwise.
struct KernelRows {
  at::Tensor keep;
  const int8_t* ptr = nullptr;
  int64_t ld = 0;
};

KernelRows kernel_rows(const at::Tensor& t, int64_t k) {
  TORCH_INTERNAL_ASSERT(t.dim() == 2 && t.scalar_type() == at::kChar);
  const int64_t k16 = std::max<int64_t>(16, round_up(k, 16));
  bool usable = k > 0 && t.size(0) > 0 && t.stride(1) == 1 && t.stride(0) % 16 == 0 && t.stride(0) >= k16 &&
                reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
  if (usable) {
    const int64_t last_byte = t.storage_offset() + (t.size(0) - 1) * t.stride(0) + k16;
    usable = last_byte <= static_cast<int64_t>(t.storage().nbytes());
  }
  if (usable) return {t, t.const_data_ptr<int8_t>(), t.stride(0)};
  at::Tensor padded = at::zeros({t.size(0), k16}, t.options());
  if (k > 0) padded.narrow(1, 0, k).copy_(t);
  return {padded, padded.const_data_ptr<int8_t>(), k16};
}

// torch_npu's int4 packing (8 signed nibbles per int32 word, least significant
// first) -> int8 values, last dim x8, on the tensor's device.
at::Tensor unpack_int4_words(const at::Tensor& words) {
  const at::Tensor shifts = at::arange(0, 32, 4, words.options().dtype(at::kInt));
  const at::Tensor nib = words.unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and(0xF);
  return at::where(nib.gt(7), nib - 16, nib).to(at::kChar).flatten(-2);
}

at::Tensor quant_matmul_a4w4_group(const QuantMatmulPlan& p, const at::Tensor& x1, const at::Tensor& x2,
                                   const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                                   const at::Tensor& pertoken, at::Tensor out) {
  // y = pertoken * sum_g (x1_g @ (x2_g - offset_g)) * scale_g, as the CPU path
  // (float64 products: exact for the integer part, independent of TF32 settings).
  const at::Tensor xa = unpack_int4_words(x1).to(at::kDouble);
  const at::Tensor wb = (p.x2_k_packed ? unpack_int4_words(x2.transpose(-1, -2)).transpose(-1, -2)
                                       : unpack_int4_words(x2)).to(at::kDouble);
  const at::Tensor sc = scale.to(at::kFloat);
  at::Tensor acc = at::zeros({p.m, p.n}, x1.options().dtype(at::kFloat));
  for (int64_t g = 0, k0 = 0; k0 < p.k; ++g, k0 += p.group) {
    const int64_t len = std::min(p.group, p.k - k0);
    at::Tensor wg = wb.narrow(0, k0, len);
    if (defined(offset)) wg = wg.sub(offset->select(0, g).to(at::kDouble));
    acc.add_(at::matmul(xa.narrow(1, k0, len), wg).to(at::kFloat).mul(sc.select(0, g)));
  }
  acc.mul_(pertoken.to(at::kFloat).reshape({p.m, 1}));
  out.copy_(acc);
  return out;
}

at::Tensor npu_quant_matmul_cuda(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                                 const std::optional<at::Tensor>& offset,
                                 const std::optional<at::Tensor>& pertoken_scale,
                                 const std::optional<at::Tensor>& bias, std::optional<int64_t> output_dtype,
                                 std::optional<int64_t> x1_dtype, std::optional<int64_t> x2_dtype,
                                 std::optional<int64_t> pertoken_scale_dtype, std::optional<int64_t> scale_dtype,
                                 at::OptionalIntArrayRef group_sizes, const std::optional<at::Tensor>& y_scale) {
  const QuantMatmulPlan p = plan_quant_matmul(x1, x2, scale, offset, pertoken_scale, bias, output_dtype, x1_dtype,
                                              x2_dtype, pertoken_scale_dtype, scale_dtype, group_sizes, y_scale);
  TORCH_CHECK(x1.is_cuda(), "npu_quant_matmul: expected CUDA tensors, but x1 is on ", x1.device());
  TORCH_CHECK(!p.a8w4, "npu_quant_matmul: A8W4 (int8 x1 with int32-packed int4 x2) runs on CPU and qdev tensors; "
              "it has no CUDA kernel");
  const c10::cuda::CUDAGuard guard(x1.device());
  at::Tensor out = at::empty(p.out_shape, x1.options().dtype(p.out_dtype));
  if (out.numel() == 0) return out;
  if (p.a4w4_group) return quant_matmul_a4w4_group(p, x1, x2, scale, offset, *pertoken_scale, out);

  const int64_t m = p.m, k = p.k, n = p.n;
  // A4W4 runs the int8 kernels on the unpacked values (int4 products are int8 products).
  const at::Tensor a8 = p.a4w4 ? unpack_int4_words(x1) : x1;
  const at::Tensor b8 = !p.a4w4         ? x2
                        : p.x2_k_packed ? unpack_int4_words(x2.transpose(-1, -2)).transpose(-1, -2)
                                        : unpack_int4_words(x2);
  const int64_t batches = c10::multiply_integers(p.batch);
  const bool a_shared = c10::multiply_integers(a8.sizes().slice(0, a8.dim() - 2)) == 1;
  const bool b_shared = c10::multiply_integers(b8.sizes().slice(0, b8.dim() - 2)) == 1;
  const bool bias_per_batch = defined(bias) && bias->dim() == 3;
  // One weight and no per-batch bias: all batches form one tall GEMM.
  const bool flatten = b_shared && !bias_per_batch;

  KernelRows A;
  if (flatten || !a_shared) {
    std::vector<int64_t> a_shape = p.batch;
    a_shape.insert(a_shape.end(), {m, k});
    A = kernel_rows(a8.expand(a_shape).reshape({batches * m, k}), k);
  } else {
    A = kernel_rows(a8.reshape({m, k}), k);
  }
  // B as (n, k) rows: free when x2 is the transpose of an (n, k) weight
  // (LinearQuant's layout); a contiguous (k, n) x2 is transposed by a copy.
  KernelRows B;
  if (b_shared) {
    B = kernel_rows(b8.reshape({k, n}).t(), k);
  } else {
    std::vector<int64_t> b_shape = p.batch;
    b_shape.insert(b_shape.end(), {k, n});
    B = kernel_rows(b8.expand(b_shape).transpose(-1, -2).reshape({batches * n, k}), k);
  }

  ck::GemmArgs g;
  g.batches = flatten ? 1 : batches;
  g.m = flatten ? batches * m : m;
  g.n = n;
  g.k = k;
  g.a = A.ptr;
  g.lda = A.ld;
  g.a_batch_stride = (flatten || a_shared) ? 0 : m * A.ld;
  g.b = B.ptr;
  g.ldb = B.ld;
  g.b_batch_stride = b_shared ? 0 : n * B.ld;
  g.c = out.data_ptr();
  g.ldc = n;
  g.c_batch_stride = flatten ? 0 : m * n;

  ck::GemmEpilogue& ep = g.ep;
  const auto out_t = p.out_dtype;
  const bool has_pertoken = defined(pertoken_scale);
  ep.out = out_t == at::kInt ? ck::GemmOut::kInt32
           : out_t == at::kChar ? ck::GemmOut::kInt8
           : out_t == at::kHalf ? ck::GemmOut::kFloat16
                                : ck::GemmOut::kBFloat16;
  at::Tensor scale_c, offset_c, pertoken_c, bias_c;  // keep the device copies alive until the launch
  const auto st = scale.scalar_type();
  if (out_t != at::kInt) {  // int32 output: the scale does not enter (torch_npu)
    scale_c = scale.contiguous();
    ep.scale = scale_c.const_data_ptr();
    ep.scale_per_column = scale.numel() != 1;
    if (st == at::kLong) {
      ep.scale_kind = ck::ScaleKind::kPackedInt64;  // carries the offset; a float offset is ignored, as on CPU
    } else if (st == at::kFloat) {
      ep.scale_kind = ck::ScaleKind::kFloat32;
      // torch_npu converts a float32 scale with npu_trans_quant_param for int8
      // and float16 outputs without pertoken: the kernel sees a 19-bit scale.
      ep.scale_fp19 = !has_pertoken && (out_t == at::kChar || out_t == at::kHalf);
      if (defined(offset)) {
        offset_c = offset->contiguous();
        ep.offset = offset_c.const_data_ptr<float>();
        ep.offset_per_column = offset->numel() != 1;
      }
    } else {
      ep.scale_kind = ck::ScaleKind::kBFloat16;
    }
  }
  if (has_pertoken) {
    pertoken_c = pertoken_scale->contiguous();
    ep.pertoken = pertoken_c.const_data_ptr<float>();
    ep.pertoken_period = m;
  }
  if (defined(bias)) {
    bias_c = bias->contiguous();
    ep.bias = bias_c.const_data_ptr();
    ep.bias_batch_stride = bias_per_batch ? n : 0;
    switch (bias->scalar_type()) {
      case at::kInt: ep.bias_kind = ck::BiasKind::kInt32; break;
      case at::kHalf: ep.bias_kind = ck::BiasKind::kFloat16; break;
      case at::kBFloat16: ep.bias_kind = ck::BiasKind::kBFloat16; break;
      default: ep.bias_kind = ck::BiasKind::kFloat32;
    }
  }
  check_status(ck::qgemm_s8(g, sm_count(x1.device().index()), current_stream()), "npu_quant_matmul");
  return out;
}

std::vector<at::Tensor> dynamic_quant_cuda(const at::Tensor& input, const std::optional<at::Tensor>& smooth,
                                           const std::optional<at::Tensor>& group_index,
                                           std::optional<int64_t> dst_type, c10::string_view quant_mode,
                                           double dst_type_max, bool asym) {
  const DynamicQuantPlan p = plan_dynamic_quant(input, smooth, group_index, dst_type, quant_mode, dst_type_max);
  TORCH_CHECK(input.is_cuda(), "npu_dynamic_quant: expected a CUDA input, but it is on ", input.device());
  if (defined(group_index)) {
    TORCH_CHECK(group_index->device() == input.device(), "Expected all tensors to be on the same device, but "
                "found at least two devices, ", input.device(), " and ", group_index->device(), "!");
  }
  const c10::cuda::CUDAGuard guard(input.device());
  if (p.mode != DynamicQuantMode::kPerToken || defined(group_index)) {
    // Per-tensor, per-channel and MoE group_index modes run the CPU
    // implementation on host copies (correct, not fast; the CUDA kernel covers
    // the per-token hot path).
    auto cpu = [](const std::optional<at::Tensor>& t) {
      return defined(t) ? std::optional<at::Tensor>(t->cpu()) : std::nullopt;
    };
    std::vector<at::Tensor> r;
    if (asym) {
      auto [y, s, o] = npu_dynamic_quant_asymmetric(input.cpu(), cpu(smooth), cpu(group_index), dst_type, quant_mode,
                                                    dst_type_max);
      r = {y, s, o};
    } else {
      auto [y, s] = npu_dynamic_quant(input.cpu(), cpu(smooth), cpu(group_index), dst_type, quant_mode, dst_type_max);
      r = {y, s};
    }
    for (auto& t : r) t = t.to(input.device());
    return r;
  }
  const auto opts = input.options();
  at::Tensor y = at::empty(p.y_shape, opts.dtype(p.int4 ? at::kInt : at::kChar));
  at::Tensor scale = at::empty(p.scale_shape, opts.dtype(at::kFloat));
  at::Tensor offset = asym ? at::empty(p.scale_shape, opts.dtype(at::kFloat)) : at::Tensor();
  const int64_t rows = p.h == 0 ? 0 : input.numel() / p.h;
  if (rows > 0) {
    const at::Tensor x = input.contiguous();
    const at::Tensor sm = defined(smooth) ? smooth->contiguous() : at::Tensor();
    ck::DynamicQuantArgs a;
    a.x = x.const_data_ptr();
    a.x_kind = x.scalar_type() == at::kHalf       ? ck::FloatKind::kFloat16
               : x.scalar_type() == at::kBFloat16 ? ck::FloatKind::kBFloat16
                                                  : ck::FloatKind::kFloat32;
    a.rows = rows;
    a.h = p.h;
    a.smooth = sm.defined() ? sm.const_data_ptr() : nullptr;
    a.dst_max = p.dst_max;
    a.dst_min = p.dst_min;
    a.asymmetric = asym;
    a.int4_out = p.int4;
    a.q = y.data_ptr();
    a.scale = scale.mutable_data_ptr<float>();
    a.offset = asym ? offset.mutable_data_ptr<float>() : nullptr;
    check_status(ck::dynamic_quant_rows(a, current_stream()), "npu_dynamic_quant");
  }
  if (asym) return {y, scale, offset};
  return {y, scale};
}

std::tuple<at::Tensor, at::Tensor> npu_dynamic_quant_cuda(const at::Tensor& input,
                                                          const std::optional<at::Tensor>& smooth_scales,
                                                          const std::optional<at::Tensor>& group_index,
                                                          std::optional<int64_t> dst_type, c10::string_view quant_mode,
                                                          double dst_type_max) {
  auto r = dynamic_quant_cuda(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, false);
  return {r[0], r[1]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> npu_dynamic_quant_asymmetric_cuda(
    const at::Tensor& input, const std::optional<at::Tensor>& smooth_scales,
    const std::optional<at::Tensor>& group_index, std::optional<int64_t> dst_type, c10::string_view quant_mode,
    double dst_type_max) {
  auto r = dynamic_quant_cuda(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, true);
  return {r[0], r[1], r[2]};
}

at::Tensor npu_trans_quant_param_cuda(const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                                      std::optional<int64_t> round_mode) {
  const auto shape = trans_quant_param_shape(scale, offset, round_mode);
  const bool has_offset = defined(offset);
  if (has_offset) {
    TORCH_CHECK(offset->device() == scale.device(), "Expected all tensors to be on the same device, "
                "but found at least two devices, ", scale.device(), " and ", offset->device(), "!");
  }
  const c10::cuda::CUDAGuard guard(scale.device());
  const at::Tensor s = scale.contiguous();
  const at::Tensor o = has_offset ? offset->contiguous() : at::Tensor();
  at::Tensor out = at::empty(shape, scale.options().dtype(at::kLong));
  check_status(ck::trans_quant_param(s.const_data_ptr<float>(), s.numel(), has_offset ? o.const_data_ptr<float>() : nullptr,
                                     has_offset ? o.numel() : 0, out.numel(), static_cast<int>(round_mode.value_or(0)),
                                     out.mutable_data_ptr<int64_t>(), current_stream()),
               "npu_trans_quant_param");
  return out;
}

at::Tensor dyn_quant_pack_4bit_weight_cuda(const at::Tensor& weights, const at::Tensor& scales_zeros,
                                           const std::optional<at::Tensor>& bias, int64_t block_size,
                                           int64_t in_features, int64_t out_features) {
  check_dyn_quant_pack_args(weights, scales_zeros, bias, block_size, in_features, out_features);
  const c10::cuda::CUDAGuard guard(weights.device());
  const bool has_bias = defined(bias);
  const at::Tensor w = weights.contiguous();
  const at::Tensor s = scales_zeros.contiguous();
  const at::Tensor b = has_bias ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const bool scales_bf16 = s.scalar_type() == at::kBFloat16;
  const qk::W4CudaLayout L = qk::w4_cuda_layout(in_features, out_features, block_size, has_bias, scales_bf16);
  at::Tensor out = at::empty({L.total_bytes}, weights.options().dtype(at::kByte));
  check_status(ck::w4_cuda_pack(L, w.const_data_ptr<uint8_t>(), s.const_data_ptr(), scales_bf16,
                                has_bias ? b.const_data_ptr<float>() : nullptr, out.mutable_data_ptr<uint8_t>(),
                                current_stream()),
               "dyn_quant_pack_4bit_weight");
  return out;
}

// Parsed headers of packed buffers, so that a decode step does not pay a
// device-to-host copy (and a stream sync) per call. An entry is valid while
// its storage is alive (weak reference) and unmodified (version counter).
struct HeaderEntry {
  std::optional<c10::weak_intrusive_ptr<c10::StorageImpl>> storage;
  int64_t version = -1, nbytes = 0;
  qk::W4CudaLayout layout;
  uint32_t family = 0;
  std::string error;
};

HeaderEntry read_w4_header(const at::Tensor& packed) {
  static std::mutex mu;
  static std::unordered_map<const void*, HeaderEntry> cache;
  const void* key = packed.const_data_ptr();
  // Inference tensors carry no version counter: their headers are read every call.
  const bool cacheable = !packed.is_inference();
  const int64_t version = cacheable ? packed._version() : -1, nbytes = static_cast<int64_t>(packed.nbytes());
  c10::StorageImpl* impl = packed.storage().unsafeGetStorageImpl();
  if (cacheable) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) {
      const auto alive = it->second.storage->lock();
      if (alive.get() == impl && it->second.version == version && it->second.nbytes == nbytes) return it->second;
    }
  }
  HeaderEntry e;
  e.storage.emplace(packed.storage().getWeakStorageImpl());
  e.version = version;
  e.nbytes = nbytes;
  if (nbytes < qk::kW4CudaHeaderBytes) {
    e.error = "the buffer is shorter than the header";
  } else {
    const at::Tensor head = packed.reshape({-1}).view(at::kByte).narrow(0, 0, qk::kW4CudaHeaderBytes).cpu();
    qk::W4CudaHeader h;
    std::memcpy(&h, head.const_data_ptr(), sizeof(h));
    const char* err = qk::w4_cuda_read_header(h, nbytes, &e.layout, &e.family);
    if (err) e.error = err;
  }
  if (!cacheable) return e;
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() > 4096) cache.clear();  // a bound; entries are cheap to rebuild
  cache[key] = e;
  return e;
}

at::Tensor dyn_quant_matmul_4bit_cuda(const at::Tensor& inp, const at::Tensor& packed_weights, int64_t block_size,
                                      int64_t in_features, int64_t out_features) {
  check_dyn_quant_matmul_args(inp, packed_weights, block_size, in_features);
  const c10::cuda::CUDAGuard guard(inp.device());
  TORCH_CHECK(packed_weights.is_contiguous(), "dyn_quant_matmul_4bit: packed_weights must be contiguous");
  const HeaderEntry h = read_w4_header(packed_weights);
  if (!h.error.empty()) {
    TORCH_CHECK(h.family != qk::kW4FamilyNz4Vnni,
                "dyn_quant_matmul_4bit: packed_weights were packed for the CPU kernel family (NZ4-VNNI) and cannot "
                "run on CUDA; pack them on the GPU: dyn_quant_pack_4bit_weight(weights.cuda(), scales.cuda(), ...)");
    TORCH_CHECK(false, "dyn_quant_matmul_4bit: packed_weights is not a valid torch_qdev 4-bit weight (", h.error,
                "); pack it with dyn_quant_pack_4bit_weight on CUDA");
  }
  const qk::W4CudaLayout& L = h.layout;
  at::Tensor out = at::empty(
      dyn_quant_matmul_out_shape(inp, L.k, L.n, L.group, in_features, out_features, block_size), inp.options());
  const int64_t m = in_features == 0 ? 0 : inp.numel() / in_features;
  if (m == 0) return out;
  const at::Tensor x = inp.reshape({m, in_features}).contiguous();
  const bool decode = ck::w4a8_use_decode(m);
  at::Tensor q = at::empty({m, L.k_pad}, inp.options().dtype(at::kChar));
  at::Tensor recip = at::empty({m}, inp.options().dtype(at::kFloat));
  at::Tensor zp = at::empty({m}, inp.options().dtype(at::kInt));
  const cudaStream_t stream = current_stream();
  check_status(ck::w4a8_quant_rows(x.const_data_ptr(), x.scalar_type() == at::kBFloat16, m, in_features, in_features,
                                   L.k_pad, decode, q.mutable_data_ptr<int8_t>(), recip.mutable_data_ptr<float>(),
                                   zp.mutable_data_ptr<int32_t>(), stream),
               "dyn_quant_matmul_4bit");
  // The kernels want the buffer 256-byte aligned (a view at an offset is copied).
  const at::Tensor pk =
      reinterpret_cast<uintptr_t>(packed_weights.const_data_ptr()) % 256 == 0 ? packed_weights : packed_weights.clone();
  ck::W4A8Args a;
  a.m = m;
  a.packed = static_cast<const uint8_t*>(pk.const_data_ptr());
  a.L = L;
  a.q = q.const_data_ptr<int8_t>();
  a.recip = recip.const_data_ptr<float>();
  a.zp = zp.const_data_ptr<int32_t>();
  a.out = out.data_ptr();
  a.out_bf16 = inp.scalar_type() == at::kBFloat16;
  a.ldo = out_features;
  check_status(decode ? ck::w4a8_decode(a, stream) : ck::w4a8_prefill(a, stream), "dyn_quant_matmul_4bit");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(qdev, CUDA, m) {
  m.impl("npu_trans_quant_param", npu_trans_quant_param_cuda);
  m.impl("npu_quant_matmul", npu_quant_matmul_cuda);
  m.impl("npu_dynamic_quant", npu_dynamic_quant_cuda);
  m.impl("npu_dynamic_quant_asymmetric", npu_dynamic_quant_asymmetric_cuda);
  m.impl("dyn_quant_pack_4bit_weight", dyn_quant_pack_4bit_weight_cuda);
  m.impl("dyn_quant_matmul_4bit", dyn_quant_matmul_4bit_cuda);
}

}  // namespace at::native::qdev::cuda
