// The minimal op set a PrivateUse1 backend must provide natively: factories,
// views and storage plumbing, which the CPU fallback cannot emulate.
#include <ATen/EmptyTensor.h>
#include <ATen/TensorUtils.h>
#include <ATen/native/Resize.h>
#include <ATen/ops/_local_scalar_dense_native.h>
#include <ATen/ops/_reshape_alias_native.h>
#include <ATen/ops/as_strided_native.h>
#include <ATen/ops/fill_native.h>
#include <ATen/ops/resize_native.h>
#include <ATen/ops/set_native.h>
#include <ATen/ops/view_native.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/ones_like.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/DeviceGuard.h>

#include "../../runtime/QdevFunctions.h"
#include "../../runtime/QdevStorageImpl.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QdevNative.h"

namespace at::native::qdev {
namespace {

constexpr auto kQdev = c10::DeviceType::PrivateUse1;

c10::Device resolve_device(std::optional<c10::Device> device) {
  c10::Device d = device.value_or(c10::Device(kQdev));
  TORCH_CHECK(d.type() == kQdev, "qdev factory called with device ", d);
  c10::DeviceIndex index = c10::qdev::resolve_device_index(d.has_index() ? d.index() : -1);
  return c10::Device(kQdev, index);
}

void check_factory_options(std::optional<c10::Layout> layout, std::optional<bool> pin_memory) {
  TORCH_CHECK(layout.value_or(c10::kStrided) == c10::kStrided,
              "qdev tensors only support the strided layout, got ", *layout);
  TORCH_CHECK(!pin_memory.value_or(false), "Only dense CPU tensors can be pinned");
}

// Host access must come after the asynchronous work queued on the stream.
void sync_for_host(const at::Tensor& t) { c10::qdev::sync_current_stream(t.device().index()); }

}  // namespace

// Every qdev storage is a QdevStorageImpl, so that it can carry a format.
at::Tensor make_qdev_tensor(c10::IntArrayRef size, std::optional<c10::IntArrayRef> stride,
                            c10::ScalarType dtype, c10::Device device) {
  at::detail::check_size_nonnegative(size);
  const auto meta = c10::scalarTypeToTypeMeta(dtype);
  const size_t nbytes = stride.has_value()
                            ? at::detail::computeStorageNbytes(size, *stride, meta.itemsize())
                            : at::detail::computeStorageNbytesContiguous(size, meta.itemsize());
  c10::DeviceGuard guard(device);
  c10::Allocator* allocator = c10::GetAllocator(kQdev);
  auto storage = c10::make_intrusive<c10::qdev::QdevStorageImpl>(
      c10::StorageImpl::use_byte_size_t(), static_cast<int64_t>(nbytes), allocator->allocate(nbytes),
      allocator, /*resizable=*/true);
  auto t = at::detail::make_tensor<c10::TensorImpl>(c10::Storage(std::move(storage)),
                                                    c10::DispatchKeySet(c10::DispatchKey::PrivateUse1), meta);
  if (stride.has_value()) {
    t.unsafeGetTensorImpl()->set_sizes_and_strides(size, *stride);
  } else {
    t.unsafeGetTensorImpl()->set_sizes_contiguous(size);
  }
  return t;
}

at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout,
                               std::optional<c10::Device> device, std::optional<bool> pin_memory,
                               std::optional<c10::MemoryFormat> memory_format) {
  check_factory_options(layout, pin_memory);
  at::Tensor t = make_qdev_tensor(size, std::nullopt, c10::dtype_or_default(dtype), resolve_device(device));
  const auto mf = memory_format.value_or(c10::MemoryFormat::Contiguous);
  if (mf != c10::MemoryFormat::Contiguous) t.unsafeGetTensorImpl()->empty_tensor_restride(mf);
  return t;
}

at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride,
                         std::optional<c10::ScalarType> dtype, std::optional<c10::Layout> layout,
                         std::optional<c10::Device> device, std::optional<bool> pin_memory) {
  check_factory_options(layout, pin_memory);
  return make_qdev_tensor(size, stride, c10::dtype_or_default(dtype), resolve_device(device));
}

