#include "QdevAllocator.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <map>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "QdevException.h"
#include "QdevFunctions.h"
#include "QdevStream.h"

namespace c10::qdev {
namespace {

using c10::CachingDeviceAllocator::DeviceStats;
using c10::CachingDeviceAllocator::StatType;

constexpr size_t kSmallLimit = size_t{1} << 20;  // blocks up to 1 MiB form the small pool
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;

size_t round_size(size_t n) {
  size_t unit = n <= kSmallLimit ? kSmallRound : kLargeRound;
  return (n + unit - 1) / unit * unit;
}

struct Block {
  void* ptr = nullptr;
  size_t size = 0;       // bytes reserved from the device
  size_t requested = 0;  // bytes asked for by the caller
  c10::DeviceIndex device = 0;
  c10::StreamId stream = 0;                      // allocation stream
  std::unordered_set<c10::StreamId> stream_uses; // other streams that used it
  bool in_use = false;
};

struct PendingFree {
  Block* block;
  std::vector<qdEvent_t> events;
};

std::string format_size(uint64_t bytes) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(2);
  if (bytes < 1024) {
    os.unsetf(std::ios::fixed);
    os << bytes << " bytes";
  } else if (bytes < (uint64_t{1} << 20)) {
    os << bytes / 1024.0 << " KiB";
  } else if (bytes < (uint64_t{1} << 30)) {
    os << bytes / 1048576.0 << " MiB";
  } else {
    os << bytes / 1073741824.0 << " GiB";
  }
  return os.str();
}

void update_stat(c10::CachingDeviceAllocator::StatArray& stat, size_t pool_index, int64_t amount) {
  for (size_t i : {size_t(StatType::AGGREGATE), pool_index}) {
    if (amount >= 0) {
      stat[i].increase(static_cast<size_t>(amount));
    } else {
      stat[i].decrease(static_cast<size_t>(-amount));
    }
  }
}

template <typename Fn>
void for_each_stat(DeviceStats& s, Fn fn) {
  for (auto* arr : {&s.allocation, &s.segment, &s.active, &s.inactive_split, &s.allocated_bytes,
                    &s.reserved_bytes, &s.active_bytes, &s.inactive_split_bytes,
                    &s.requested_bytes}) {
    for (auto& stat : *arr) fn(stat);
  }
}

size_t pool_of(const Block* b) {
  return size_t(b->size <= kSmallLimit ? StatType::SMALL_POOL : StatType::LARGE_POOL);
}

struct DeviceState {
  std::multimap<std::pair<c10::StreamId, size_t>, Block*> free_blocks;  // (stream, size) -> block
  std::vector<PendingFree> pending;
  DeviceStats stats;
};

class QdevCachingAllocator final : public c10::DeviceAllocator {
 public:
  QdevCachingAllocator() {
    const char* env = std::getenv("PYTORCH_NO_QDEV_MEMORY_CACHING");
    caching_ = !(env != nullptr && std::strcmp(env, "0") != 0 && *env != '\0');
  }

  c10::DataPtr allocate(size_t nbytes) override {
    c10::DeviceIndex device = current_device();
    c10::Device dev(c10::DeviceType::PrivateUse1, device);
    if (nbytes == 0) return c10::DataPtr(nullptr, nullptr, &raw_delete_fn, dev);
    c10::StreamId stream = current_stream(device).id();
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      block = get_block(device, stream, nbytes);
      ptr_to_block_[block->ptr] = block;
    }
    return c10::DataPtr(block->ptr, block->ptr, &raw_delete_fn, dev);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &raw_delete_fn; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  bool initialized() override { return true; }

