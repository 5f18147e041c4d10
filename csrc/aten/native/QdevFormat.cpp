#include "QdevFormat.h"

#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/DeviceGuard.h>

#include <atomic>

#include "../../kernels/common/qd_common.h"
#include "../../kernels/matmul/qd_qgemm.h"
#include "../../kernels/pack/qd_nz_layout.h"
#include "../../runtime/QdevStorageImpl.h"
#include "../../runtime/QdevStream.h"
#include "QdevNative.h"

namespace at::native::qdev {

namespace k = ::qdev::kernels;
using c10::qdev::QdevStorageImpl;
using c10::qdev::qdev_storage_impl;

namespace format {

const char* name(int64_t fmt) {
  switch (fmt) {
    case kUndefined: return "UNDEFINED";
    case kNCHW: return "NCHW";
    case kNHWC: return "NHWC";
    case kND: return "ND";
    case kNC1HWC0: return "NC1HWC0";
    case kFractalZ: return "FRACTAL_Z";
    case kNC1HWC0_C04: return "NC1HWC0_C04";
    case kHWCN: return "HWCN";
    case kNDHWC: return "NDHWC";
    case kFractalNZ: return "FRACTAL_NZ";
    case kNCDHW: return "NCDHW";
    case kNDC1HWC0: return "NDC1HWC0";
    case kFractalZ3D: return "FRACTAL_Z_3D";
    case kNC: return "NC";
    case kNCL: return "NCL";
    case kNZ_C0_16: return "FRACTAL_NZ_C0_16";
    case kNZ_C0_32: return "FRACTAL_NZ_C0_32";
    case kNZ_C0_2: return "FRACTAL_NZ_C0_2";
    case kNZ_C0_4: return "FRACTAL_NZ_C0_4";
    case kNZ_C0_8: return "FRACTAL_NZ_C0_8";
    default: return nullptr;
  }
}

bool is_base(int64_t fmt) {
  return fmt == kND || fmt == kNCHW || fmt == kNHWC || fmt == kNCDHW || fmt == kNDHWC;
}

bool is_nz(int64_t fmt) {
  return fmt == kFractalNZ || fmt == kNZ_C0_16 || fmt == kNZ_C0_32 || fmt == kNZ_C0_2 ||
         fmt == kNZ_C0_4;
}

}  // namespace format

namespace {

std::atomic<bool> g_allow_internal_format{true};

bool is_qdev(const at::Tensor& t) { return t.device().type() == c10::DeviceType::PrivateUse1; }

int64_t guessed_base_format(const at::Tensor& t) {
  return t.dim() == 4 ? format::kNCHW : t.dim() == 5 ? format::kNCDHW : format::kND;
}

int64_t nz_c0(int64_t fmt, const at::Tensor& t, std::optional<int64_t> customize_dtype) {
  switch (fmt) {
    case format::kNZ_C0_16: return 16;
    case format::kNZ_C0_32: return 32;
    case format::kNZ_C0_2: return 2;
    case format::kNZ_C0_4: return 4;
    default: break;
  }
  if (customize_dtype.has_value()) {
    TORCH_CHECK(*customize_dtype == 3 && t.scalar_type() == at::kInt,
                "customize_dtype is not supported by the current soc version.");
    return 8;
  }
  return 32 / std::min<int64_t>(static_cast<int64_t>(t.element_size()), 2);
}

void check_qdev_tensor(const at::Tensor& t) {
  TORCH_CHECK(is_qdev(t), "Expected qdev tensor, please check whether the input tensor device is correct.");
}

int64_t batch_of(c10::IntArrayRef sizes) {
  int64_t b = 1;
  for (size_t i = 0; i + 2 < sizes.size(); ++i) b *= sizes[i];
  return b;
}

// A new qdev tensor whose storage holds `bytes` and whose geometry is the
// contiguous layout of `sizes`.
at::Tensor new_qdev_tensor(c10::IntArrayRef sizes, int64_t bytes, const at::Tensor& like) {
  const int64_t item = static_cast<int64_t>(like.element_size());
  at::Tensor t = at::empty({(bytes + item - 1) / item}, like.options());
  t.unsafeGetTensorImpl()->set_sizes_contiguous(sizes);
  return t;
}

}  // namespace

void set_allow_internal_format(bool allow) { g_allow_internal_format = allow; }
bool allow_internal_format() { return g_allow_internal_format; }

bool is_internal_format(const at::Tensor& t) {
  if (!t.defined() || !is_qdev(t) || !t.has_storage()) return false;
  const QdevStorageImpl* impl = qdev_storage_impl(t.storage());
  if (impl == nullptr || !format::is_nz(impl->format) || t.scalar_type() != impl->dtype) return false;
  // A view reaching past the encoded ND buffer is a raw view of the bytes
  // (e.g. untyped_storage().cpu()), not of the logical values.
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 0) return true;
    last += (t.size(d) - 1) * t.stride(d);
  }
  return last < c10::multiply_integers(impl->base_sizes);
}

