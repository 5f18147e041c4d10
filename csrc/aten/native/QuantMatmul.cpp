// npu_quant_matmul (A8W8 and A4W4) on CPU and qdev tensors.
//
// Glue only: validates exactly as torch_npu does (same messages), turns the
// scale/offset/bias/pertoken arguments into the kernel's epilogue description,
// packs the operands and splits the GEMM into (batch, 32-column panel) tasks
// across torch's intra-op threads. The arithmetic lives in csrc/kernels.
#include <ATen/Parallel.h>
#include <ATen/ExpandUtils.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../../kernels/common/qd_common.h"
#include "../../kernels/matmul/qd_qgemm.h"
#include "../../kernels/matmul/qd_a8w4.h"
#include "../../kernels/matmul/qd_qgemm_s4.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QdevNative.h"
#include "QuantCommon.h"
#include "QuantOps.h"
#include "QuantPlans.h"

namespace at::native::qdev {
namespace {

namespace k = ::qdev::kernels;


// torch_npu's custom dtype ints (256 + aclDataType): all Ascend-950-only formats.
const char* npu_custom_dtype_name(int64_t v) {
  switch (v) {
    case 285: return "torch_npu.int4";
    case 290: return "torch_npu.hifloat8";
    case 291: return "torch_npu.float8_e5m2";
    case 292: return "torch_npu.float8_e4m3fn";
    case 293: return "torch_npu.float8_e8m0fnu";
    case 296: return "torch_npu.float4_e2m1fn_x2";
    case 297: return "torch_npu.float4_e1m2fn_x2";
    default: return nullptr;
  }
}

[[noreturn]] void not_supported(const std::string& what) {
  TORCH_CHECK_NOT_IMPLEMENTED(false, "npu_quant_matmul: ", what,
                              " is an Ascend 950 feature and is not supported on qdev");
}

at::ScalarType resolve_output_dtype(std::optional<int64_t> output_dtype) {
  if (!output_dtype.has_value()) return at::kChar;
  const int64_t v = *output_dtype;
  if (const char* custom = npu_custom_dtype_name(v)) not_supported(std::string("output dtype ") + custom);
  TORCH_CHECK(v >= 0 && v < static_cast<int64_t>(at::ScalarType::NumOptions),
              "Not supported output dtype is ", v);
  const auto t = static_cast<at::ScalarType>(v);
  if (t == at::kFloat || t == at::kFloat8_e4m3fn || t == at::kFloat8_e5m2) {
    not_supported("output dtype " + dtype_name(t));
  }
  TORCH_CHECK(t == at::kHalf || t == at::kBFloat16 || t == at::kChar || t == at::kInt,
              "Not supported output dtype is ", dtype_name(t));
  return t;
}


using Plan = QuantMatmulPlan;

constexpr int64_t kMaxLastDim = 65535;

// Every given input lives on x1's device (torch's message).
void check_inputs_on_x1_device(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                               const std::optional<at::Tensor>& offset, const std::optional<at::Tensor>& pertoken,
                               const std::optional<at::Tensor>& bias) {
  for (const auto* t : {&x2, &scale}) {
    TORCH_CHECK(t->device() == x1.device(), "Expected all tensors to be on the same device, but found "
                "at least two devices, ", x1.device(), " and ", t->device(), "!");
  }
  for (const auto* t : {&offset, &pertoken, &bias}) {
    if (defined(*t)) {
      TORCH_CHECK((*t)->device() == x1.device(), "Expected all tensors to be on the same device, but "
                  "found at least two devices, ", x1.device(), " and ", (*t)->device(), "!");
    }
  }
}

// A4W4 per-group (the int32 x int32 row with a 2-D scale): scale float32 and
// offset float16 of shape (ceil(k / G), n), pertoken float32 (m, 1) or (m,),
// float16/bfloat16 output, no bias.
Plan plan_a4w4_group(Plan p, const at::Tensor& x1, const at::Tensor& scale,
                     const std::optional<at::Tensor>& offset, const std::optional<at::Tensor>& pertoken,
                     const std::optional<at::Tensor>& bias) {
  if (p.group == 0) p.group = 256;
  const int64_t groups = (p.k + p.group - 1) / p.group;
  TORCH_CHECK(x1.dim() == 2, "A4W4 per-group quantization supports a 2-D x1, but x1 has ", x1.dim(), " dims");
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.size(0) == groups && scale.size(1) == p.n,
              "A4W4 per-group scale must be float32 of shape (", groups, ", ", p.n, "), but it is ",
              scale.scalar_type(), " ", scale.sizes());
  if (offset.has_value() && offset->defined()) {
    TORCH_CHECK(offset->scalar_type() == at::kHalf && offset->sizes() == scale.sizes(),
                "A4W4 per-group offset must be float16 of the scale's shape ", scale.sizes());
  }
  TORCH_CHECK(pertoken.has_value() && pertoken->defined() && pertoken->scalar_type() == at::kFloat &&
                  pertoken->numel() == p.m && (pertoken->dim() == 1 || pertoken->dim() == 2),
              "A4W4 per-group quantization needs a float32 pertoken_scale of shape (m, 1)");
  TORCH_CHECK(!(bias.has_value() && bias->defined()), "A4W4 per-group quantization takes no bias");
  TORCH_CHECK(p.out_dtype == at::kHalf || p.out_dtype == at::kBFloat16,
              "A4W4 per-group quantization needs float16 or bfloat16 output, but output_dtype is ",
              dtype_name(p.out_dtype));
  return p;
}

// A8W4 (x1 int8 (m, k), x2 int32 (k, n/8) packed along n as npu_convert_weight_to_int4pack
// does): scale int64 (k/G, n) from npu_trans_quant_param, offset (the y_offset
// compensation) float32 (n,), pertoken float32 (m, 1), group_sizes [0, 0, G] (G = 256 by
// default), float16/bfloat16 output. A bias has no documented place in the formula: refused.
Plan plan_a8w4(Plan p, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
               const std::optional<at::Tensor>& offset, const std::optional<at::Tensor>& pertoken,
               const std::optional<at::Tensor>& bias, at::OptionalIntArrayRef group_sizes) {
  TORCH_CHECK(x1.dim() == 2 && x2.dim() == 2, "A8W4 (int8 x1 with int32-packed int4 x2) supports 2-D x1 and x2, but "
              "x1 has ", x1.dim(), " and x2 ", x2.dim(), " dims");
  TORCH_CHECK(x1.size(1) == x2.size(0), "k dim of x1 and x2 need be same, please check k dim of x1 and x2 ");
  TORCH_CHECK(x1.size(1) <= kMaxLastDim, "npu_quant_matmul: the last dim of x1 (k) must be at most ", kMaxLastDim,
              " (CANN's limit), but it is ", x1.size(1));
  p.m = x1.size(0);
  p.k = x1.size(1);
  p.n = x2.size(1) * 8;
  p.batch.clear();
  p.out_shape = {p.m, p.n};
  p.group = 256;
  if (group_sizes.has_value()) {
    const auto gs = *group_sizes;
    TORCH_CHECK(gs.size() == 3, "group_sizes's length must be 3, please check group_sizes's length");
    for (int64_t g : gs) {
      TORCH_CHECK(g >= 0 && g <= 65535, "group param value must conform to range [0, 65535]");
    }
    TORCH_CHECK(gs[0] <= 1 && gs[1] <= 1, "A8W4 takes group_sizes [0, 0, group_k], but got ", gs);
    if (gs[2] > 0) p.group = gs[2];
  }
  TORCH_CHECK(p.group % 16 == 0 && p.k % p.group == 0, "A8W4 needs a k-group that is a multiple of 16 and divides k (",
              p.k, "), but it is ", p.group);
  TORCH_CHECK(scale.scalar_type() == at::kLong && scale.dim() == 2 && scale.size(0) == p.k / p.group &&
                  scale.size(1) == p.n,
              "A8W4 scale must be int64 (from npu_trans_quant_param) of shape (", p.k / p.group, ", ", p.n,
              "), but it is ", scale.scalar_type(), " ", scale.sizes());
  if (defined(offset)) {
    TORCH_CHECK(offset->scalar_type() == at::kFloat && offset->dim() == 1 && offset->size(0) == p.n,
                "A8W4 offset (y_offset) must be float32 of shape (", p.n, "), but it is ", offset->scalar_type(), " ",
                offset->sizes());
  }
  TORCH_CHECK(defined(pertoken) && pertoken->scalar_type() == at::kFloat && pertoken->numel() == p.m &&
                  (pertoken->dim() == 1 || (pertoken->dim() == 2 && pertoken->size(1) == 1)),
              "A8W4 needs a float32 pertoken_scale of shape (m, 1)");
  TORCH_CHECK(!defined(bias), "A8W4 takes no bias (add it to offset, the y_offset term)");
  TORCH_CHECK(p.out_dtype == at::kHalf || p.out_dtype == at::kBFloat16,
              "A8W4 needs float16 or bfloat16 output, but output_dtype is ", dtype_name(p.out_dtype));
  check_inputs_on_x1_device(x1, x2, scale, offset, pertoken, bias);
  return p;
}

}  // namespace

