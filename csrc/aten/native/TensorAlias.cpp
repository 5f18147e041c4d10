#include <ATen/core/TensorBody.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/TensorImpl.h>

#include "QdevNative.h"

namespace at::native::qdev {

at::Tensor cpu_alias(const at::Tensor& t, bool resizable) {
  const c10::Storage& storage = t.storage();
  void* base = storage.unsafeGetStorageImpl()->mutable_data();
  c10::Storage alias_storage(c10::Storage::use_byte_size_t(), storage.nbytes(),
                             c10::DataPtr(base, c10::Device(c10::DeviceType::CPU)),
                             resizable ? c10::GetCPUAllocator() : nullptr, resizable);
  auto alias = at::detail::make_tensor<c10::TensorImpl>(
      std::move(alias_storage), c10::DispatchKeySet(c10::DispatchKey::CPU), t.dtype());
  alias.unsafeGetTensorImpl()->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
  if (t.is_conj()) alias._set_conj(true);
  if (t.is_neg()) alias._set_neg(true);
  return alias;
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
  auto alias = at::detail::make_tensor<c10::TensorImpl>(
      std::move(alias_storage), c10::DispatchKeySet(c10::DispatchKey::CPU), t.dtype());
  alias.unsafeGetTensorImpl()->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
  if (t.is_conj()) alias._set_conj(true);
  if (t.is_neg()) alias._set_neg(true);
  return alias;
}

at::Tensor qdev_view_of(const at::Tensor& owner, const at::Tensor& view) {
  auto out = at::detail::make_tensor<c10::TensorImpl>(
      c10::Storage(owner.storage()), c10::DispatchKeySet(c10::DispatchKey::PrivateUse1),
      view.dtype());
  out.unsafeGetTensorImpl()->set_sizes_and_strides(view.sizes(), view.strides(),
                                                    view.storage_offset());
  if (view.is_conj()) out._set_conj(true);
  if (view.is_neg()) out._set_neg(true);
  return out;
}

}  // namespace at::native::qdev
