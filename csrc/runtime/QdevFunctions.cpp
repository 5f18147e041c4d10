#include "QdevFunctions.h"

#include <c10/util/Exception.h>

#include "QdevException.h"

namespace c10::qdev {

c10::DeviceIndex device_count() noexcept {
  static const c10::DeviceIndex count = [] {
    int n = 0;
    if (qdGetDeviceCount(&n) != qdSuccess) return c10::DeviceIndex(0);
    return static_cast<c10::DeviceIndex>(n);
  }();
  return count;
}

void check_device_index(c10::DeviceIndex device) {
  TORCH_CHECK(device >= 0 && device < device_count(), "Invalid device index ",
                    static_cast<int>(device), " for qdev: expected 0 <= index < ",
                    static_cast<int>(device_count()),
                    " (invalid device ordinal; QDEV_DEVICE_COUNT sets the count)");
}

c10::DeviceIndex resolve_device_index(c10::DeviceIndex device) {
  if (device < 0) return current_device();
  check_device_index(device);
  return device;
}

c10::DeviceIndex current_device() {
  int d = 0;
  QDEV_CHECK(qdGetDevice(&d));
  return static_cast<c10::DeviceIndex>(d);
}

void set_device(c10::DeviceIndex device) {
  check_device_index(device);
  QDEV_CHECK(qdSetDevice(device));
}

c10::DeviceIndex exchange_device(c10::DeviceIndex device) {
  c10::DeviceIndex previous = current_device();
  if (device >= 0 && device != previous) set_device(device);
  return previous;
}

c10::DeviceIndex maybe_exchange_device(c10::DeviceIndex device) {
  return exchange_device(device);
}

}  // namespace c10::qdev