// torch_npu's meta checks (npu_quant_matmul_meta) plus the CANN-level rules
// that decide which argument combinations exist. Messages are torch_npu's.
Plan plan_quant_matmul(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                       const std::optional<at::Tensor>& offset,
                       const std::optional<at::Tensor>& pertoken,
                       const std::optional<at::Tensor>& bias, std::optional<int64_t> output_dtype,
                       std::optional<int64_t> x1_dtype, std::optional<int64_t> x2_dtype,
                       std::optional<int64_t> pertoken_scale_dtype,
                       std::optional<int64_t> scale_dtype, at::OptionalIntArrayRef group_sizes,
                       const std::optional<at::Tensor>& y_scale) {
  check_required(x1, "npu_quant_matmul", "x1");
  check_required(x2, "npu_quant_matmul", "x2");
  check_required(scale, "npu_quant_matmul", "scale");
  for (auto opt : {x1_dtype, x2_dtype, pertoken_scale_dtype, scale_dtype}) {
    if (opt.has_value()) {
      const char* name = npu_custom_dtype_name(*opt);
      not_supported(std::string("the dtype argument ") + (name ? name : std::to_string(*opt)));
    }
  }
  if (defined(y_scale)) not_supported("y_scale");
  const auto x1t = x1.scalar_type(), x2t = x2.scalar_type();
  if (x1t == at::kFloat8_e4m3fn || x1t == at::kFloat8_e5m2 || x2t == at::kFloat8_e4m3fn ||
      x2t == at::kFloat8_e5m2) {
    not_supported("float8 input");
  }
  Plan p;
  p.a4w4 = x1t == at::kInt && x2t == at::kInt;
  if (x1t == at::kChar && x2t == at::kInt) {
    p.a8w4 = true;
    p.out_dtype = resolve_output_dtype(output_dtype);
    return plan_a8w4(p, x1, x2, scale, offset, pertoken, bias, group_sizes);
  }
  TORCH_CHECK(p.a4w4 || (x1t == at::kChar && x2t == at::kChar),
              "npu_quant_matmul supports int8 x int8 (A8W8) and int32 x int32 (packed int4, A4W4) "
              "inputs (and int8 x int32, A8W4), but x1 is ", dtype_name(x1t), " and x2 is ", dtype_name(x2t));
  TORCH_CHECK(x1.dim() >= 2 && x1.dim() <= 6, "x1 dim num should be 2 ~ 6, please check x1 dim num ");
  if (p.a4w4) {
    TORCH_CHECK(x2.dim() == 2, "x2 dim num should be 2 when x1's dtype is int32, please check x2 dim num ");
    if (x1.size(-1) == x2.size(-2)) {
      p.x2_k_packed = true;
      p.k = x1.size(-1) * 8;
      p.n = x2.size(-1);
    } else {
      TORCH_CHECK(x2.size(-2) == x1.size(-1) * 8,
                  "k dim of x2 should be 8 multiple of k dim of x1, please check k dim of x1 and x2 ");
      p.k = x2.size(-2);
      p.n = x2.size(-1) * 8;
    }
  } else {
    TORCH_CHECK(x2.dim() >= 2 && x2.dim() <= 6,
                "x2 dim num should be 2 ~ 6 when x1's dtype is int8, please check x2 dim num ");
    TORCH_CHECK(x1.size(-1) == x2.size(-2),
                "k dim of x1 and x2 need be same, please check k dim of x1 and x2 ");
    p.k = x1.size(-1);
    p.n = x2.size(-1);
  }
  // CANN's documented limit on the last dims of x1 and x2 (65535); for x1 it also keeps the
  // int32 accumulator exact (65535 * 128 * 128 < 2^31), which larger k would wrap.
  TORCH_CHECK(x1.size(-1) <= kMaxLastDim, "npu_quant_matmul: the last dim of x1 (k) must be at most ", kMaxLastDim,
              " (CANN's limit), but it is ", x1.size(-1));
  p.m = x1.size(-2);
  p.a4w4_group = p.a4w4 && scale.dim() == 2;
  auto b1 = x1.sizes().slice(0, x1.dim() - 2), b2 = x2.sizes().slice(0, x2.dim() - 2);
  auto bshape = at::infer_size_dimvector(b1, b2);  // raises on mismatch; message below is torch_npu's
  (void)bshape;
  p.batch.assign(bshape.begin(), bshape.end());
  p.out_shape = p.batch;
  p.out_shape.push_back(p.m);
  p.out_shape.push_back(p.n);
  p.out_dtype = resolve_output_dtype(output_dtype);
  const auto out = p.out_dtype;
  const bool has_pertoken = defined(pertoken);

  if (group_sizes.has_value()) {
    const auto gs = *group_sizes;
    TORCH_CHECK(gs.size() == 3, "group_sizes's length must be 3, please check group_sizes's length");
    for (int64_t g : gs) {
      TORCH_CHECK(g >= 0 && g <= 65535, "group param value must conform to range [0, 65535]");
    }
    if (p.a4w4_group) {
      TORCH_CHECK(gs[0] <= 1 && gs[1] <= 1 && gs[2] > 0,
                  "A4W4 per-group quantization takes group_sizes [1, 1, group_k], but got ", gs);
      p.group = gs[2];
    } else if (gs[0] > 1 || gs[1] > 1 || gs[2] > 1) {
      not_supported("per-block quantization (group_sizes > 1)");
    }
  }
  if (p.a4w4_group) return plan_a4w4_group(p, x1, scale, offset, pertoken, bias);

  if (defined(bias)) {
    const at::Tensor& b = *bias;
    if (p.a4w4) {
      TORCH_CHECK(b.dim() == 1, "bias_dim_num should be 1 when x1's dtype is int32, please check bias dim num ");
    } else {
      TORCH_CHECK(b.dim() == 1 || b.dim() == 3,
                  "bias_dim_num should be 1 or 3 when x1's dtype is int8, please check bias dim num ");
    }
    if (b.dim() == 3) {
      TORCH_CHECK(p.out_shape.size() == 3, "when bias dim is 3, out dim need to be 3");
      TORCH_CHECK(b.size(0) == p.batch[0],
                  "infered batch value should be equal to bias batch dim value, please check bias batch dim value");
      TORCH_CHECK(b.size(1) == 1, "bias_second_dim should be 1, please check bias second dim value ");
      TORCH_CHECK(b.size(2) == p.n, "bias_third_dim should be equal to x2_n_dim, please check bias third dim value ");
    } else {
      TORCH_CHECK(b.size(0) == p.n, "bias_first_dim should be equal to x2 n dim, please check bias 1st dim value ");
    }
    const auto bt = b.scalar_type();
    TORCH_CHECK(bt == at::kInt || bt == at::kBFloat16 || bt == at::kFloat || bt == at::kHalf,
                "bias's type supported for int32, bfloat16, float16 and float32, but bias.dtype is ",
                dtype_name(bt));
    TORCH_CHECK(bt != at::kBFloat16 || out == at::kBFloat16,
                "When bias dtype is bfloat16, output_dtype must be bfloat16, but it is ", dtype_name(out));
    TORCH_CHECK(out != at::kInt || bt == at::kInt,
                "When output_dtype dtype is int32, bias_dtype must be int32, but it is ", dtype_name(bt));
    if (bt == at::kHalf) {
      TORCH_CHECK(has_pertoken, "Bias dtype cannot be float16 when pertoken not given.");
      TORCH_CHECK(out == at::kHalf,
                  "When bias dtype is float16 and pertoken is given, output_dtype must be float16, but it is ",
                  dtype_name(out));
    }
    TORCH_CHECK(bt == at::kInt || out == at::kBFloat16 || out == at::kHalf,
                "npu_quant_matmul: a ", dtype_name(bt), " bias needs a float16 or bfloat16 output, but output_dtype is ",
                dtype_name(out));
    TORCH_CHECK(bt != at::kFloat || out == at::kBFloat16 || has_pertoken,
                "npu_quant_matmul: a float32 bias with float16 output needs pertoken_scale");
  }

  const auto st = scale.scalar_type();
  TORCH_CHECK(st == at::kLong || st == at::kFloat || st == at::kBFloat16,
              "scale's dtype must be int64, float32 or bfloat16, but scale's dtype is ", dtype_name(st));
  TORCH_CHECK(st != at::kBFloat16 || out == at::kBFloat16 || out == at::kInt,
              "When scale's dtype is bfloat16, output_dtype must be bfloat16 or int32, but output_dtype is ",
              dtype_name(out));
  TORCH_CHECK(out != at::kInt || st == at::kBFloat16 || st == at::kFloat,
              "When output_dtype is int32, scale's dtype must be bfloat16 or float32, but scale's dtype is ",
              dtype_name(st));
  if (p.a4w4 && !has_pertoken) {
    TORCH_CHECK(out == at::kHalf, "When input's dtype is int32, output_dtype must be float16, but output_dtype is ",
                output_dtype.has_value() ? dtype_name(out) : std::string("None"));
  }
  TORCH_CHECK(st != at::kLong || ((out == at::kChar || out == at::kHalf) && !has_pertoken),
              "npu_quant_matmul: an int64 scale is only valid for int8 or float16 output without "
              "pertoken_scale, but output_dtype is ", dtype_name(out));

  if (defined(offset)) {
    const at::Tensor& o = *offset;
    TORCH_CHECK(o.scalar_type() == at::kFloat,
                "offset's type supported for float32, but offset.dtype is ", dtype_name(o.scalar_type()));
    TORCH_CHECK(o.dim() == 1, "the offset dim num must be 1, please check offset dim num ");
    TORCH_CHECK(o.size(0) == 1 || o.size(0) == p.n,
                "the offset 1st dim value must be 1 or x2 n dim value, please check offset 1st dim value ");
    TORCH_CHECK(out == at::kChar, "npu_quant_matmul: offset is only supported with int8 output, but "
                "output_dtype is ", dtype_name(out));
  }
  if (has_pertoken) {
    const at::Tensor& pt = *pertoken;
    TORCH_CHECK(pt.dim() == 1, "the pertoken_scale dim num must be 1, please check scale dim num ");
    TORCH_CHECK(pt.scalar_type() == at::kFloat, "pertoken_scale's dtype must be float32, but it is ",
                dtype_name(pt.scalar_type()));
    TORCH_CHECK(pt.size(0) == p.m, "the pertoken_scale 1st dim value must be x1 m dim value (", p.m,
                "), but it is ", pt.size(0));
    TORCH_CHECK(out == at::kHalf || out == at::kBFloat16,
                "npu_quant_matmul: pertoken_scale needs float16 or bfloat16 output, but output_dtype is ",
                dtype_name(out));
  }
  TORCH_CHECK(scale.dim() == 1, "the scale dim num must be 1, please check scale dim num ");
  TORCH_CHECK(scale.size(0) == 1 || scale.size(0) == p.n,
              "the scale 1st dim value must be 1 or x2 n dim value, please check scale 1st dim value ");

  check_inputs_on_x1_device(x1, x2, scale, offset, pertoken, bias);
  return p;
}

