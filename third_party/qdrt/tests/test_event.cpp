#include <atomic>
#include <chrono>
#include <thread>

#include "check.h"

static void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

QD_TEST(event_on_idle_stream_completes) {
  qdEvent_t e = nullptr;
  CHECK_OK(qdEventCreate(&e));
  CHECK_OK(qdEventQuery(e));  // never recorded counts as complete
  CHECK_OK(qdEventRecord(e, nullptr));
  CHECK_OK(qdEventSynchronize(e));
  CHECK_OK(qdEventQuery(e));
  CHECK_OK(qdEventDestroy(e));
  CHECK_ERR(qdEventDestroy(e), qdErrorInvalidResourceHandle);
}

QD_TEST(elapsed_time_measures_stream_work) {
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  qdEvent_t a = nullptr, b = nullptr;
  CHECK_OK(qdEventCreate(&a));
  CHECK_OK(qdEventCreate(&b));
  float ms = -1;
  CHECK_ERR(qdEventElapsedTime(&ms, a, b), qdErrorInvalidResourceHandle);  // not recorded
  CHECK_OK(qdEventRecord(a, s));
  CHECK_OK(qdLaunchHostTask(s, [] { sleep_ms(30); }));
  CHECK_OK(qdEventRecord(b, s));
  CHECK_ERR(qdEventQuery(b), qdErrorNotReady);
  CHECK_ERR(qdEventElapsedTime(&ms, a, b), qdErrorNotReady);
  CHECK_OK(qdEventSynchronize(b));
  CHECK_OK(qdEventElapsedTime(&ms, a, b));
  CHECK(ms >= 25.0f && ms < 5000.0f);
  CHECK_OK(qdEventElapsedTime(&ms, a, a));
  CHECK(ms == 0.0f);
  CHECK_OK(qdEventDestroy(a));
  CHECK_OK(qdEventDestroy(b));
  CHECK_OK(qdStreamDestroy(s));
}

QD_TEST(timing_disabled_event) {
  qdEvent_t a = nullptr, b = nullptr;
  CHECK_OK(qdEventCreateWithFlags(&a, qdEventDisableTiming));
  CHECK_OK(qdEventCreate(&b));
  CHECK_OK(qdEventRecord(a, nullptr));
  CHECK_OK(qdEventRecord(b, nullptr));
  float ms = 0;
  CHECK_ERR(qdEventElapsedTime(&ms, a, b), qdErrorInvalidResourceHandle);
  CHECK_ERR(qdEventCreateWithFlags(&a, 0x100), qdErrorInvalidValue);
  CHECK_OK(qdEventDestroy(a));
  CHECK_OK(qdEventDestroy(b));
}

QD_TEST(stream_waits_for_event_on_other_stream) {
  qdStream_t producer = nullptr, consumer = nullptr;
  CHECK_OK(qdStreamCreate(&producer));
  CHECK_OK(qdStreamCreate(&consumer));
  std::atomic<int> value{0};
  int observed = -1;
  qdEvent_t e = nullptr;
  CHECK_OK(qdEventCreate(&e));
  CHECK_OK(qdLaunchHostTask(producer, [&] { sleep_ms(30); value = 7; }));
  CHECK_OK(qdEventRecord(e, producer));
  CHECK_OK(qdStreamWaitEvent(consumer, e, 0));
  CHECK_OK(qdLaunchHostTask(consumer, [&] { observed = value; }));
  CHECK_OK(qdStreamSynchronize(consumer));
  CHECK(observed == 7);
  CHECK_OK(qdEventDestroy(e));
  CHECK_OK(qdStreamDestroy(producer));
  CHECK_OK(qdStreamDestroy(consumer));
}

QD_TEST(event_destroyed_while_pending_is_safe) {
  qdStream_t s = nullptr;
  CHECK_OK(qdStreamCreate(&s));
  qdEvent_t e = nullptr;
  CHECK_OK(qdEventCreate(&e));
  CHECK_OK(qdLaunchHostTask(s, [] { sleep_ms(10); }));
  CHECK_OK(qdEventRecord(e, s));
  CHECK_OK(qdEventDestroy(e));  // the queued marker keeps its state alive
  CHECK_OK(qdStreamSynchronize(s));
  CHECK_OK(qdStreamDestroy(s));
}

QD_TEST_MAIN
