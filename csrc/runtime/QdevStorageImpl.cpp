#include "QdevStorageImpl.h"

namespace c10::qdev {
namespace {

c10::intrusive_ptr<c10::StorageImpl> make_qdev_storage_impl(c10::StorageImpl::use_byte_size_t use_byte_size,
                                                            c10::SymInt size_bytes, c10::DataPtr data_ptr,
                                                            c10::Allocator* allocator, bool resizable) {
  if (data_ptr == nullptr) {
    // Sized construction: allocate like c10::StorageImpl would.
    const size_t n = size_bytes.is_heap_allocated() ? 0 : static_cast<size_t>(size_bytes.as_int_unchecked());
    data_ptr = allocator->allocate(n);
  }
  return c10::make_intrusive<QdevStorageImpl>(use_byte_size, std::move(size_bytes), std::move(data_ptr),
                                              allocator, resizable);
}

const bool g_registered = [] {
  c10::SetStorageImplCreate(c10::DeviceType::PrivateUse1, &make_qdev_storage_impl);
  return true;
}();

}  // namespace
}  // namespace c10::qdev
