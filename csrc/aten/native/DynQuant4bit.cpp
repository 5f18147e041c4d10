// The W4A8 dynamic path: aten::_dyn_quant_pack_4bit_weight / _dyn_quant_matmul_4bit
// for qdev tensors, and the same pair as qdev::dyn_quant_* for CPU and qdev.
//
// Buffers are torch_qdev's self-describing "QDW4" format (kernels/matmul/qd_w4a8.h).
// The qdev ops return it as uint8; the aten pack on qdev stores it in a float32
// tensor of the size PyTorch's meta function predicts (weights + scales (+ bias)
// elements), so fake tensors and torch.compile see the shape they expect.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>

#include <cstring>
#include <memory>
#include <vector>

#include "../../kernels/common/qd_cpu_features.h"
#include "../../kernels/matmul/qd_w4a8.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QuantCommon.h"
#include "QuantOps.h"
#include "QuantPlans.h"

namespace at::native::qdev {
namespace {

namespace k = ::qdev::kernels;

bool is_qdev(const at::Tensor& t) { return t.device().type() == c10::DeviceType::PrivateUse1; }

void sync_if_qdev(const at::Tensor& t) {
  if (is_qdev(t)) c10::qdev::sync_current_stream(t.device().index());
}

// Largest in_features / out_features: 2^31 - 1 keeps k_pad * n_pad / 2 and the scale
// sections far below 2^63.
constexpr int64_t kMaxW4Features = (int64_t{1} << 31) - 1;

void check_group(int64_t block_size, int64_t in_features) {
  TORCH_CHECK(block_size == in_features || (block_size % 32 == 0 && block_size > 0 && in_features % block_size == 0),
              "Group size should be multiple of 32, in_features [", in_features, "]. Provided ", block_size);
}

}  // namespace

void check_dyn_quant_pack_args(const at::Tensor& weights, const at::Tensor& scales,
                               const std::optional<at::Tensor>& bias, int64_t block_size, int64_t in_features,
                               int64_t out_features) {
  check_required(weights, "dyn_quant_pack_4bit_weight", "weights");
  check_required(scales, "dyn_quant_pack_4bit_weight", "scales_zeros");
  TORCH_CHECK(weights.scalar_type() == at::kByte, "dyn_quant_pack_4bit_weight: weights must be uint8 (two int4 "
              "values per byte), but they are ", weights.scalar_type());
  TORCH_CHECK(in_features > 0 && out_features > 0, "in_features and out_features must be positive");
  // Bounded so that every size below (weights, the padded layout) fits int64 without wrapping.
  TORCH_CHECK(in_features <= kMaxW4Features && out_features <= kMaxW4Features,
              "dyn_quant_pack_4bit_weight: in_features and out_features must be at most ", kMaxW4Features,
              ", but they are ", in_features, " and ", out_features);
  TORCH_CHECK(in_features % 2 == 0, "dyn_quant_pack_4bit_weight: in_features must be even, but it is ", in_features);
  check_group(block_size, in_features);
  TORCH_CHECK(weights.numel() == out_features * (in_features / 2), "dyn_quant_pack_4bit_weight: weights hold ",
              weights.numel(), " bytes, but out_features * in_features / 2 = ", out_features * (in_features / 2));
  const int64_t groups = in_features / block_size;
  TORCH_CHECK(scales.numel() == out_features * groups, "dyn_quant_pack_4bit_weight: expected ",
              out_features * groups, " scales (out_features x in_features / block_size), got ", scales.numel());
  TORCH_CHECK(scales.scalar_type() == at::kFloat || scales.scalar_type() == at::kBFloat16,
              "dyn_quant_pack_4bit_weight: scales must be float32 or bfloat16, but they are ", scales.scalar_type());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    TORCH_CHECK(bias->numel() == out_features, "Expected bias length to match output dimension (",
                out_features, "), but it has ", bias->numel(), " elements");
    TORCH_CHECK(at::isFloatingType(bias->scalar_type()), "dyn_quant_pack_4bit_weight: bias must be a float "
                "tensor, but it is ", bias->scalar_type());
  }
  const at::Tensor no_tensor;
  for (const at::Tensor* t : {&scales, has_bias ? &*bias : &no_tensor}) {
    if (!t->defined()) continue;
    TORCH_CHECK(t->device() == weights.device(), "Expected all tensors to be on the same device, but found at "
                "least two devices, ", weights.device(), " and ", t->device(), "!");
  }
}

