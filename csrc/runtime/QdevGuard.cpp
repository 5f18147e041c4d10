#include "QdevGuard.h"

#include <c10/core/CachingDeviceAllocator.h>

#include "QdevException.h"
#include "QdevFunctions.h"
#include "QdevStream.h"

namespace c10::qdev {

QdevGuardImpl::QdevGuardImpl(c10::DeviceType t) {
  TORCH_CHECK(t == static_type, "QdevGuardImpl initialized with non-qdev DeviceType: ", t);
}

c10::DeviceType QdevGuardImpl::type() const { return static_type; }

c10::Device QdevGuardImpl::exchangeDevice(c10::Device d) const {
  TORCH_CHECK(d.type() == static_type, "Expected a qdev device, got ", d);
  return c10::Device(static_type, exchange_device(d.index()));
}

c10::Device QdevGuardImpl::getDevice() const { return c10::Device(static_type, current_device()); }

void QdevGuardImpl::setDevice(c10::Device d) const {
  TORCH_CHECK(d.type() == static_type, "Expected a qdev device, got ", d);
  set_device(d.index());
}

void QdevGuardImpl::uncheckedSetDevice(c10::Device d) const noexcept {
  (void)qdSetDevice(d.index());
}

c10::Stream QdevGuardImpl::getStream(c10::Device d) const { return current_stream(d.index()); }

c10::Stream QdevGuardImpl::getDefaultStream(c10::Device d) const {
  return default_stream(d.index());
}

c10::Stream QdevGuardImpl::getStreamFromGlobalPool(c10::Device d, bool isHighPriority) const {
  return stream_from_pool(d.index(), isHighPriority ? -1 : 0);
}

c10::Stream QdevGuardImpl::getNewStream(c10::Device d, int priority) const {
  return stream_from_pool(d.index(), priority);
}

c10::Stream QdevGuardImpl::exchangeStream(c10::Stream s) const {
  c10::Stream previous = current_stream(s.device_index());
  set_current_stream(s);
  return previous;
}

c10::DeviceIndex QdevGuardImpl::deviceCount() const noexcept { return device_count(); }

void QdevGuardImpl::destroyEvent(void* event, const c10::DeviceIndex) const noexcept {
  if (event != nullptr) (void)qdEventDestroy(static_cast<qdEvent_t>(event));
}

void QdevGuardImpl::record(void** event, const c10::Stream& stream,
                           const c10::DeviceIndex device_index, const c10::EventFlag flag) const {
  TORCH_CHECK(device_index == -1 || device_index == stream.device_index(),
              "Event device index ", static_cast<int>(device_index),
              " does not match recording stream's device index ",
              static_cast<int>(stream.device_index()), ".");
  if (*event == nullptr) {
    // Like CUDA: PyTorch's default disables timing, the backend default keeps it.
    unsigned flags = flag == c10::EventFlag::BACKEND_DEFAULT ? qdEventDefault : qdEventDisableTiming;
    qdEvent_t created = nullptr;
    QDEV_CHECK(qdEventCreateWithFlags(&created, flags));
    *event = created;
  }
  QDEV_CHECK(qdEventRecord(static_cast<qdEvent_t>(*event), native_stream(stream)));
}

void QdevGuardImpl::block(void* event, const c10::Stream& stream) const {
  if (event == nullptr) return;  // never recorded: nothing to wait for
  QDEV_CHECK(qdStreamWaitEvent(native_stream(stream), static_cast<qdEvent_t>(event), 0));
}

bool QdevGuardImpl::queryEvent(void* event) const {
  if (event == nullptr) return true;
  qdError_t err = qdEventQuery(static_cast<qdEvent_t>(event));
  if (err == qdErrorNotReady) return false;
  QDEV_CHECK(err);
  return true;
}

void QdevGuardImpl::synchronizeEvent(void* event) const {
  if (event == nullptr) return;
  QDEV_CHECK(qdEventSynchronize(static_cast<qdEvent_t>(event)));
}

double QdevGuardImpl::elapsedTime(void* event1, void* event2, const c10::DeviceIndex) const {
  TORCH_CHECK(event1 != nullptr && event2 != nullptr,
              "Both events must be recorded before calculating elapsed time.");
  float ms = 0;
  qdError_t err = qdEventElapsedTime(&ms, static_cast<qdEvent_t>(event1),
                                     static_cast<qdEvent_t>(event2));
  TORCH_CHECK(err != qdErrorInvalidResourceHandle,
              "Both events must be created with enable_timing=True to calculate elapsed time.");
  TORCH_CHECK(err != qdErrorNotReady,
              "Both events must be completed before calculating elapsed time.");
  QDEV_CHECK(err);
  return static_cast<double>(ms);
}

bool QdevGuardImpl::queryStream(const c10::Stream& stream) const {
  qdError_t err = qdStreamQuery(native_stream(stream));
  if (err == qdErrorNotReady) return false;
  QDEV_CHECK(err);
  return true;
}

void QdevGuardImpl::synchronizeStream(const c10::Stream& stream) const {
  QDEV_CHECK(qdStreamSynchronize(native_stream(stream)));
}

void QdevGuardImpl::synchronizeDevice(const c10::DeviceIndex device_index) const {
  c10::DeviceIndex previous = exchange_device(resolve_device_index(device_index));
  qdError_t err = qdDeviceSynchronize();
  set_device(previous);
  QDEV_CHECK(err);
}

void QdevGuardImpl::recordDataPtrOnStream(const c10::DataPtr& data_ptr,
                                          const c10::Stream& stream) const {
  c10::getDeviceAllocator(static_type)->recordStream(data_ptr, stream);
}

C10_REGISTER_GUARD_IMPL(PrivateUse1, QdevGuardImpl);

}  // namespace c10::qdev
