#include "QdevStream.h"

#include <array>
#include <atomic>
#include <mutex>
#include <vector>

#include "QdevException.h"
#include "QdevFunctions.h"

namespace c10::qdev {
namespace {

struct DeviceStreams {
  std::once_flag once;
  std::array<qdStream_t, kStreamsPerPool * kPriorityLevels> pool{};
  std::array<std::atomic<uint32_t>, kPriorityLevels> next{};
};

DeviceStreams& streams_of(c10::DeviceIndex device) {
  static std::vector<DeviceStreams>* all = new std::vector<DeviceStreams>(device_count());
  return (*all)[device];
}

void init_pool(c10::DeviceIndex device) {
  DeviceStreams& ds = streams_of(device);
  std::call_once(ds.once, [&] {
    c10::DeviceIndex previous = exchange_device(device);
    for (int level = 0; level < kPriorityLevels; ++level) {
      for (int i = 0; i < kStreamsPerPool; ++i) {
        QDEV_CHECK(qdStreamCreateWithPriority(&ds.pool[level * kStreamsPerPool + i],
                                              qdStreamDefault, -level));
      }
    }
    set_device(previous);
  });
}

// Current stream id per device, per thread; 0 (the default stream) initially.
thread_local std::vector<c10::StreamId> tls_current;

c10::StreamId& current_id(c10::DeviceIndex device) {
  if (tls_current.empty()) tls_current.assign(device_count(), 0);
  return tls_current[device];
}

void check_stream_id(c10::StreamId id) {
  TORCH_CHECK(id >= 0 && id <= kStreamsPerPool * kPriorityLevels,
              "Invalid qdev stream id ", id);
}

}  // namespace

qdStream_t native_stream(const c10::Stream& stream) {
  TORCH_CHECK(stream.device_type() == c10::DeviceType::PrivateUse1,
              "Expected a qdev stream but got a stream on ", stream.device());
  check_device_index(stream.device_index());
  check_stream_id(stream.id());
  if (stream.id() == 0) {
    qdStream_t s = nullptr;
    QDEV_CHECK(qdDeviceGetDefaultStream(stream.device_index(), &s));
    return s;
  }
  init_pool(stream.device_index());
  return streams_of(stream.device_index()).pool[stream.id() - 1];
}

c10::Stream default_stream(c10::DeviceIndex device) {
  device = resolve_device_index(device);
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device), 0);
}

c10::Stream stream_from_pool(c10::DeviceIndex device, int priority) {
  device = resolve_device_index(device);
  int level = priority < 0 ? 1 : 0;  // anything below 0 is "high"
  DeviceStreams& ds = streams_of(device);
  uint32_t index = ds.next[level].fetch_add(1) % kStreamsPerPool;
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device),
                     1 + level * kStreamsPerPool + index);
}

c10::Stream current_stream(c10::DeviceIndex device) {
  device = resolve_device_index(device);
  return c10::Stream(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, device),
                     current_id(device));
}

void set_current_stream(const c10::Stream& stream) {
  TORCH_CHECK(stream.device_type() == c10::DeviceType::PrivateUse1,
              "Expected a qdev stream but got a stream on ", stream.device());
  check_device_index(stream.device_index());
  check_stream_id(stream.id());
  current_id(stream.device_index()) = stream.id();
}

int stream_priority(const c10::Stream& stream) {
  return stream.id() > kStreamsPerPool ? -1 : 0;
}

void sync_current_stream(c10::DeviceIndex device) {
  qdStream_t s = native_stream(current_stream(device));
  if (qdStreamQuery(s) != qdSuccess) QDEV_CHECK(qdStreamSynchronize(s));
}

}  // namespace c10::qdev