at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset) {
  return at::native::as_strided_tensorimpl(self, size, stride, storage_offset);
}

at::Tensor view(const at::Tensor& self, c10::IntArrayRef size) {
  return at::native::view(self, size);
}

at::Tensor reshape_alias(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride) {
  return at::native::_reshape_alias(self, size, stride);
}

const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format) {
  TORCH_CHECK(!is_internal_format(self), "resize_ of a qdev tensor in an internal format (",
              format::name(get_npu_format(self)), ") is not supported; cast it to ND first");
  c10::DeviceGuard guard(self.device());  // a grown storage comes from this device
  sync_for_host(self);
  return at::native::resize_(self, size, memory_format);
}

at::Tensor& set_source_storage_offset(at::Tensor& self, c10::Storage source, int64_t offset,
                                      c10::IntArrayRef size, c10::IntArrayRef stride) {
  c10::DeviceGuard guard(self.device());
  return at::native::set_storage_cpu_(self, std::move(source), offset, size, stride);
}

at::Tensor& set_source_storage(at::Tensor& self, c10::Storage source) {
  int64_t numel = static_cast<int64_t>(source.nbytes() / self.dtype().itemsize());
  return set_source_storage_offset(self, std::move(source), 0, {numel}, {});
}

at::Tensor& set_source_tensor(at::Tensor& self, const at::Tensor& source) {
  if (self.is_same(source)) return self;
  return set_source_storage_offset(self, source.storage(), source.storage_offset(),
                                   source.sizes(), source.strides());
}

at::Tensor& set_empty(at::Tensor& self) {
  c10::DeviceGuard guard(self.device());
  c10::Allocator* allocator = c10::GetAllocator(kQdev);
  c10::Storage storage(c10::make_intrusive<c10::qdev::QdevStorageImpl>(
      c10::StorageImpl::use_byte_size_t(), 0, allocator->allocate(0), allocator, /*resizable=*/true));
  return set_source_storage_offset(self, std::move(storage), 0, {0}, {});
}

c10::Scalar local_scalar_dense(const at::Tensor& self) {
  sync_for_host(self);
  return at::native::_local_scalar_dense_cpu(logical_host_view(self));
}

at::Tensor& fill_scalar_(at::Tensor& self, const c10::Scalar& value) {
  if (self.numel() == 0) return self;
  sync_for_host(self);
  at::Tensor nd_base;
  at::Tensor view = logical_host_view(self, &nd_base);
  at::native::fill_(view, value);
  if (nd_base.defined()) store_nd_base(self, nd_base);
  return self;
}

at::Tensor& fill_tensor_(at::Tensor& self, const at::Tensor& value) {
  TORCH_CHECK(value.dim() == 0,
              "fill_ only supports 0-dimension value tensor but got tensor with ", value.dim(),
              " dimensions.");
  return fill_scalar_(self, value.item());
}

at::Tensor& zero_(at::Tensor& self) { return fill_scalar_(self, 0); }

void record_stream(at::Tensor& self, c10::Stream stream) {
  TORCH_CHECK(stream.device_type() == kQdev, "record_stream: expected a qdev stream, got one on ",
              stream.device());
  c10::getDeviceAllocator(kQdev)->recordStream(self.storage().data_ptr(), stream);
}

std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor& input, double p,
                                                  std::optional<bool> train) {
  TORCH_CHECK(p >= 0 && p <= 1, "dropout probability has to be between 0 and 1, but got ", p);
  auto mask_options = input.options().dtype(c10::kBool);
  if (train.has_value() && !*train) {
    return {input.clone(), at::ones_like(input, mask_options)};
  }
  double keep = 1.0 - p;
  double scale = keep == 0 ? 0.0 : 1.0 / keep;
  at::Tensor mask = at::empty_like(input, mask_options);
  mask.bernoulli_(keep);
  at::Tensor output = input.mul(mask).mul_(scale);
  return {output, mask};
}

}  // namespace at::native::qdev
