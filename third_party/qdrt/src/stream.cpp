// Streams (ordered queues, one lazily started worker thread each) and events.
#include "internal.h"

#include <chrono>
#include <memory>
#include <unordered_set>

namespace qdrt {

void Stream::enqueue(std::function<void()> task) {
  std::lock_guard<std::mutex> lock(mu);
  if (!worker.joinable()) worker = std::thread([this] { run(); });
  tasks.push_back(std::move(task));
  ++enqueued;
  cv_work.notify_one();
}

void Stream::run() {
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    cv_work.wait(lock, [this] { return stopping || !tasks.empty(); });
    if (tasks.empty()) return;  // stopping and drained
    std::function<void()> task = std::move(tasks.front());
    tasks.pop_front();
    lock.unlock();
    try {
      task();
    } catch (...) {
      // A failing host task must not kill the process; the work is dropped.
    }
    lock.lock();
    ++completed;
    cv_done.notify_all();
  }
}

void Stream::synchronize() {
  std::unique_lock<std::mutex> lock(mu);
  uint64_t target = enqueued;
  cv_done.wait(lock, [&] { return completed >= target; });
}

bool Stream::idle() {
  std::lock_guard<std::mutex> lock(mu);
  return completed == enqueued;
}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
    cv_work.notify_all();
  }
  if (worker.joinable()) worker.join();
}

namespace {

struct Registry {
  std::mutex mu;
  std::unordered_set<Stream*> live;
  Stream* defaults[kMaxDevices] = {};
};

Registry& registry() {
  static Registry* r = new Registry();  // leaked on purpose: workers may outlive statics
  return *r;
}

Stream* default_stream(int device) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.defaults[device] == nullptr) {
    auto* s = new Stream();
    s->device = device;
    s->is_default = true;
    r.defaults[device] = s;
    r.live.insert(s);
  }
  return r.defaults[device];
}

using Clock = std::chrono::steady_clock;

struct EventState {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t recorded = 0;   // generation of the latest record
  uint64_t completed = 0;  // generation that has completed
  Clock::time_point stamp;
  bool timing = true;

  void complete(uint64_t gen) {
    std::lock_guard<std::mutex> lock(mu);
    if (gen > completed) {
      completed = gen;
      stamp = Clock::now();
    }
    cv.notify_all();
  }
  void wait_for(uint64_t gen) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return completed >= gen; });
  }
};

}  // namespace

Stream* resolve_stream(qdStream_t handle) {
  if (handle == nullptr) {
    int device = current_device();
    return valid_device(device) ? default_stream(device) : nullptr;
  }
  auto* s = reinterpret_cast<Stream*>(handle);
  return stream_alive(s) ? s : nullptr;
}

bool stream_alive(Stream* s) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.live.count(s) != 0;
}

void synchronize_device_streams(int device) {
  if (!valid_device(device)) return;
  std::vector<Stream*> streams;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (Stream* s : r.live) {
      if (s->device == device) streams.push_back(s);
    }
  }
  for (Stream* s : streams) s->synchronize();
}

}  // namespace qdrt

struct qdEvent_st {
  std::shared_ptr<qdrt::EventState> state;
};

using namespace qdrt;

namespace {
std::mutex g_event_mu;
std::unordered_set<qdEvent_t>& live_events() {
  static auto* s = new std::unordered_set<qdEvent_t>();
  return *s;
}
std::shared_ptr<EventState> event_state(qdEvent_t e) {
  std::lock_guard<std::mutex> lock(g_event_mu);
  if (e == nullptr || live_events().count(e) == 0) return nullptr;
  return e->state;
}
}  // namespace

extern "C" {

qdError_t qdStreamCreate(qdStream_t* stream) {
  return qdStreamCreateWithPriority(stream, qdStreamDefault, 0);
}

qdError_t qdStreamCreateWithPriority(qdStream_t* stream, unsigned int flags, int priority) {
  if (stream == nullptr || flags > qdStreamNonBlocking) return qdErrorInvalidValue;
  int device = current_device();
  if (!valid_device(device)) return qdErrorInvalidDevice;
  int least = 0, greatest = 0;
  qdDeviceGetStreamPriorityRange(&least, &greatest);
  if (priority > least) priority = least;  // clamp like CUDA
  if (priority < greatest) priority = greatest;
  auto* s = new Stream();
  s->device = device;
  s->priority = priority;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.live.insert(s);
  }
  *stream = reinterpret_cast<qdStream_t>(s);
  return qdSuccess;
}

qdError_t qdStreamDestroy(qdStream_t stream) {
  if (stream == nullptr) return qdErrorInvalidResourceHandle;
  auto* s = reinterpret_cast<Stream*>(stream);
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.live.count(s) == 0 || s->is_default) return qdErrorInvalidResourceHandle;
    r.live.erase(s);
  }
  delete s;  // drains the queue, then joins the worker
  return qdSuccess;
}

qdError_t qdStreamSynchronize(qdStream_t stream) {
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  s->synchronize();
  return qdSuccess;
}

qdError_t qdStreamQuery(qdStream_t stream) {
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  return s->idle() ? qdSuccess : qdErrorNotReady;
}

