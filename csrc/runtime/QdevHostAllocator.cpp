// Pinned host memory for qdev: buffers from qdMallocHost, which the runtime
// recognises as page-locked so that non_blocking copies may run asynchronously.
#include <ATen/core/CachingHostAllocator.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "QdevException.h"

namespace c10::qdev {
namespace {

class QdevHostAllocator final : public at::HostAllocator {
 public:
  at::DataPtr allocate(size_t nbytes) override {
    if (nbytes == 0) return at::DataPtr(nullptr, nullptr, &delete_fn, at::Device(at::kCPU));
    void* ptr = nullptr;
    qdError_t err = qdMallocHost(&ptr, nbytes);
    TORCH_CHECK_WITH(OutOfMemoryError, err != qdErrorMemoryAllocation,
                     "qdev: failed to allocate ", nbytes, " bytes of pinned host memory");
    QDEV_CHECK(err);
    {
      std::lock_guard<std::mutex> lock(mu_);
      sizes_[ptr] = nbytes;
      stats_.active_requests.increase(1);
      stats_.active_bytes.increase(nbytes);
      stats_.allocations.increase(1);
      stats_.allocated_bytes.increase(nbytes);
      stats_.num_host_alloc++;
    }
    return at::DataPtr(ptr, ptr, &delete_fn, at::Device(at::kCPU));
  }

  at::DeleterFnPtr raw_deleter() const override { return &delete_fn; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  // Asynchronous copies hold a reference to their buffers until they ran, so
  // no event bookkeeping is needed before a pinned block may be freed.
  bool record_event(void*, void*, c10::Stream) override { return true; }
  void empty_cache() override {}

  at::HostStats get_stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_accumulated_stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto* s : {&stats_.active_requests, &stats_.active_bytes, &stats_.allocations,
                    &stats_.allocated_bytes}) {
      s->reset_accumulated();
    }
    stats_.num_host_alloc = 0;
    stats_.num_host_free = 0;
  }
  void reset_peak_stats() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto* s : {&stats_.active_requests, &stats_.active_bytes, &stats_.allocations,
                    &stats_.allocated_bytes}) {
      s->reset_peak();
    }
  }

  void release(void* ptr) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sizes_.find(ptr);
      if (it == sizes_.end()) return;
      stats_.active_requests.decrease(1);
      stats_.active_bytes.decrease(it->second);
      stats_.allocations.decrease(1);
      stats_.allocated_bytes.decrease(it->second);
      stats_.num_host_free++;
      sizes_.erase(it);
    }
    (void)qdFreeHost(ptr);
  }

 private:
  static void delete_fn(void* ptr);
  std::mutex mu_;
  std::unordered_map<void*, size_t> sizes_;
  at::HostStats stats_;
};

QdevHostAllocator g_host_allocator;

void QdevHostAllocator::delete_fn(void* ptr) {
  if (ptr != nullptr) g_host_allocator.release(ptr);
}

}  // namespace

REGISTER_HOST_ALLOCATOR(at::kPrivateUse1, &g_host_allocator);

}  // namespace c10::qdev
