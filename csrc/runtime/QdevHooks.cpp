// PrivateUse1 hooks: what the autograd engine, pin_memory, generators,
// storage resize and DLPack ask of the backend.
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <ATen/core/CachingHostAllocator.h>
#include <c10/core/Allocator.h>

#include <cstring>

#include "QdevException.h"
#include "QdevFunctions.h"
#include "QdevGenerator.h"
#include "QdevStream.h"

namespace c10::qdev {
namespace {

struct QdevHooks final : public at::PrivateUse1HooksInterface {
  void init() const override { (void)device_count(); }
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return device_count() > 0; }
  bool hasPrimaryContext(c10::DeviceIndex device_index) const override {
    return device_index >= 0 && device_index < device_count();
  }
  c10::DeviceIndex deviceCount() const override { return device_count(); }
  void setCurrentDevice(c10::DeviceIndex device) const override { set_device(device); }
  c10::DeviceIndex getCurrentDevice() const override { return current_device(); }
  c10::DeviceIndex exchangeDevice(c10::DeviceIndex device) const override {
    return exchange_device(device);
  }
  c10::DeviceIndex maybeExchangeDevice(c10::DeviceIndex device) const override {
    return maybe_exchange_device(device);
  }

  const at::Generator& getDefaultGenerator(c10::DeviceIndex device_index) const override {
    return default_generator(device_index);
  }
  at::Generator getNewGenerator(c10::DeviceIndex device_index) const override {
    return new_generator(device_index);
  }

  at::Device getDeviceFromPtr(void* data) const override {
    qdPointerAttributes attr;
    QDEV_CHECK(qdPointerGetAttributes(&attr, data));
    TORCH_CHECK(attr.type == qdMemoryTypeDevice, "The pointer ", data,
                " does not point to qdev device memory");
    return at::Device(c10::DeviceType::PrivateUse1, static_cast<c10::DeviceIndex>(attr.device));
  }

  bool isPinnedPtr(const void* data) const override {
    qdPointerAttributes attr;
    return qdPointerGetAttributes(&attr, data) == qdSuccess && attr.type == qdMemoryTypeHost;
  }

  c10::Allocator* getPinnedMemoryAllocator() const override {
    return at::getHostAllocator(at::kPrivateUse1);
  }

  // untyped_storage().resize_() on qdev: reallocate and keep the old bytes.
  void resizePrivateUse1Bytes(const c10::Storage& storage, size_t newsize) const override {
    c10::StorageImpl* impl = storage.unsafeGetStorageImpl();
    TORCH_CHECK(impl->resizable(), "Trying to resize storage that is not resizable");
    size_t old = impl->nbytes();
    if (newsize == old) return;
    c10::DeviceIndex device = impl->device().index();
    c10::DeviceIndex previous = exchange_device(device);
    sync_current_stream(device);
    c10::DataPtr fresh = impl->allocator()->allocate(newsize);
    size_t keep = std::min(old, newsize);
    if (keep > 0) std::memcpy(fresh.get(), impl->data(), keep);
    impl->set_data_ptr_noswap(std::move(fresh));
    impl->set_nbytes(newsize);
    set_device(previous);
  }
};

// Registered at load time so that every later torch call finds the hooks.
const bool g_registered = [] {
  at::RegisterPrivateUse1HooksInterface(new QdevHooks());
  return true;
}();

}  // namespace
}  // namespace c10::qdev