namespace {

// A CPU tensor with t's logical values (qdev memory is host memory).
at::Tensor host_view(const at::Tensor& t) { return logical_host_view(t); }

std::vector<float> to_float_vector(const at::Tensor& t) {
  const at::Tensor f = host_view(t).to(at::kFloat).contiguous();
  return std::vector<float>(f.const_data_ptr<float>(), f.const_data_ptr<float>() + f.numel());
}
std::vector<int64_t> to_int64_vector(const at::Tensor& t) {
  const at::Tensor f = host_view(t).contiguous();
  return std::vector<int64_t>(f.const_data_ptr<int64_t>(), f.const_data_ptr<int64_t>() + f.numel());
}
std::vector<int32_t> to_int_vector(const at::Tensor& t) {
  const at::Tensor f = host_view(t).to(at::kInt).contiguous();
  return std::vector<int32_t>(f.const_data_ptr<int32_t>(), f.const_data_ptr<int32_t>() + f.numel());
}

// One packed right-hand side: NZ-VNNI bytes + column sums.
struct PackedB {
  const int8_t* data = nullptr;
  const int32_t* colsum = nullptr;
  bool has_min = true;
  std::vector<int8_t> own_data;
  std::vector<int32_t> own_colsum;
};

void pack_b(const at::Tensor& b /* (k, n) int8, any strides, host */, int64_t k, int64_t n, PackedB& out) {
  out.own_data.resize(static_cast<size_t>(k::nz_packed_bytes(k, n)));
  out.own_colsum.resize(static_cast<size_t>(k::round_up(n, k::kNzCols)));
  const int8_t* src = b.const_data_ptr<int8_t>();
  const int64_t sk = b.stride(0), sn = b.stride(1);
  const int64_t panels = k::qgemm_num_panels(n);
  at::parallel_for(0, panels, parallel_grain(panels, k * k::kNzCols, kMinTaskElems), [&](int64_t p0, int64_t p1) {
    k::pack_b_nz_ref(src, k, n, sk, sn, out.own_data.data(), out.own_colsum.data(), p0 * k::kNzCols,
                     std::min(p1 * k::kNzCols, n));
  });
  out.data = out.own_data.data();
  out.colsum = out.own_colsum.data();
  out.has_min = k::has_int8_min(out.data, static_cast<int64_t>(out.own_data.size()));
}

// A8W4 as the NPU computes it (torch_npu's a8w4_quant_golden): each int8 x splits into
// hi = floor(x / 16) and lo = (x & 15) - 8, both int4 (16 hi + lo = x - 8); per k-group
// j the int4 x int4 sums HI_j = hi @ W_j and LO_j = lo @ W_j (exact int32, our nibble
// GEMM on the rows [hi; lo] interleaved) are scaled by s_j (the int64 scale's 19-bit
// float) and accumulated over groups in float16; then
// y = (16 HI + LO + y_offset) * pertoken. y_offset is the caller's compensation of the -8.
at::Tensor a8w4_matmul(const Plan& p, const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                       const std::optional<at::Tensor>& offset, const at::Tensor& pertoken, at::Tensor out) {
  const int64_t m = p.m, kk = p.k, n = p.n, G = p.group, groups = kk / G, rows = 2 * m;
  const k::Isa isa = k::active_isa();
  const at::Tensor xs = host_view(x1).contiguous();
  const int8_t* x = xs.const_data_ptr<int8_t>();
  // A: rows 2i (hi) and 2i + 1 (lo) of x row i; row sums per group for the nibble GEMM.
  std::vector<int8_t> a(static_cast<size_t>(rows * kk));
  std::vector<int32_t> rowsum(static_cast<size_t>(groups * rows), 0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t c = 0; c < kk; ++c) {
      const int v = x[i * kk + c];
      const int hi = v >> 4;  // arithmetic shift: floor division by 16
      const int lo = (v & 0xF) - 8;
      a[static_cast<size_t>(2 * i * kk + c)] = static_cast<int8_t>(hi);
      a[static_cast<size_t>((2 * i + 1) * kk + c)] = static_cast<int8_t>(lo);
      rowsum[static_cast<size_t>((c / G) * rows + 2 * i)] += hi;
      rowsum[static_cast<size_t>((c / G) * rows + 2 * i + 1)] += lo;
    }
  }
  const at::Tensor words = host_view(x2).contiguous();
  const int64_t row_words = words.size(1);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(words.const_data_ptr<int32_t>());
  const int64_t panels = k::qgemm_num_panels(n);
  std::vector<uint8_t> b4(static_cast<size_t>(k::nz4_packed_bytes(G, n)));
  at::Tensor sums = at::empty({rows, n}, at::kInt);
  std::vector<float> scale_f;
  for (int64_t v : to_int64_vector(scale)) scale_f.push_back(unpack_scale(v));
  at::Tensor acc16 = at::zeros({rows, n}, at::kHalf);
  uint16_t* acc = reinterpret_cast<uint16_t*>(acc16.data_ptr());
  for (int64_t g = 0; g < groups; ++g) {
    at::parallel_for(0, panels, parallel_grain(panels, G * k::kNzCols, kMinTaskElems), [&](int64_t p0, int64_t p1) {
      k::pack_b_nz4_from_int4(isa, w + g * G * row_words, G, n, /*k_packed=*/false, row_words, b4.data(), p0 * k::kNzCols,
                              std::min(p1 * k::kNzCols, n));
    });
    k::QGemmS4Args args;
    args.m = rows;
    args.n = n;
    args.k = G;
    args.a = a.data() + g * G;
    args.lda = kk;
    args.a_rowsum = rowsum.data() + g * rows;
    args.b = b4.data();
    args.c = sums.data_ptr();
    args.ldc = n;
    args.ep.out = k::QGemmOut::kInt32;
    at::parallel_for(0, panels, parallel_grain(panels, rows * G * k::kNzCols), [&](int64_t p0, int64_t p1) { k::qgemm4_panels(isa, args, p0, p1); });
    // float16 accumulation, each term rounded to float16 first: the golden's numpy steps.
    const int32_t* s = sums.const_data_ptr<int32_t>();
    at::parallel_for(0, rows, parallel_grain(rows, n), [&](int64_t r0, int64_t r1) {
      k::a8w4_accumulate_group(isa, s + r0 * n, scale_f.data() + g * n, r1 - r0, n, acc + r0 * n);
    });
  }
  const at::Tensor both = acc16.to(at::kFloat).view({m, 2, n});
  at::Tensor y = both.select(1, 0).mul(16.0).add_(both.select(1, 1));
  if (defined(offset)) y.add_(host_view(*offset).to(at::kFloat));
  y.mul_(host_view(pertoken).to(at::kFloat).reshape({m, 1}));
  host_view(out).copy_(y);
  return out;
}

}  // namespace


