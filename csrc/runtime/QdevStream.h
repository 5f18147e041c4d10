#pragma once

#include <c10/core/Stream.h>

#include "QdevMacros.h"
#include "qdrt.h"

namespace c10::qdev {

// Stream ids: 0 is the device's default stream; 1..kStreamsPerPool are the
// normal-priority pool and the next kStreamsPerPool the high-priority pool,
// handed out round-robin as in CUDA's stream pools.
constexpr int kStreamsPerPool = 32;
constexpr int kPriorityLevels = 2;  // priority 0 and -1

QDEV_EXPORT qdStream_t native_stream(const c10::Stream& stream);
QDEV_EXPORT c10::Stream default_stream(c10::DeviceIndex device);
QDEV_EXPORT c10::Stream stream_from_pool(c10::DeviceIndex device, int priority);
QDEV_EXPORT c10::Stream current_stream(c10::DeviceIndex device);
QDEV_EXPORT void set_current_stream(const c10::Stream& stream);
QDEV_EXPORT int stream_priority(const c10::Stream& stream);

// Host code about to touch device memory waits for the current stream first,
// so queued asynchronous copies are never overtaken.
QDEV_EXPORT void sync_current_stream(c10::DeviceIndex device);

}  // namespace c10::qdev