void check_dyn_quant_matmul_args(const at::Tensor& inp, const at::Tensor& packed, int64_t block_size,
                                 int64_t in_features) {
  check_required(inp, "dyn_quant_matmul_4bit", "inp");
  check_required(packed, "dyn_quant_matmul_4bit", "packed_weights");
  TORCH_CHECK(inp.scalar_type() == at::kFloat || inp.scalar_type() == at::kBFloat16,
              "dyn_quant_matmul_4bit: expect input to be float32 or bfloat16 tensor, but it is ", inp.scalar_type());
  check_group(block_size, in_features);
  TORCH_CHECK(inp.dim() >= 1 && inp.size(-1) == in_features, "dyn_quant_matmul_4bit: the input has ",
              inp.dim() >= 1 ? inp.size(-1) : 0, " features (last dimension) but in_features is ", in_features);
  TORCH_CHECK(packed.device() == inp.device(), "Expected all tensors to be on the same device, but found at least "
              "two devices, ", inp.device(), " and ", packed.device(), "!");
}

std::vector<int64_t> dyn_quant_matmul_out_shape(const at::Tensor& inp, int64_t packed_k, int64_t packed_n,
                                                int64_t packed_group, int64_t in_features, int64_t out_features,
                                                int64_t block_size) {
  TORCH_CHECK(packed_k == in_features && packed_n == out_features && packed_group == block_size,
              "dyn_quant_matmul_4bit: packed_weights were packed for in_features=", packed_k, ", out_features=",
              packed_n, ", block_size=", packed_group, " but the call passes ", in_features, ", ", out_features, ", ",
              block_size);
  std::vector<int64_t> out_shape(inp.sizes().begin(), inp.sizes().end() - 1);
  out_shape.push_back(out_features);
  return out_shape;
}

namespace {

at::Tensor pack(const at::Tensor& weights, const at::Tensor& scales, const std::optional<at::Tensor>& bias,
                int64_t block_size, int64_t in_features, int64_t out_features, bool torch_container,
                const at::Tensor& zeros = at::Tensor()) {
  check_dyn_quant_pack_args(weights, scales, bias, block_size, in_features, out_features);
  const bool has_bias = bias.has_value() && bias->defined();
  const bool has_zeros = zeros.defined();
  if (has_zeros) {
    TORCH_CHECK(zeros.numel() == scales.numel(), "dyn_quant_pack_4bit_weight_asym: expected ", scales.numel(),
                " zeros (one per scale), got ", zeros.numel());
    TORCH_CHECK(zeros.scalar_type() == at::kFloat || zeros.scalar_type() == at::kBFloat16,
                "dyn_quant_pack_4bit_weight_asym: zeros must be float32 or bfloat16, but they are ",
                zeros.scalar_type());
    TORCH_CHECK(zeros.device() == weights.device(), "Expected all tensors to be on the same device, but found at "
                "least two devices, ", weights.device(), " and ", zeros.device(), "!");
  }
  std::optional<c10::DeviceGuard> guard;
  if (is_qdev(weights)) guard.emplace(weights.device());
  sync_if_qdev(weights);
  const at::Tensor w = logical_host_view(weights).contiguous();
  const at::Tensor s = logical_host_view(scales).contiguous();
  const at::Tensor b = has_bias ? logical_host_view(*bias).to(at::kFloat).contiguous() : at::Tensor();
  const k::W4Layout L = k::w4_layout(in_features, out_features, block_size, has_bias,
                                     s.scalar_type() == at::kBFloat16, has_zeros);
  // zeros are stored like the scales: bf16 storage gets bf16 values (rounded here if given fp32)
  const at::Tensor z = has_zeros ? logical_host_view(zeros).to(L.scales_bf16 ? at::kBFloat16 : zeros.scalar_type())
                                       .contiguous()
                                 : at::Tensor();
  at::Tensor out;
  if (torch_container) {
    // PyTorch's meta size (weights + scales (+ bias) elements); small layers (n < 32 pads to
    // one 32-column panel) need more bytes than that, and get a container that holds them.
    const int64_t elems = weights.numel() + scales.numel() + (has_bias ? bias->numel() : 0);
    out = at::empty({std::max(elems, (L.total_bytes + 3) / 4)}, weights.options().dtype(at::kFloat));
  } else {
    out = at::empty({L.total_bytes}, weights.options().dtype(at::kByte));
  }
  uint8_t* dst = static_cast<uint8_t*>(logical_host_view(out).data_ptr());
  std::memset(dst, 0, out.nbytes());  // deterministic bytes in alignment gaps and the container tail
  k::w4_pack_header(L, dst);
  const int64_t panels = L.n_pad / 32;
  at::parallel_for(0, panels, parallel_grain(panels, 32 * in_features, kMinTaskElems), [&](int64_t p0, int64_t p1) {
    k::w4_pack_columns(L, w.const_data_ptr<uint8_t>(), s.const_data_ptr(), s.scalar_type() == at::kBFloat16,
                       has_bias ? b.const_data_ptr<float>() : nullptr, dst, p0 * 32, std::min(p1 * 32, out_features));
    if (has_zeros) {
      k::w4_pack_zeros(L, z.const_data_ptr(), z.scalar_type() == at::kBFloat16, dst, p0 * 32,
                       std::min(p1 * 32, out_features));
    }
  });
  return out;
}

at::Tensor matmul(const at::Tensor& inp, const at::Tensor& packed, int64_t block_size, int64_t in_features,
                  int64_t out_features) {
  check_dyn_quant_matmul_args(inp, packed, block_size, in_features);
  std::optional<c10::DeviceGuard> guard;
  if (is_qdev(inp)) guard.emplace(inp.device());
  sync_if_qdev(inp);
  const at::Tensor pk = logical_host_view(packed);
  TORCH_CHECK(pk.is_contiguous(), "dyn_quant_matmul_4bit: packed_weights must be contiguous");
  const uint8_t* buf = static_cast<const uint8_t*>(pk.const_data_ptr());
  k::W4Layout L;
  if (const char* err = k::w4_read_header(buf, static_cast<int64_t>(pk.nbytes()), &L)) {
    TORCH_CHECK(false, "dyn_quant_matmul_4bit: packed_weights is not a valid torch_qdev 4-bit weight (", err,
                "); pack it with dyn_quant_pack_4bit_weight on CPU or qdev");
  }
  at::Tensor out = at::empty(
      dyn_quant_matmul_out_shape(inp, L.k, L.n, L.group, in_features, out_features, block_size), inp.options());
  const int64_t m = in_features == 0 ? 0 : inp.numel() / in_features;
  if (m == 0) return out;
  const at::Tensor x = logical_host_view(inp).reshape({m, in_features}).contiguous();

  const int64_t ldq = L.k_pad;
  std::unique_ptr<int8_t[]> q(new int8_t[static_cast<size_t>(m * ldq)]);
  std::vector<float> recip(static_cast<size_t>(m));
  std::vector<int32_t> zp(static_cast<size_t>(m)), rowsum(static_cast<size_t>(m * L.groups));
  k::Qai8dxArgs qa;
  qa.x = x.const_data_ptr();
  qa.x_bf16 = x.scalar_type() == at::kBFloat16;
  qa.k = in_features;
  qa.ldx = in_features;
  qa.q = q.get();
  qa.ldq = ldq;
  qa.recip = recip.data();
  qa.zp = zp.data();
  qa.rowsum = rowsum.data();
  qa.group = L.channelwise ? L.k : L.group;
  qa.groups = L.groups;
  const k::Isa isa = k::active_isa();
  qa.q_unsigned = k::w4a8_lhs_unsigned(isa, m, L);
  at::parallel_for(0, m, parallel_grain(m, in_features),
                   [&](int64_t r0, int64_t r1) { k::quant_rows_qai8dx(isa, qa, r0, r1); });

  k::W4A8Args args;
  args.m = m;
  args.packed = buf;
  args.L = L;
  args.q = q.get();
  args.ldq = ldq;
  args.recip = recip.data();
  args.zp = zp.data();
  args.rowsum = rowsum.data();
  args.q_unsigned = qa.q_unsigned;
  args.out = logical_host_view(out).data_ptr();
  args.out_bf16 = inp.scalar_type() == at::kBFloat16;
  args.ldo = out_features;
  const int64_t panels = L.n_pad / 32;
  const int64_t grain = parallel_grain(panels, m * in_features * 32);
  at::parallel_for(0, panels, grain, [&](int64_t p0, int64_t p1) { k::w4a8_panels(isa, args, p0, p1); });
  return out;
}

}  // namespace

