// torch_qdev._C: the Python face of the qdev runtime. Only glue: every
// function forwards to csrc/runtime.
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <c10/core/CachingDeviceAllocator.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/csrc/Generator.h>
#include <torch/csrc/utils/device_lazy_init.h>
#include <torch/csrc/utils/pybind.h>

#include "../../csrc/aten/native/QdevFormat.h"
#include "../../csrc/aten/native/QdevNative.h"
#include "../../csrc/aten/native/QuantOps.h"
#include "../../csrc/kernels/common/qd_membw.h"
#include "QdevException.h"
#include "QdevFunctions.h"
#include "QdevGenerator.h"
#include "QdevStream.h"

namespace py = pybind11;

namespace {

// A device index from Python, checked before it narrows to c10::DeviceIndex (int8_t):
// 257 must not become 1.
c10::DeviceIndex device_index(int64_t d) {
  TORCH_CHECK(d >= 0 && d < c10::qdev::device_count(), "Invalid device index ", d,
              " for qdev: expected 0 <= index < ", static_cast<int>(c10::qdev::device_count()),
              " (invalid device ordinal; QDEV_DEVICE_COUNT sets the count)");
  return static_cast<c10::DeviceIndex>(d);
}

py::object default_generator(c10::DeviceIndex device) {
  const at::Generator& gen = c10::qdev::default_generator(device);
  return py::reinterpret_steal<py::object>(THPGenerator_initDefaultGenerator(gen));
}

py::tuple device_properties(c10::DeviceIndex device) {
  c10::qdev::check_device_index(device);
  qdDeviceProp prop;
  QDEV_CHECK(qdGetDeviceProperties(&prop, device));
  return py::make_tuple(std::string(prop.name), prop.totalGlobalMem, prop.multiProcessorCount,
                        prop.major, prop.minor);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "qdev runtime bindings";
  m.def("_init", [] {
    torch::utils::register_fork_handler_for_device_init(at::kPrivateUse1);
    at::globalContext().lazyInitDevice(c10::DeviceType::PrivateUse1);
  });
  m.def("_is_in_bad_fork", [] { return torch::utils::is_device_in_bad_fork(at::kPrivateUse1); });
  m.def("_get_device_count", [] { return static_cast<int>(c10::qdev::device_count()); });
  m.def("_get_device", [] { return static_cast<int>(c10::qdev::current_device()); });
  m.def("_set_device", [](int64_t d) { c10::qdev::set_device(device_index(d)); });
  m.def("_exchange_device", [](int64_t d) {
    return static_cast<int>(c10::qdev::exchange_device(device_index(d)));
  });
  m.def("_check_device_index", [](int64_t d) { (void)device_index(d); });
  m.def("_get_default_generator", [](int64_t d) { return default_generator(device_index(d)); });
  m.def("_get_device_properties", [](int64_t d) { return device_properties(device_index(d)); });
  m.def("_stream_priority", [](int64_t stream_id) {
    // Ids as QdevStream hands them out: 0 default, then the normal and the high-priority pool.
    TORCH_CHECK(stream_id >= 0 && stream_id <= c10::qdev::kStreamsPerPool * c10::qdev::kPriorityLevels,
                "Invalid qdev stream id ", stream_id, ": expected 0 <= id <= ",
                c10::qdev::kStreamsPerPool * c10::qdev::kPriorityLevels);
    return stream_id > c10::qdev::kStreamsPerPool ? -1 : 0;
  });
  m.def("_stream_priority_range", [] {
    int least = 0, greatest = 0;
    QDEV_CHECK(qdDeviceGetStreamPriorityRange(&least, &greatest));
    return py::make_tuple(least, greatest);
  });
  m.def("_get_cpu_isa", [] { return at::native::qdev::cpu_isa(); });
  m.def("_set_cpu_isa", [](const std::string& name) { return at::native::qdev::set_cpu_isa(name); });
  m.def("_supported_cpu_isas", [] { return at::native::qdev::supported_cpu_isas(); });
  m.def("_cpu_avx512_bf16", [] { return at::native::qdev::cpu_avx512_bf16(); });
  m.def("_set_cpu_avx512_bf16", [](bool on) { return at::native::qdev::set_cpu_avx512_bf16(on); });
  m.def("_set_allow_internal_format",
        [](bool allow) { at::native::qdev::set_allow_internal_format(allow); });
  // Benchmark helper: seconds to read a CPU/qdev byte tensor once with torch's threads.
  m.def("_read_seconds", [](const at::Tensor& t) {
    TORCH_CHECK(t.is_contiguous() && t.nbytes() % 64 == 0, "_read_seconds: contiguous, 64-byte multiple");
    const auto* base = static_cast<const char*>(t.const_data_ptr());
    const int64_t lines = static_cast<int64_t>(t.nbytes() / 64);
    std::atomic<uint64_t> sink{0};
    const auto start = std::chrono::steady_clock::now();
    at::parallel_for(0, lines, 4096, [&](int64_t b, int64_t e) {
      sink ^= qdev::kernels::read_stream(base + b * 64, static_cast<size_t>(e - b) * 64);
    });
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - start;
    return py::make_tuple(dt.count(), static_cast<uint64_t>(sink.load()));
  });
  m.def("_device_memory_used", [](int64_t d) {
    const c10::DeviceIndex index = device_index(d);
    size_t used = 0;
    QDEV_CHECK(qdDeviceMemoryUsed(index, &used));
    return used;
  });
  // A CPU tensor over a qdev tensor's bytes that keeps them alive (zero-copy DLPack export to
  // host consumers, torch_qdev/_dlpack.py).
  m.def("_owning_cpu_alias", [](const at::Tensor& t) {
    TORCH_CHECK(t.device().type() == c10::DeviceType::PrivateUse1, "expected a qdev tensor, got ", t.device());
    return at::native::qdev::owning_cpu_alias(t);
  });
}
