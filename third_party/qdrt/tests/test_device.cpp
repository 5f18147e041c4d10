#include <thread>

#include "check.h"

QD_TEST(default_device_count_is_two) {
  int n = -1;
  CHECK_OK(qdGetDeviceCount(&n));
  CHECK(n == 2);
  CHECK_ERR(qdGetDeviceCount(nullptr), qdErrorInvalidValue);
}

QD_TEST(set_and_get_device) {
  int d = -1;
  CHECK_OK(qdGetDevice(&d));
  CHECK(d == 0);
  CHECK_OK(qdSetDevice(1));
  CHECK_OK(qdGetDevice(&d));
  CHECK(d == 1);
  CHECK_ERR(qdSetDevice(2), qdErrorInvalidDevice);
  CHECK_ERR(qdSetDevice(-1), qdErrorInvalidDevice);
  CHECK_OK(qdGetDevice(&d));
  CHECK(d == 1);  // a failed set leaves the device unchanged
  CHECK_OK(qdSetDevice(0));
}

QD_TEST(current_device_is_thread_local) {
  CHECK_OK(qdSetDevice(1));
  int seen = -1;
  std::thread t([&] { qdGetDevice(&seen); });
  t.join();
  CHECK(seen == 0);
  CHECK_OK(qdSetDevice(0));
}

QD_TEST(device_properties) {
  qdDeviceProp p;
  CHECK_OK(qdGetDeviceProperties(&p, 0));
  CHECK(std::strlen(p.name) > 0);
  CHECK(p.totalGlobalMem > 0);
  CHECK(p.multiProcessorCount >= 1);
  CHECK_ERR(qdGetDeviceProperties(&p, 5), qdErrorInvalidDevice);
  CHECK_ERR(qdGetDeviceProperties(nullptr, 0), qdErrorInvalidValue);
}

QD_TEST(error_strings) {
  CHECK(std::strcmp(qdGetErrorString(qdErrorMemoryAllocation), "out of memory") == 0);
  CHECK(std::strcmp(qdGetErrorName(qdErrorInvalidDevice), "qdErrorInvalidDevice") == 0);
  CHECK(std::strlen(qdGetErrorString(static_cast<qdError_t>(12345))) > 0);
}

// Run by ctest with QDEV_DEVICE_COUNT=3 QDEV_MEMORY_LIMIT=64MiB.
QD_TEST(env_config) {
  int n = 0;
  CHECK_OK(qdGetDeviceCount(&n));
  CHECK(n == 3);
  CHECK_OK(qdSetDevice(2));
  size_t free_b = 0, total = 0;
  CHECK_OK(qdMemGetInfo(&free_b, &total));
  CHECK(total == (size_t{64} << 20));
  CHECK(free_b == total);
  CHECK_OK(qdSetDevice(0));
}

QD_TEST_MAIN
