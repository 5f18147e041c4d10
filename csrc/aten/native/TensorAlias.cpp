#include <ATen/core/TensorBody.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/TensorImpl.h>

#include "QdevNative.h"

namespace at::native::qdev {

namespace {

// A tensor of `key` over `storage` with like's dtype, sizes, strides, offset and conj/neg bits.
at::Tensor tensor_over(c10::Storage storage, c10::DispatchKey key, const at::Tensor& like) {
  auto out = at::detail::make_tensor<c10::TensorImpl>(std::move(storage), c10::DispatchKeySet(key),
                                                      like.dtype());
  out.unsafeGetTensorImpl()->set_sizes_and_strides(like.sizes(), like.strides(), like.storage_offset());
  if (like.is_conj()) out._set_conj(true);
  if (like.is_neg()) out._set_neg(true);
  return out;
}

}  // namespace

at::Tensor cpu_alias(const at::Tensor& t, bool resizable) {
  const c10::Storage& storage = t.storage();
  void* base = storage.unsafeGetStorageImpl()->mutable_data();
  c10::Storage alias_storage(c10::Storage::use_byte_size_t(), storage.nbytes(),
                             c10::DataPtr(base, c10::Device(c10::DeviceType::CPU)),
                             resizable ? c10::GetCPUAllocator() : nullptr, resizable);
  return tensor_over(std::move(alias_storage), c10::DispatchKey::CPU, t);
}

at::Tensor owning_cpu_alias(const at::Tensor& t) {
  // The DataPtr's context holds a reference to the qdev storage: a consumer that outlives every
  // qdev tensor (a DLPack importer) still keeps the device memory allocated.
  auto* keep = new c10::Storage(t.storage());
  void* base = keep->unsafeGetStorageImpl()->mutable_data();
  c10::DataPtr ptr(base, keep, [](void* ctx) { delete static_cast<c10::Storage*>(ctx); },
                   c10::Device(c10::DeviceType::CPU));
  c10::Storage alias_storage(c10::Storage::use_byte_size_t(), keep->nbytes(), std::move(ptr),
                             /*allocator=*/nullptr, /*resizable=*/false);
  return tensor_over(std::move(alias_storage), c10::DispatchKey::CPU, t);
}

at::Tensor qdev_view_of(const at::Tensor& owner, const at::Tensor& view) {
  return tensor_over(c10::Storage(owner.storage()), c10::DispatchKey::PrivateUse1, view);
}

}  // namespace at::native::qdev
