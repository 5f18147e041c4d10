#pragma once

#include <c10/core/CachingDeviceAllocator.h>

#include "QdevMacros.h"

namespace c10::qdev {

// The caching device allocator behind every qdev tensor. Freed blocks stay
// cached per (device, stream) and are reused by later allocations on the same
// stream; blocks used on other streams (recordStream) return to the cache only
// once that work completed. A failed device allocation frees the cache and
// retries before raising torch.OutOfMemoryError.
QDEV_EXPORT c10::DeviceAllocator* device_allocator();

}  // namespace c10::qdev
