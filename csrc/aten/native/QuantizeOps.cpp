// npu_quantize (static per-tensor / per-channel quantization to int8, uint8, int32 or int32-packed
// int4) and npu_anti_quant (its inverse), torch_npu semantics. Elementwise fp32 ATen ops on host
// views; rounding is half to even, results saturate.
#include <ATen/ops/empty.h>
#include <ATen/ops/round.h>
#include <c10/core/DeviceGuard.h>

#include "../../runtime/QdevStream.h"
#include "DeviceChecks.h"
#include "MoeOps.h"
#include "QdevFormat.h"
#include "QuantCommon.h"

namespace at::native::qdev {
namespace {

// A quantization parameter as fp32, shaped to broadcast along `axis` of an n-D input.
at::Tensor along_axis(const at::Tensor& p, int64_t ndim, int64_t axis, int64_t size, const char* op, const char* name) {
  at::Tensor f = logical_host_view(p).to(at::kFloat);
  if (f.dim() <= 1) {
    TORCH_CHECK(f.numel() == 1 || f.numel() == size, op, ": ", name, " must hold 1 or ", size, " values (the size of "
                "the quantization axis), but its shape is ", p.sizes());
    if (f.numel() == 1) return f.reshape({});
    std::vector<int64_t> shape(static_cast<size_t>(ndim), 1);
    shape[static_cast<size_t>(axis)] = size;
    return f.reshape(shape);
  }
  TORCH_CHECK(f.dim() == ndim, op, ": a multi-dim ", name, " must have the input's rank");
  for (int64_t d = 0; d < ndim; ++d) {
    TORCH_CHECK(f.size(d) == 1 || (d == axis && f.size(d) == size), op, ": ", name, " must be 1 on every dim but "
                "the quantization axis, but its shape is ", p.sizes());
  }
  return f;
}

// int values in [-8, 7] along the last dim -> int32 words of 8 nibbles, LSB first.
at::Tensor pack_int4_last(const at::Tensor& v) {
  const at::Tensor c = v.to(at::kChar).contiguous();
  auto sizes = c.sizes().vec();
  sizes.back() /= 8;
  at::Tensor out = at::empty(sizes, c.options().dtype(at::kInt));
  pack_int4_words(c.const_data_ptr<int8_t>(), reinterpret_cast<uint32_t*>(out.mutable_data_ptr<int32_t>()),
                  out.numel());
  return out;
}

}  // namespace

at::Tensor npu_quantize(const at::Tensor& self, const at::Tensor& scales, const std::optional<at::Tensor>& zero_points,
                        at::ScalarType dtype, int64_t axis, bool div_mode) {
  constexpr const char* op = "npu_quantize";
  const auto xdt = self.scalar_type();
  TORCH_CHECK(xdt == at::kFloat || xdt == at::kHalf || xdt == at::kBFloat16, op, ": self must be float32, float16 "
              "or bfloat16, but it is ", dtype_name(xdt));
  TORCH_CHECK(self.dim() >= 1, op, ": self must have at least one dim");
  same_device(scales, self);
  if (zero_points.has_value() && zero_points->defined()) same_device(*zero_points, self);
  int64_t qmin = -128, qmax = 127;
  at::ScalarType out_t = at::kChar;
  if (div_mode) {
    TORCH_CHECK(dtype == at::kQInt8 || dtype == at::kQUInt8 || dtype == at::kInt, op, ": with div_mode=True dtype "
                "must be torch.qint8, torch.quint8 or torch.int32, but it is ", c10::toString(dtype));
    if (dtype == at::kQUInt8) qmin = 0, qmax = 255, out_t = at::kByte;
    if (dtype == at::kInt) qmin = INT32_MIN, qmax = INT32_MAX, out_t = at::kInt;
    TORCH_CHECK(axis < self.dim() && axis >= -self.dim(), op, ": axis must be in [", -self.dim(), ", ", self.dim(),
                "), but it is ", axis);
  } else {
    TORCH_CHECK(dtype == at::kQInt8 || dtype == at::kChar || dtype == at::kQUInt4x2, op, ": with div_mode=False "
                "dtype must be torch.qint8, torch.int8 or torch.quint4x2, but it is ", c10::toString(dtype));
    TORCH_CHECK(axis >= -2, op, ": with div_mode=False axis must be >= -2, but it is ", axis);
    axis = axis == -2 ? -2 : -1;
    TORCH_CHECK(self.dim() >= -axis, op, ": axis -2 needs a 2-D or larger self");
    if (dtype == at::kQUInt4x2) {
      TORCH_CHECK(self.size(-1) % 8 == 0, op, ": the last dim of self must be divisible by 8 for torch.quint4x2, "
                  "but it is ", self.size(-1));
      qmin = -8, qmax = 7, out_t = at::kInt;
    }
  }
  const int64_t ax = c10::maybe_wrap_dim(axis, self.dim());
  std::optional<c10::DeviceGuard> guard;
  enter(self, guard);
  const at::Tensor s = along_axis(scales, self.dim(), ax, self.size(ax), op, "scales");
  at::Tensor v = logical_host_view(self).to(at::kFloat);
  v = div_mode ? v.div(s) : v.mul(s);
  if (zero_points.has_value() && zero_points->defined()) {
    v = v.add(along_axis(*zero_points, self.dim(), ax, self.size(ax), op, "zero_points"));
  }
  v = at::round(v);  // half to even
  at::Tensor r;
  if (out_t == at::kInt && dtype == at::kInt) {
    r = v.clamp(-2147483648.0, 2147483520.0).to(at::kInt);  // the largest float below 2^31
  } else {
    r = v.clamp(static_cast<double>(qmin), static_cast<double>(qmax));
    r = dtype == at::kQUInt4x2 ? pack_int4_last(r) : r.to(out_t);
  }
  at::Tensor out = at::empty(r.sizes(), self.options().dtype(out_t));
  logical_host_view(out).copy_(r);
  return out;
}

at::Tensor npu_anti_quant(const at::Tensor& x, const at::Tensor& scale, const std::optional<at::Tensor>& offset,
                          std::optional<int64_t> dst_dtype, std::optional<int64_t> src_dtype) {
  constexpr const char* op = "npu_anti_quant";
  const auto xdt = x.scalar_type();
  TORCH_CHECK(xdt == at::kChar || xdt == at::kInt, op, ": x must be int8 or int32 (8 int4 per word), but it is ",
              dtype_name(xdt));
  TORCH_CHECK(x.dim() >= 1 && x.dim() <= 8, op, ": x must be 1-D to 8-D");
  const auto out_t = static_cast<at::ScalarType>(dst_dtype.value_or(static_cast<int64_t>(at::kHalf)));
  TORCH_CHECK(out_t == at::kHalf || out_t == at::kBFloat16, op, ": dst_dtype must be torch.float16 or "
              "torch.bfloat16, but it is ", dtype_name(out_t));
  if (src_dtype.has_value()) {
    const auto st = static_cast<at::ScalarType>(*src_dtype);
    TORCH_CHECK((st == at::kChar && xdt == at::kChar) || (st == at::kQUInt4x2 && xdt == at::kInt), op,
                ": src_dtype ", c10::toString(st), " does not match x's dtype ", dtype_name(xdt));
  }
  TORCH_CHECK(scale.scalar_type() == at::kFloat || scale.scalar_type() == at::kBFloat16, op, ": scale must be "
              "float32 or bfloat16, but it is ", dtype_name(scale.scalar_type()));
  same_device(scale, x);
  if (offset.has_value() && offset->defined()) {
    same_device(*offset, x);
    TORCH_CHECK(offset->sizes() == scale.sizes(), op, ": offset must have scale's shape");
  }
  std::optional<c10::DeviceGuard> guard;
  enter(x, guard);
  at::Tensor v = xdt == at::kInt ? unpack_int4(logical_host_view(x)) : logical_host_view(x);
  const int64_t last = v.size(-1);
  auto param = [&](const at::Tensor& p, const char* name) {
    at::Tensor f = logical_host_view(p).to(at::kFloat);
    TORCH_CHECK(f.numel() == 1 || f.numel() == last || (v.dim() >= 2 && f.numel() == v.size(-2)), op, ": ", name,
                " must hold 1, x[-1] (", last, ") or x[-2] values, but its shape is ", p.sizes());
    if (f.numel() == 1 || f.numel() == last) return f.reshape({f.numel()});
    return f.reshape({f.numel(), 1});
  };
  at::Tensor r = v.to(at::kFloat);
  if (offset.has_value() && offset->defined()) r = r.add(param(*offset, "offset"));
  r = r.mul(param(scale, "scale"));
  at::Tensor out = at::empty(v.sizes(), x.options().dtype(out_t));
  logical_host_view(out).copy_(r);
  return out;
}

}  // namespace at::native::qdev