at::Tensor logical_host_view(const at::Tensor& t, at::Tensor* nd_base) {
  if (!is_internal_format(t)) {
    if (nd_base) *nd_base = at::Tensor();
    return is_qdev(t) ? cpu_alias(t) : t;
  }
  const QdevStorageImpl* impl = qdev_storage_impl(t.storage());
  const auto& base = impl->base_sizes;
  at::Tensor nd = at::empty(base, t.options().device(at::kCPU));
  const int64_t rows = base[base.size() - 2], cols = base.back();
  k::nz_to_nd(impl->data(), nd.data_ptr(), batch_of(base), rows, cols,
              static_cast<int64_t>(t.element_size()), impl->c0);
  if (nd_base) *nd_base = nd;
  at::Tensor view = nd.as_strided(t.sizes(), t.strides(), t.storage_offset());
  if (t.is_conj()) view._set_conj(true);
  if (t.is_neg()) view._set_neg(true);
  return view;
}

void store_nd_base(const at::Tensor& t, const at::Tensor& nd_base) {
  QdevStorageImpl* impl = qdev_storage_impl(t.storage());
  TORCH_INTERNAL_ASSERT(impl != nullptr && format::is_nz(impl->format));
  const auto& base = impl->base_sizes;
  TORCH_CHECK(nd_base.sizes() == c10::IntArrayRef(base) && nd_base.is_contiguous(),
              "cannot resize a qdev tensor in internal format ", format::name(impl->format),
              "; cast it to ND with npu_format_cast(t, 2) first");
  k::nd_to_nz(nd_base.const_data_ptr(), impl->mutable_data(), batch_of(base), base[base.size() - 2],
              base.back(), static_cast<int64_t>(t.element_size()), impl->c0);
  impl->invalidate_cache();
}

void invalidate_derived_caches(const at::Tensor& t) {
  if (!t.defined() || !is_qdev(t) || !t.has_storage()) return;
  if (QdevStorageImpl* impl = qdev_storage_impl(t.storage())) {
    if (format::is_nz(impl->format)) impl->invalidate_cache();
  }
}

bool x2_is_nz(const at::Tensor& x2) {
  if (!is_internal_format(x2) || x2.scalar_type() != at::kChar || x2.dim() != 2) return false;
  const QdevStorageImpl* impl = qdev_storage_impl(x2.storage());
  return impl->c0 == k::kNzCols && x2.storage_offset() == 0 && x2.is_contiguous() &&
         x2.sizes() == c10::IntArrayRef(impl->base_sizes);
}

void nz_weight_view(const at::Tensor& x2, int64_t kk, int64_t n, const int8_t*& data,
                    const int32_t*& colsum, bool& has_min) {
  QdevStorageImpl* impl = qdev_storage_impl(x2.storage());
  data = static_cast<const int8_t*>(impl->data());
  std::lock_guard<std::mutex> lock(impl->cache_mu);
  if (!impl->colsum_valid) {
    impl->colsum.assign(static_cast<size_t>(k::round_up(n, k::kNzCols)), 0);
    k::colsum_b_nz(data, kk, n, impl->colsum.data(), 0, n);
    impl->has_min = k::has_int8_min(data, k::nz_packed_bytes(kk, n));
    impl->colsum_valid = true;
  }
  colsum = impl->colsum.data();
  has_min = impl->has_min;
}

int64_t get_npu_format(const at::Tensor& self) {
  check_qdev_tensor(self);
  const QdevStorageImpl* impl = self.has_storage() ? qdev_storage_impl(self.storage()) : nullptr;
  if (impl == nullptr || impl->format == QdevStorageImpl::kUnset) return guessed_base_format(self);
  return impl->format;
}


int64_t get_storage_size(const at::Tensor& self) {
  check_qdev_tensor(self);
  return static_cast<int64_t>(self.storage().nbytes() / self.element_size());
}