at::Tensor npu_quant_matmul(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& scale,
                            const std::optional<at::Tensor>& offset,
                            const std::optional<at::Tensor>& pertoken_scale,
                            const std::optional<at::Tensor>& bias,
                            std::optional<int64_t> output_dtype, std::optional<int64_t> x1_dtype,
                            std::optional<int64_t> x2_dtype,
                            std::optional<int64_t> pertoken_scale_dtype,
                            std::optional<int64_t> scale_dtype,
                            at::OptionalIntArrayRef group_sizes,
                            const std::optional<at::Tensor>& y_scale) {
  const Plan p = plan_quant_matmul(x1, x2, scale, offset, pertoken_scale, bias, output_dtype,
                                   x1_dtype, x2_dtype, pertoken_scale_dtype, scale_dtype,
                                   group_sizes, y_scale);
  const bool on_qdev = x1.device().type() == c10::DeviceType::PrivateUse1;
  std::optional<c10::DeviceGuard> guard;
  if (on_qdev) {
    guard.emplace(x1.device());
    c10::qdev::sync_current_stream(x1.device().index());
  }
  at::Tensor out = at::empty(p.out_shape, x1.options().dtype(p.out_dtype));
  if (out.numel() == 0) return out;
  if (p.a8w4) return a8w4_matmul(p, x1, x2, scale, offset, *pertoken_scale, out);
  const int64_t m = p.m, kk = p.k, n = p.n;

  // Operands as int8 host tensors.
  at::Tensor a8, b8;  // a8: (batch1..., m, k); b8: (batch2..., k, n)
  const k::Isa isa = k::active_isa();
  // A4W4 weights stay 4-bit when the nibble kernel exists for this ISA.
  const bool nibble_kernel = p.a4w4 && !p.a4w4_group && k::qgemm4_has_kernel(isa);
  if (p.a4w4) {
    a8 = unpack_int4(host_view(x1));
    if (!nibble_kernel) {
      b8 = p.x2_k_packed ? unpack_int4(host_view(x2).transpose(-1, -2)).transpose(-1, -2)
                         : unpack_int4(host_view(x2));
    }
  } else {
    a8 = host_view(x1);
    b8 = x2_is_nz(x2) ? at::Tensor() : host_view(x2);
  }

  if (p.a4w4_group) {
    // y = pertoken * sum_g (x1_g @ (x2_g - offset_g)) * scale_g, in float32.
    const at::Tensor xa = a8.to(at::kFloat);
    const at::Tensor wb = b8.to(at::kFloat);
    const at::Tensor sc = host_view(scale).to(at::kFloat);
    const bool has_off = defined(offset);
    const at::Tensor off = has_off ? host_view(*offset).to(at::kFloat) : at::Tensor();
    at::Tensor acc = at::zeros({m, n}, xa.options());
    for (int64_t g = 0, k0 = 0; k0 < kk; ++g, k0 += p.group) {
      const int64_t len = std::min(p.group, kk - k0);
      at::Tensor wg = wb.narrow(0, k0, len);
      if (has_off) wg = wg.sub(off.select(0, g));
      acc.add_(at::matmul(xa.narrow(1, k0, len), wg).mul(sc.select(0, g)));
    }
    acc.mul_(host_view(*pertoken_scale).to(at::kFloat).reshape({m, 1}));
    host_view(out).copy_(acc);
    return out;
  }

  // Epilogue parameters.
  k::QGemmEpilogue ep;
  std::vector<float> scale_f, pertoken_f, bias_f;
  std::vector<int32_t> offset_i, bias_i;
  const auto st = scale.scalar_type();
  const auto out_t = p.out_dtype;
  const bool has_pertoken = defined(pertoken_scale);
  if (out_t != at::kInt) {
    if (st == at::kLong) {
      for (int64_t v : to_int64_vector(scale)) {
        scale_f.push_back(unpack_scale(v));
        offset_i.push_back(unpack_offset(v));
      }
      if (out_t != at::kChar) offset_i.clear();
    } else {
      scale_f = to_float_vector(scale);
      // torch_npu converts a float32 scale with npu_trans_quant_param for int8 and
      // float16 outputs without pertoken: the kernel sees a 19-bit scale.
      if (st == at::kFloat && !has_pertoken && (out_t == at::kChar || out_t == at::kHalf)) {
        for (float& s : scale_f) s = bits_float(fp19_bits(s, 0));
      }
      if (defined(offset)) {
        for (float o : to_float_vector(*offset)) offset_i.push_back(offset9(o));
      }
    }
    ep.scale = scale_f.data();
    ep.scale_stride = scale_f.size() == 1 ? 0 : 1;
    if (!offset_i.empty()) {
      ep.offset = offset_i.data();
      ep.offset_stride = offset_i.size() == 1 ? 0 : 1;
    }
  }
  if (has_pertoken) pertoken_f = to_float_vector(*pertoken_scale);
  const bool bias_per_batch = defined(bias) && bias->dim() == 3;
  if (defined(bias)) {
    if (bias->scalar_type() == at::kInt) {
      bias_i = to_int_vector(*bias);
    } else {
      bias_f = to_float_vector(*bias);
    }
  }
  switch (out_t) {
    case at::kInt: ep.out = k::QGemmOut::kInt32; break;
    case at::kChar: ep.out = k::QGemmOut::kInt8; break;
    case at::kHalf: ep.out = k::QGemmOut::kFloat16; break;
    case at::kBFloat16: ep.out = k::QGemmOut::kBFloat16; break;
    default: TORCH_INTERNAL_ASSERT(false, "unexpected output dtype");
  }

  // Batches: x1 and x2 broadcast to p.batch.
  const int64_t batches = c10::multiply_integers(p.batch);
  std::vector<int64_t> a_shape = p.batch, b_shape = p.batch;
  a_shape.insert(a_shape.end(), {m, kk});
  b_shape.insert(b_shape.end(), {kk, n});
  const bool b_shared = x2.dim() == 2 || c10::multiply_integers(x2.sizes().slice(0, x2.dim() - 2)) == 1;

  // A rows as one (batches * m, k) matrix; a copy only when x1 is broadcast or strided.
  const at::Tensor a_all = a8.expand(a_shape).reshape({batches * m, kk}).contiguous();
  const int8_t* a_src = a_all.const_data_ptr<int8_t>();
  const int64_t lda = k::round_up(kk, k::kNzRows);

  if (nibble_kernel) {
    // In-register unpacking: pack A as plain int8 with row sums, B as NZ4-VNNI.
    const int64_t rows = batches * m;
    std::vector<int8_t> a_s8(static_cast<size_t>(rows * lda), 0);
    std::vector<int32_t> rowsum(static_cast<size_t>(rows));
    at::parallel_for(0, rows, parallel_grain(rows, kk, kMinTaskElems), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int32_t sum = 0;
        for (int64_t i = 0; i < kk; ++i) sum += (a_s8[static_cast<size_t>(r * lda + i)] = a_src[r * kk + i]);
        rowsum[static_cast<size_t>(r)] = sum;
      }
    });
    const at::Tensor words = p.x2_k_packed ? host_view(x2).transpose(-1, -2).contiguous() : host_view(x2).contiguous();
    const int64_t row_words = words.size(1);
    std::vector<uint8_t> b4(static_cast<size_t>(k::nz4_packed_bytes(kk, n)));
    const uint32_t* w = reinterpret_cast<const uint32_t*>(words.const_data_ptr<int32_t>());
    const int64_t num_panels = k::qgemm_num_panels(n);
    at::parallel_for(0, num_panels, parallel_grain(num_panels, kk * k::kNzCols, kMinTaskElems), [&](int64_t p0, int64_t p1) {
      k::pack_b_nz4_from_int4(isa, w, kk, n, p.x2_k_packed, row_words, b4.data(), p0 * k::kNzCols,
                              std::min(p1 * k::kNzCols, n));
    });
    std::vector<float> pertoken_all;
    if (has_pertoken) {
      for (int64_t b = 0; b < batches; ++b) pertoken_all.insert(pertoken_all.end(), pertoken_f.begin(), pertoken_f.end());
    }
    k::QGemmS4Args args;
    args.m = rows;
    args.n = n;
    args.k = kk;
    args.a = a_s8.data();
    args.lda = lda;
    args.a_rowsum = rowsum.data();
    args.b = b4.data();
    args.c = out.data_ptr();
    args.ldc = n;
    args.ep = ep;
    if (!bias_i.empty()) args.ep.bias_i32 = bias_i.data();
    if (!bias_f.empty()) args.ep.bias_f = bias_f.data();
    if (has_pertoken) args.ep.pertoken = pertoken_all.data();
    at::parallel_for(0, num_panels, parallel_grain(num_panels, rows * kk * k::kNzCols), [&](int64_t p0, int64_t p1) { k::qgemm4_panels(isa, args, p0, p1); });
    return out;
  }

  std::unique_ptr<uint8_t[]> a_u8_buf(new uint8_t[static_cast<size_t>(batches * m * lda)]);  // no zero fill
  uint8_t* const a_u8_data = a_u8_buf.get();
  at::parallel_for(0, batches * m, parallel_grain(batches * m, kk, kMinTaskElems), [&](int64_t r0, int64_t r1) {
    k::pack_a_u8(a_src + r0 * kk, r1 - r0, kk, kk, a_u8_data + r0 * lda, lda);
  });

  std::vector<PackedB> packed(b_shared ? 1 : static_cast<size_t>(batches));
  at::Tensor b_all;
  if (!b_shared) b_all = b8.expand(b_shape).reshape({batches, kk, n});
  for (int64_t b = 0; b < static_cast<int64_t>(packed.size()); ++b) {
    if (b_shared && !b8.defined()) {
      nz_weight_view(x2, kk, n, packed[0].data, packed[0].colsum, packed[0].has_min);
    } else {
      const at::Tensor bb = b_shared ? b8.reshape({kk, n}) : b_all.select(0, b);
      pack_b(bb, kk, n, packed[static_cast<size_t>(b)]);
    }
  }

  const int64_t panels = k::qgemm_num_panels(n);
  const int64_t elem = static_cast<int64_t>(c10::elementSize(out_t));
  char* out_base = static_cast<char*>(out.data_ptr());
  // With one weight and no per-batch bias, all batches form one tall GEMM.
  const bool flatten = b_shared && !bias_per_batch;
  std::vector<float> pertoken_rows;
  if (flatten && has_pertoken && batches > 1) {
    pertoken_rows.reserve(static_cast<size_t>(batches * m));
    for (int64_t b = 0; b < batches; ++b) pertoken_rows.insert(pertoken_rows.end(), pertoken_f.begin(), pertoken_f.end());
  }
  const int64_t gemms = flatten ? 1 : batches;
  const int64_t rows = flatten ? batches * m : m;
  const int64_t grain = parallel_grain(gemms * panels, rows * kk * k::kNzCols);
  at::parallel_for(0, gemms * panels, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1;) {
      const int64_t g = t / panels;
      const int64_t p0 = t % panels;
      const int64_t p1 = std::min(panels, p0 + (t1 - t));
      k::QGemmArgs args;
      args.m = rows;
      args.n = n;
      args.k = kk;
      args.a = a_u8_data + g * m * lda;
      args.lda = lda;
      const PackedB& pb = packed[b_shared ? 0 : static_cast<size_t>(g)];
      args.b = pb.data;
      args.b_colsum = pb.colsum;
      args.b_has_min = pb.has_min;
      args.c = out_base + g * m * n * elem;
      args.ldc = n;
      args.ep = ep;
      if (!bias_i.empty()) args.ep.bias_i32 = bias_i.data() + (bias_per_batch ? g * n : 0);
      if (!bias_f.empty()) args.ep.bias_f = bias_f.data() + (bias_per_batch ? g * n : 0);
      if (has_pertoken) args.ep.pertoken = pertoken_rows.empty() ? pertoken_f.data() : pertoken_rows.data();
      // Row blocks of A that stay in L2 (~512 KiB) while the chunk's panels stream by.
      const int64_t block =
          lda == 0 ? std::max<int64_t>(rows, 1) : std::max<int64_t>(k::kRowBlockBytes / lda / 16 * 16, 16);
      for (int64_t r0 = 0; r0 < rows; r0 += block) {
        k::QGemmArgs part = args;
        part.m = std::min(block, rows - r0);
        part.a = args.a + r0 * lda;
        part.c = static_cast<char*>(args.c) + r0 * n * elem;
        if (part.ep.pertoken) part.ep.pertoken += r0;
        k::qgemm_panels(isa, part, p0, p1);
      }
      t += p1 - p0;
    }
  });
  return out;
}

}  // namespace at::native::qdev