qdError_t qdStreamWaitEvent(qdStream_t stream, qdEvent_t event, unsigned int flags) {
  if (flags != 0) return qdErrorInvalidValue;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  auto state = event_state(event);
  if (state == nullptr) return qdErrorInvalidResourceHandle;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    gen = state->recorded;
    if (state->completed >= gen) return qdSuccess;  // nothing to wait for
  }
  s->enqueue([state, gen] { state->wait_for(gen); });
  return qdSuccess;
}

qdError_t qdStreamGetPriority(qdStream_t stream, int* priority) {
  if (priority == nullptr) return qdErrorInvalidValue;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  *priority = s->priority;
  return qdSuccess;
}

qdError_t qdStreamGetDevice(qdStream_t stream, int* device) {
  if (device == nullptr) return qdErrorInvalidValue;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  *device = s->device;
  return qdSuccess;
}

qdError_t qdDeviceGetDefaultStream(int device, qdStream_t* stream) {
  if (stream == nullptr) return qdErrorInvalidValue;
  if (!valid_device(device)) return qdErrorInvalidDevice;
  *stream = reinterpret_cast<qdStream_t>(default_stream(device));
  return qdSuccess;
}

qdError_t qdDeviceGetStreamPriorityRange(int* least_priority, int* greatest_priority) {
  if (least_priority) *least_priority = 0;
  if (greatest_priority) *greatest_priority = -1;
  return qdSuccess;
}

qdError_t qdLaunchHostFunc(qdStream_t stream, qdHostFn_t fn, void* user_data) {
  if (fn == nullptr) return qdErrorInvalidValue;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  s->enqueue([fn, user_data] { fn(user_data); });
  return qdSuccess;
}

qdError_t qdEventCreate(qdEvent_t* event) { return qdEventCreateWithFlags(event, qdEventDefault); }

qdError_t qdEventCreateWithFlags(qdEvent_t* event, unsigned int flags) {
  if (event == nullptr || (flags & ~unsigned(qdEventDisableTiming)) != 0) {
    return qdErrorInvalidValue;
  }
  auto* e = new qdEvent_st{std::make_shared<EventState>()};
  e->state->timing = (flags & qdEventDisableTiming) == 0;
  std::lock_guard<std::mutex> lock(g_event_mu);
  live_events().insert(e);
  *event = e;
  return qdSuccess;
}

qdError_t qdEventDestroy(qdEvent_t event) {
  {
    std::lock_guard<std::mutex> lock(g_event_mu);
    if (event == nullptr || live_events().erase(event) == 0) return qdErrorInvalidResourceHandle;
  }
  delete event;  // queued markers keep the shared state alive
  return qdSuccess;
}

qdError_t qdEventRecord(qdEvent_t event, qdStream_t stream) {
  auto state = event_state(event);
  if (state == nullptr) return qdErrorInvalidResourceHandle;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    gen = ++state->recorded;
  }
  // An idle stream completes the event at once: no worker wake-up needed.
  std::unique_lock<std::mutex> lock(s->mu);
  if (s->completed == s->enqueued) {
    lock.unlock();
    state->complete(gen);
    return qdSuccess;
  }
  lock.unlock();
  s->enqueue([state, gen] { state->complete(gen); });
  return qdSuccess;
}

qdError_t qdEventQuery(qdEvent_t event) {
  auto state = event_state(event);
  if (state == nullptr) return qdErrorInvalidResourceHandle;
  std::lock_guard<std::mutex> lock(state->mu);
  return state->completed >= state->recorded ? qdSuccess : qdErrorNotReady;
}

qdError_t qdEventSynchronize(qdEvent_t event) {
  auto state = event_state(event);
  if (state == nullptr) return qdErrorInvalidResourceHandle;
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    gen = state->recorded;
  }
  state->wait_for(gen);
  return qdSuccess;
}

qdError_t qdEventElapsedTime(float* ms, qdEvent_t start, qdEvent_t end) {
  if (ms == nullptr) return qdErrorInvalidValue;
  auto a = event_state(start);
  auto b = event_state(end);
  if (a == nullptr || b == nullptr) return qdErrorInvalidResourceHandle;
  if (a == b) {
    std::lock_guard<std::mutex> lock(a->mu);
    if (!a->timing || a->recorded == 0) return qdErrorInvalidResourceHandle;
    if (a->completed < a->recorded) return qdErrorNotReady;
    *ms = 0.0f;
    return qdSuccess;
  }
  std::scoped_lock lock(a->mu, b->mu);
  if (!a->timing || !b->timing || a->recorded == 0 || b->recorded == 0) {
    return qdErrorInvalidResourceHandle;
  }
  if (a->completed < a->recorded || b->completed < b->recorded) return qdErrorNotReady;
  std::chrono::duration<double, std::milli> d = b->stamp - a->stamp;
  *ms = static_cast<float>(d.count());
  return qdSuccess;
}

}  // extern "C"

qdError_t qdLaunchHostTask(qdStream_t stream, std::function<void()> task) {
  if (!task) return qdErrorInvalidValue;
  Stream* s = qdrt::resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  s->enqueue(std::move(task));
  return qdSuccess;
}