at::Tensor npu_format_cast(const at::Tensor& self, int64_t acl_format,
                           std::optional<int64_t> customize_dtype, std::optional<int64_t> input_dtype) {
  check_qdev_tensor(self);
  TORCH_CHECK(format::name(acl_format) != nullptr && acl_format != format::kUndefined,
              "unknown format type:", acl_format);
  TORCH_CHECK_NOT_IMPLEMENTED(!input_dtype.has_value(),
                              "npu_format_cast: input_dtype (4-bit FRACTAL_NZ) is not supported on qdev");
  const int64_t src = get_npu_format(self);
  if (src == acl_format && !customize_dtype.has_value()) return self;
  if (format::is_base(src) && format::is_base(acl_format)) {
    // Relabel in place: the bytes are already in this (unpadded) layout.
    QdevStorageImpl* impl = qdev_storage_impl(self.storage());
    TORCH_CHECK(impl != nullptr, "npu_format_cast: this qdev storage cannot carry a format");
    impl->format = acl_format;
    return self;
  }
  TORCH_CHECK_NOT_IMPLEMENTED((format::is_base(src) || format::is_nz(src)) &&
                                  (format::is_base(acl_format) || format::is_nz(acl_format)),
                              "unsupported cast from ", format::name(src), " to ", format::name(acl_format));
  if (format::is_nz(acl_format)) {
    if (!allow_internal_format()) {
      TORCH_WARN("Cannot create tensor with internal format while allow_internal_format=False, "
                 "tensor will be created with base format.");
      return self;
    }
    if (self.dim() < 2) return self;  // NZ needs a matrix: stays ND
  }
  c10::DeviceGuard guard(self.device());
  c10::qdev::sync_current_stream(self.device().index());
  const at::Tensor values = logical_host_view(self).contiguous();
  if (format::is_base(acl_format)) {
    at::Tensor out = at::empty(self.sizes(), self.options());
    cpu_alias(out).copy_(values);
    qdev_storage_impl(out.storage())->format = acl_format;
    return out;
  }
  const int64_t c0 = nz_c0(acl_format, self, customize_dtype);
  const int64_t rows = self.size(-2), cols = self.size(-1), batch = batch_of(self.sizes());
  const int64_t item = static_cast<int64_t>(self.element_size());
  at::Tensor out = new_qdev_tensor(self.sizes(), batch * k::nz_matrix_elems(rows, cols, c0) * item, self);
  QdevStorageImpl* impl = qdev_storage_impl(out.storage());
  TORCH_INTERNAL_ASSERT(impl != nullptr, "qdev storages are QdevStorageImpl");
  impl->format = acl_format;
  impl->base_sizes = self.sizes().vec();
  impl->c0 = c0;
  impl->dtype = self.scalar_type();
  k::nd_to_nz(values.const_data_ptr(), impl->mutable_data(), batch, rows, cols, item, c0);
  return out;
}

at::Tensor npu_format_cast_tensor(const at::Tensor& self, const at::Tensor& dst,
                                  std::optional<int64_t> customize_dtype,
                                  std::optional<int64_t> input_dtype) {
  return npu_format_cast(self, get_npu_format(dst), customize_dtype, input_dtype);
}

at::Tensor& npu_format_cast_inplace(at::Tensor& self, int64_t acl_format,
                                    std::optional<int64_t> customize_dtype,
                                    std::optional<int64_t> input_dtype) {
  at::Tensor out = npu_format_cast(self, acl_format, customize_dtype, input_dtype);
  if (!out.is_same(self)) {
    self.unsafeGetTensorImpl()->set_storage_keep_dtype(out.storage());
    self.unsafeGetTensorImpl()->set_sizes_and_strides(out.sizes(), out.strides(), out.storage_offset());
  }
  return self;
}

at::Tensor& npu_format_cast_inplace_tensor(at::Tensor& self, const at::Tensor& src,
                                           std::optional<int64_t> customize_dtype,
                                           std::optional<int64_t> input_dtype) {
  // As torch_npu's code (not its docs): src's values are copied into self's layout.
  check_qdev_tensor(self);
  TORCH_CHECK(!customize_dtype.has_value() && !input_dtype.has_value(),
              "npu_format_cast_: customize_dtype/input_dtype are not supported with a tensor source");
  self.copy_(src);
  return self;
}


}  // namespace at::native::qdev