at::Tensor dyn_quant_pack_4bit_weight(const at::Tensor& weights, const at::Tensor& scales_zeros,
                                      const std::optional<at::Tensor>& bias, int64_t block_size,
                                      int64_t in_features, int64_t out_features) {
  return pack(weights, scales_zeros, bias, block_size, in_features, out_features, /*torch_container=*/false);
}

at::Tensor aten_dyn_quant_pack_4bit_weight(const at::Tensor& weights, const at::Tensor& scales_zeros,
                                           const std::optional<at::Tensor>& bias, int64_t block_size,
                                           int64_t in_features, int64_t out_features) {
  return pack(weights, scales_zeros, bias, block_size, in_features, out_features, /*torch_container=*/true);
}

at::Tensor dyn_quant_pack_4bit_weight_asym(const at::Tensor& weights, const at::Tensor& scales,
                                           const at::Tensor& zeros, const std::optional<at::Tensor>& bias,
                                           int64_t block_size, int64_t in_features, int64_t out_features) {
  return pack(weights, scales, bias, block_size, in_features, out_features, /*torch_container=*/false, zeros);
}

at::Tensor dyn_quant_matmul_4bit(const at::Tensor& inp, const at::Tensor& packed_weights, int64_t block_size,
                                 int64_t in_features, int64_t out_features) {
  return matmul(inp, packed_weights, block_size, in_features, out_features);
}

}  // namespace at::native::qdev
