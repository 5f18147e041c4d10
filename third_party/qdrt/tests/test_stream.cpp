#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "check.h"

static void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

QD_TEST(stream_runs_tasks_in_order) {
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) {
    CHECK_OK(qdLaunchHostTask(s, [&order, i] { order.push_back(i); }));
  }
  CHECK_OK(qdStreamSynchronize(s));
  CHECK(order.size() == 100);
  bool sorted = true;
  for (int i = 0; i < 100 && sorted; ++i) sorted = order[i] == i;
  CHECK(sorted);
  CHECK_OK(qdStreamQuery(s));
  CHECK_OK(qdStreamDestroy(s));
  CHECK_ERR(qdStreamDestroy(s), qdErrorInvalidResourceHandle);
}

QD_TEST(query_reports_pending_work) {
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  std::atomic<bool> release{false};
  CHECK_OK(qdLaunchHostTask(s, [&] { while (!release) sleep_ms(1); }));
  CHECK_ERR(qdStreamQuery(s), qdErrorNotReady);
  release = true;
  CHECK_OK(qdStreamSynchronize(s));
  CHECK_OK(qdStreamQuery(s));
  CHECK_OK(qdStreamDestroy(s));
}

QD_TEST(async_copy_is_ordered_with_host_tasks) {
  void* d = nullptr;
  CHECK_OK(qdMalloc(&d, 4));
  int src = 42, dst = 0;
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  CHECK_OK(qdLaunchHostTask(s, [] { sleep_ms(20); }));
  CHECK_OK(qdMemcpyAsync(d, &src, 4, qdMemcpyHostToDevice, s));
  CHECK_OK(qdMemcpyAsync(&dst, d, 4, qdMemcpyDeviceToHost, s));
  CHECK(dst == 0);  // still queued behind the sleep
  CHECK_OK(qdStreamSynchronize(s));
  CHECK(dst == 42);
  CHECK_OK(qdStreamDestroy(s));
  CHECK_OK(qdFree(d));
}

QD_TEST(default_stream_and_device_sync) {
  qdStream_t def = nullptr;
  CHECK_OK(qdDeviceGetDefaultStream(0, &def));
  CHECK(def != nullptr);
  CHECK_ERR(qdStreamDestroy(def), qdErrorInvalidResourceHandle);
  std::atomic<int> done{0};
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  CHECK_OK(qdLaunchHostTask(nullptr, [&] { sleep_ms(10); ++done; }));
  CHECK_OK(qdLaunchHostTask(s, [&] { sleep_ms(10); ++done; }));
  CHECK_OK(qdDeviceSynchronize());
  CHECK(done == 2);
  CHECK_OK(qdStreamDestroy(s));
}

QD_TEST(stream_priority_and_device) {
  int least = 1, greatest = 1;
  CHECK_OK(qdDeviceGetStreamPriorityRange(&least, &greatest));
  CHECK(least == 0 && greatest == -1);
  qdStream_t s = nullptr;
  CHECK_OK(qdSetDevice(1));
  CHECK_OK(qdStreamCreateWithPriority(&s, qdStreamDefault, -5));
  CHECK_OK(qdSetDevice(0));
  int p = 0, dev = -1;
  CHECK_OK(qdStreamGetPriority(s, &p));
  CHECK(p == -1);  // clamped to the greatest priority
  CHECK_OK(qdStreamGetDevice(s, &dev));
  CHECK(dev == 1);
  CHECK_OK(qdStreamDestroy(s));
}

static void bump(void* p) { ++*static_cast<int*>(p); }

QD_TEST(host_func_and_destroy_drains) {
  int count = 0;
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  for (int i = 0; i < 10; ++i) CHECK_OK(qdLaunchHostFunc(s, bump, &count));
  CHECK_OK(qdStreamDestroy(s));  // destroy waits for queued work
  CHECK(count == 10);
  CHECK_ERR(qdLaunchHostFunc(nullptr, nullptr, nullptr), qdErrorInvalidValue);
}

QD_TEST(throwing_task_does_not_kill_the_stream) {
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  int after = 0;
  CHECK_OK(qdLaunchHostTask(s, [] { throw 1; }));
  CHECK_OK(qdLaunchHostTask(s, [&] { after = 1; }));
  CHECK_OK(qdStreamSynchronize(s));
  CHECK(after == 1);
  CHECK_OK(qdStreamDestroy(s));
}

QD_TEST_MAIN