  void emptyCache(c10::MempoolId_t /*mempool_id*/) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) {
      DeviceState& st = state(d);
      for (auto& p : st.pending) {
        for (qdEvent_t e : p.events) (void)qdEventSynchronize(e);
      }
      process_pending(d, /*wait=*/true);
      release_cached(d);
    }
  }

  void recordStream(const c10::DataPtr& ptr, c10::Stream stream) override {
    if (ptr.get() == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ptr_to_block_.find(ptr.get());
    TORCH_CHECK(it != ptr_to_block_.end(), "recordStream: pointer was not allocated by qdev");
    Block* b = it->second;
    TORCH_CHECK(stream.device_index() == b->device, "recordStream: stream on qdev:",
                static_cast<int>(stream.device_index()), " but the memory lives on qdev:",
                static_cast<int>(b->device));
    if (stream.id() != b->stream) b->stream_uses.insert(stream.id());
  }

  DeviceStats getDeviceStats(c10::DeviceIndex device) override {
    device = resolve_device_index(device);
    std::lock_guard<std::mutex> lock(mu_);
    return state(device).stats;
  }

  void resetAccumulatedStats(c10::DeviceIndex device) override {
    device = resolve_device_index(device);
    std::lock_guard<std::mutex> lock(mu_);
    DeviceStats& s = state(device).stats;
    for_each_stat(s, [](c10::CachingAllocator::Stat& stat) { stat.reset_accumulated(); });
    s.num_alloc_retries = 0;
    s.num_ooms = 0;
    s.num_device_alloc = 0;
    s.num_device_free = 0;
  }

  void resetPeakStats(c10::DeviceIndex device) override {
    device = resolve_device_index(device);
    std::lock_guard<std::mutex> lock(mu_);
    for_each_stat(state(device).stats, [](c10::CachingAllocator::Stat& stat) { stat.reset_peak(); });
  }

  std::pair<size_t, size_t> getMemoryInfo(c10::DeviceIndex device) override {
    device = resolve_device_index(device);
    c10::DeviceIndex previous = exchange_device(device);
    size_t free_bytes = 0, total = 0;
    qdError_t err = qdMemGetInfo(&free_bytes, &total);
    set_device(previous);
    QDEV_CHECK(err);
    return {free_bytes, total};
  }

  void free_ptr(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ptr_to_block_.find(ptr);
    if (it == ptr_to_block_.end()) return;  // not ours; never free foreign memory
    Block* b = it->second;
    ptr_to_block_.erase(it);
    DeviceState& st = state(b->device);
    size_t pool = pool_of(b);
    update_stat(st.stats.allocation, pool, -1);
    update_stat(st.stats.allocated_bytes, pool, -static_cast<int64_t>(b->size));
    update_stat(st.stats.requested_bytes, pool, -static_cast<int64_t>(b->requested));
    b->in_use = false;
    if (!b->stream_uses.empty()) {
      // Other streams may still read or write it: wait for their queued work.
      PendingFree p{b, {}};
      for (c10::StreamId sid : b->stream_uses) {
        qdEvent_t e = nullptr;
        if (qdEventCreateWithFlags(&e, qdEventDisableTiming) != qdSuccess) continue;
        c10::Stream s(c10::Stream::UNSAFE, c10::Device(c10::DeviceType::PrivateUse1, b->device),
                      sid);
        (void)qdEventRecord(e, native_stream(s));
        p.events.push_back(e);
      }
      b->stream_uses.clear();
      st.pending.push_back(std::move(p));
      return;
    }
    return_to_cache(b);
  }

 private:
  static void raw_delete_fn(void* ptr);

  DeviceState& state(c10::DeviceIndex d) {
    if (states_.empty()) states_.resize(device_count());
    return states_[d];
  }

  void return_to_cache(Block* b) {
    DeviceState& st = state(b->device);
    update_stat(st.stats.active, pool_of(b), -1);
    update_stat(st.stats.active_bytes, pool_of(b), -static_cast<int64_t>(b->size));
    if (caching_) {
      st.free_blocks.emplace(std::make_pair(b->stream, b->size), b);
    } else {
      release_block(b);
    }
  }

  void process_pending(c10::DeviceIndex d, bool wait) {
    DeviceState& st = state(d);
    std::vector<PendingFree> still;
    for (auto& p : st.pending) {
      bool done = true;
      for (qdEvent_t e : p.events) {
        if (wait) (void)qdEventSynchronize(e);
        if (qdEventQuery(e) != qdSuccess) done = false;
      }
      if (done) {
        for (qdEvent_t e : p.events) (void)qdEventDestroy(e);
        return_to_cache(p.block);
      } else {
        still.push_back(std::move(p));
      }
    }
    st.pending.swap(still);
  }

  void release_block(Block* b) {
    DeviceState& st = state(b->device);
    c10::DeviceIndex previous = current_device();
    (void)qdSetDevice(b->device);
    (void)qdFree(b->ptr);
    (void)qdSetDevice(previous);
    update_stat(st.stats.segment, pool_of(b), -1);
    update_stat(st.stats.reserved_bytes, pool_of(b), -static_cast<int64_t>(b->size));
    st.stats.num_device_free++;
    delete b;
  }

  void release_cached(c10::DeviceIndex d) {
    DeviceState& st = state(d);
    for (auto& kv : st.free_blocks) release_block(kv.second);
    st.free_blocks.clear();
  }

  Block* take_cached(DeviceState& st, c10::StreamId stream, size_t size) {
    auto it = st.free_blocks.lower_bound({stream, size});
    if (it == st.free_blocks.end() || it->first.first != stream) return nullptr;
    size_t found = it->first.second;
    // No splitting: accept an exact small block, or a large one wasting <= 1/8.
    bool ok = size <= kSmallLimit ? found == size : found - size <= size / 8;
    if (!ok) return nullptr;
    Block* b = it->second;
    st.free_blocks.erase(it);
    return b;
  }

  Block* get_block(c10::DeviceIndex device, c10::StreamId stream, size_t nbytes) {
    DeviceState& st = state(device);
    process_pending(device, /*wait=*/false);
    size_t size = round_size(nbytes);
    TORCH_CHECK_WITH(OutOfMemoryError, size >= nbytes, "qdev: allocation of ", nbytes,
                     " bytes overflows");
    Block* b = caching_ ? take_cached(st, stream, size) : nullptr;
    if (b == nullptr) {
      void* ptr = nullptr;
      qdError_t err = qdMalloc(&ptr, size);
      if (err == qdErrorMemoryAllocation) {
        // Give the cache back to the device and try once more.
        st.stats.num_alloc_retries++;
        process_pending(device, /*wait=*/true);
        release_cached(device);
        err = qdMalloc(&ptr, size);
      }
      if (err == qdErrorMemoryAllocation) {
        st.stats.num_ooms++;
        raise_oom(device, nbytes);
      }
      QDEV_CHECK(err);
      b = new Block();
      b->ptr = ptr;
      b->size = size;
      b->device = device;
      b->stream = stream;
      update_stat(st.stats.segment, pool_of(b), 1);
      update_stat(st.stats.reserved_bytes, pool_of(b), static_cast<int64_t>(size));
      st.stats.num_device_alloc++;
    }
    b->requested = nbytes;
    b->in_use = true;
    size_t pool = pool_of(b);
    update_stat(st.stats.allocation, pool, 1);
    update_stat(st.stats.allocated_bytes, pool, static_cast<int64_t>(b->size));
    update_stat(st.stats.requested_bytes, pool, static_cast<int64_t>(nbytes));
    update_stat(st.stats.active, pool, 1);
    update_stat(st.stats.active_bytes, pool, static_cast<int64_t>(b->size));
    return b;
  }

  [[noreturn]] void raise_oom(c10::DeviceIndex device, size_t nbytes) {
    DeviceState& st = state(device);
    size_t free_bytes = 0, total = 0;
    (void)qdMemGetInfo(&free_bytes, &total);
    const auto agg = size_t(StatType::AGGREGATE);
    uint64_t allocated = st.stats.allocated_bytes[agg].current;
    uint64_t reserved = st.stats.reserved_bytes[agg].current;
    TORCH_CHECK_WITH(
        OutOfMemoryError, false, "QDEV out of memory. Tried to allocate ", format_size(nbytes),
        ". qdev ", static_cast<int>(device), " has a total capacity of ", format_size(total),
        " of which ", format_size(free_bytes), " is free. Of the allocated memory ",
        format_size(allocated), " is allocated by PyTorch, and ",
        format_size(reserved - allocated),
        " is reserved by PyTorch but unallocated. The capacity is set by QDEV_MEMORY_LIMIT.");
  }

  bool caching_ = true;
  std::mutex mu_;
  std::vector<DeviceState> states_;
  std::unordered_map<void*, Block*> ptr_to_block_;
};

QdevCachingAllocator g_allocator;

void QdevCachingAllocator::raw_delete_fn(void* ptr) {
  if (ptr != nullptr) g_allocator.free_ptr(ptr);
}

}  // namespace

c10::DeviceAllocator* device_allocator() { return &g_allocator; }

REGISTER_ALLOCATOR(c10::DeviceType::PrivateUse1, &g_allocator);

}  // namespace c10::qdev
