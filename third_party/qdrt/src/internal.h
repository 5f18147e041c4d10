// Shared state of the runtime: device table, capacity, stream registry.
#pragma once

#include "qdrt.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qdrt {

constexpr int kMaxDevices = 64;

// Process-wide configuration, read once from the environment.
struct Config {
  int device_count = 2;
  size_t capacity_bytes = 0;  // per device
  int cores = 1;
};
const Config& config();

// Parses "1073741824", "8G", "512MiB", "1.5g"; returns false on junk.
bool parse_byte_size(const char* text, size_t* out);

bool valid_device(int device);
int current_device();

// An ordered work queue; the worker thread starts with the first task.
struct Stream {
  int device = 0;
  int priority = 0;
  bool is_default = false;

  std::mutex mu;
  std::condition_variable cv_work;  // worker waits for tasks
  std::condition_variable cv_done;  // synchronizers wait for completion
  std::deque<std::function<void()>> tasks;
  uint64_t enqueued = 0;   // tasks ever enqueued
  uint64_t completed = 0;  // tasks ever finished
  bool stopping = false;
  std::thread worker;

  void enqueue(std::function<void()> task);
  void synchronize();
  bool idle();
  ~Stream();

 private:
  void run();
};

Stream* resolve_stream(qdStream_t handle);  // NULL -> current device default
bool stream_alive(Stream* s);
void synchronize_device_streams(int device);

}  // namespace qdrt
