#pragma once

#include <c10/core/Device.h>

#include "QdevMacros.h"

namespace c10::qdev {

// Number of qdev devices; never throws (0 when the runtime reports none).
QDEV_EXPORT c10::DeviceIndex device_count() noexcept;
QDEV_EXPORT c10::DeviceIndex current_device();
QDEV_EXPORT void set_device(c10::DeviceIndex device);
QDEV_EXPORT c10::DeviceIndex exchange_device(c10::DeviceIndex device);
QDEV_EXPORT c10::DeviceIndex maybe_exchange_device(c10::DeviceIndex device);

// Raises a clear error for indices outside [0, device_count()).
QDEV_EXPORT void check_device_index(c10::DeviceIndex device);

// Resolves -1 to the current device and validates the rest.
QDEV_EXPORT c10::DeviceIndex resolve_device_index(c10::DeviceIndex device);

}  // namespace c10::qdev
