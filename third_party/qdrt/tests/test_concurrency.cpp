// Many host threads driving the runtime at once: shared streams on both devices, events across
// streams, async copies, allocations, streams and events created and destroyed while work is
// pending. The data the tasks touch is plain (non-atomic) memory: it is race-free only if stream
// order, events and synchronize give the happens-before edges the API promises, which is what
// ThreadSanitizer checks when tools/run_sanitizers.sh runs this test.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "check.h"

namespace {
constexpr int kThreads = 6;
constexpr int kRounds = 150;
}  // namespace

QD_TEST(threads_share_streams_events_and_memory) {
  int count = 0;
  CHECK_OK(qdGetDeviceCount(&count));
  const int devices = count < 2 ? count : 2;
  CHECK(devices >= 1);
  // One shared stream per device; every thread appends to its counter from tasks on that stream,
  // so the stream's order alone serializes the (non-atomic) increments.
  std::vector<qdStream_t> shared(devices, nullptr);
  std::vector<long> counters(devices, 0);
  for (int d = 0; d < devices; ++d) {
    CHECK_OK(qdSetDevice(d));
    CHECK_OK(qdStreamCreate(&shared[d]));
  }
  std::atomic<int> failures{0};
  auto fail_unless = [&](bool ok) { if (!ok) ++failures; };

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const int d = t % devices;
      fail_unless(qdSetDevice(d) == qdSuccess);
      qdStream_t mine = nullptr;
      fail_unless(qdStreamCreateWithPriority(&mine, qdStreamNonBlocking, -(t % 2)) == qdSuccess);
      for (int r = 0; r < kRounds; ++r) {
        long* counter = &counters[d];
        fail_unless(qdLaunchHostTask(shared[d], [counter] { ++*counter; }) == qdSuccess);

        // Producer on my stream writes device memory; the shared stream waits on an event, then
        // reads it back into host memory: ordered only through the event.
        void* dev = nullptr;
        fail_unless(qdMalloc(&dev, 256) == qdSuccess);
        auto* host = new unsigned char[256];
        std::memset(host, 0, 256);
        const unsigned char value = static_cast<unsigned char>(t * 31 + r);
        fail_unless(qdLaunchHostTask(mine, [dev, value] { std::memset(dev, value, 256); }) == qdSuccess);
        qdEvent_t e = nullptr;
        fail_unless(qdEventCreateWithFlags(&e, r % 3 ? qdEventDisableTiming : qdEventDefault) == qdSuccess);
        fail_unless(qdEventRecord(e, mine) == qdSuccess);
        fail_unless(qdStreamWaitEvent(shared[d], e, 0) == qdSuccess);
        fail_unless(qdMemcpyAsync(host, dev, 256, qdMemcpyDeviceToHost, shared[d]) == qdSuccess);
        (void)qdEventQuery(e);
        fail_unless(qdEventDestroy(e) == qdSuccess);  // may still be pending: the marker keeps it alive
        (void)qdStreamQuery(shared[d]);
        qdEvent_t copied = nullptr;
        fail_unless(qdEventCreate(&copied) == qdSuccess);
        fail_unless(qdEventRecord(copied, shared[d]) == qdSuccess);
        fail_unless(qdEventSynchronize(copied) == qdSuccess);
        fail_unless(qdEventDestroy(copied) == qdSuccess);
        bool same = true;
        for (int i = 0; i < 256; ++i) same = same && host[i] == value;
        fail_unless(same);
        delete[] host;
        fail_unless(qdStreamSynchronize(mine) == qdSuccess);
        fail_unless(qdFree(dev) == qdSuccess);

        if (r % 50 == 49) {  // a short-lived stream destroyed with work queued
          qdStream_t temp = nullptr;
          int ran = 0;
          fail_unless(qdStreamCreate(&temp) == qdSuccess);
          for (int i = 0; i < 5; ++i) fail_unless(qdLaunchHostTask(temp, [&ran] { ++ran; }) == qdSuccess);
          fail_unless(qdStreamDestroy(temp) == qdSuccess);
          fail_unless(ran == 5);
        }
      }
      fail_unless(qdStreamDestroy(mine) == qdSuccess);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  for (int d = 0; d < devices; ++d) {
    CHECK_OK(qdStreamSynchronize(shared[d]));
    long expected = 0;
    for (int t = 0; t < kThreads; ++t) expected += (t % devices == d) ? kRounds : 0;
    CHECK(counters[d] == expected);
    CHECK_OK(qdStreamDestroy(shared[d]));
  }
  for (int d = 0; d < devices; ++d) {
    size_t used = 1;
    CHECK_OK(qdDeviceMemoryUsed(d, &used));
    CHECK(used == 0);
  }
  CHECK_OK(qdSetDevice(0));
}

QD_TEST_MAIN
