#include <thread>

#include "check.h"

QD_TEST(malloc_free_accounting) {
  size_t used0 = 0, used1 = 0;
  CHECK_OK(qdDeviceMemoryUsed(0, &used0));
  void* p = nullptr;
  CHECK_OK(qdMalloc(&p, 1000));
  CHECK(p != nullptr);
  CHECK(reinterpret_cast<uintptr_t>(p) % 256 == 0);
  CHECK_OK(qdDeviceMemoryUsed(0, &used1));
  CHECK(used1 == used0 + 1000);
  size_t free_b = 0, total = 0;
  CHECK_OK(qdMemGetInfo(&free_b, &total));
  CHECK(free_b == total - used1);
  CHECK_OK(qdFree(p));
  CHECK_OK(qdDeviceMemoryUsed(0, &used1));
  CHECK(used1 == used0);
}

QD_TEST(zero_size_and_bad_pointers) {
  void* p = reinterpret_cast<void*>(1);
  CHECK_OK(qdMalloc(&p, 0));
  CHECK(p == nullptr);
  CHECK_OK(qdFree(nullptr));
  int on_stack = 0;
  CHECK_ERR(qdFree(&on_stack), qdErrorInvalidDevicePointer);
  CHECK_ERR(qdMalloc(nullptr, 8), qdErrorInvalidValue);
}

QD_TEST(memory_is_per_device) {
  void* p = nullptr;
  CHECK_OK(qdSetDevice(1));
  CHECK_OK(qdMalloc(&p, 4096));
  qdPointerAttributes a;
  CHECK_OK(qdPointerGetAttributes(&a, static_cast<char*>(p) + 100));
  CHECK(a.type == qdMemoryTypeDevice);
  CHECK(a.device == 1);
  CHECK(a.base == p);
  CHECK(a.size == 4096);
  size_t used0 = 0;
  CHECK_OK(qdDeviceMemoryUsed(0, &used0));
  CHECK(used0 == 0);
  CHECK_OK(qdFree(p));
  CHECK_OK(qdSetDevice(0));
}

QD_TEST(pinned_host_memory) {
  void* h = nullptr;
  CHECK_OK(qdMallocHost(&h, 333));
  qdPointerAttributes a;
  CHECK_OK(qdPointerGetAttributes(&a, h));
  CHECK(a.type == qdMemoryTypeHost);
  CHECK(a.device == -1);
  int plain = 0;
  CHECK_OK(qdPointerGetAttributes(&a, &plain));
  CHECK(a.type == qdMemoryTypeUnregistered);
  CHECK_ERR(qdFree(h), qdErrorInvalidDevicePointer);  // host memory is not device memory
  CHECK_OK(qdFreeHost(h));
}

QD_TEST(copies_in_every_direction) {
  char host[64], back[64];
  for (int i = 0; i < 64; ++i) host[i] = static_cast<char>(i * 3);
  void *d0 = nullptr, *d1 = nullptr;
  CHECK_OK(qdMalloc(&d0, 64));
  CHECK_OK(qdSetDevice(1));
  CHECK_OK(qdMalloc(&d1, 64));
  CHECK_OK(qdSetDevice(0));
  CHECK_OK(qdMemcpy(d0, host, 64, qdMemcpyHostToDevice));
  CHECK_OK(qdMemcpy(d1, d0, 64, qdMemcpyDeviceToDevice));
  std::memset(back, 0, 64);
  CHECK_OK(qdMemcpy(back, d1, 64, qdMemcpyDeviceToHost));
  CHECK(std::memcmp(host, back, 64) == 0);
  CHECK_ERR(qdMemcpy(back, host, 64, qdMemcpyHostToDevice), qdErrorInvalidDevicePointer);
  CHECK_ERR(qdMemcpy(d0, host, 64, qdMemcpyDeviceToHost), qdErrorInvalidDevicePointer);
  CHECK_ERR(qdMemcpy(d0, host, 64, static_cast<qdMemcpyKind>(9)), qdErrorInvalidMemcpyDirection);
  CHECK_OK(qdMemset(d0, 7, 64));
  CHECK_OK(qdMemcpy(back, d0, 64, qdMemcpyDefault));
  CHECK(back[0] == 7 && back[63] == 7);
  CHECK_OK(qdFree(d0));
  CHECK_OK(qdFree(d1));
}

QD_TEST(concurrent_alloc_free) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([] {
      for (int i = 0; i < 500; ++i) {
        void* p = nullptr;
        if (qdMalloc(&p, 128 + i) == qdSuccess) qdFree(p);
      }
    });
  }
  for (auto& t : threads) t.join();
  size_t used = 1;
  CHECK_OK(qdDeviceMemoryUsed(0, &used));
  CHECK(used == 0);
}

// Run by ctest with QDEV_MEMORY_LIMIT=1M.
QD_TEST(capacity_limit) {
  void *a = nullptr, *b = nullptr;
  CHECK_OK(qdMalloc(&a, 700 * 1024));
  CHECK_ERR(qdMalloc(&b, 400 * 1024), qdErrorMemoryAllocation);
  CHECK(b == nullptr);
  CHECK_ERR(qdMalloc(&b, SIZE_MAX), qdErrorMemoryAllocation);
  CHECK_OK(qdFree(a));
  CHECK_OK(qdMalloc(&b, 1024 * 1024));  // exactly the capacity fits
  CHECK_OK(qdFree(b));
}

QD_TEST_MAIN
