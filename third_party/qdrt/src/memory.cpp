// Device and pinned-host memory: allocation with per-device capacity
// accounting, a pointer table for attribute queries, and copies.
#include "internal.h"

#include <cstdlib>
#include <cstring>
#include <map>

#include <sys/mman.h>

namespace qdrt {
namespace {

// CUDA guarantees 256-byte alignment; SIMD kernels rely on at least 64.
constexpr size_t kAlignment = 256;

struct Allocation {
  size_t size;
  int device;  // -1 for pinned host memory
};

struct MemoryTable {
  std::mutex mu;
  std::map<uintptr_t, Allocation> blocks;  // keyed by base address
  size_t used[kMaxDevices] = {};
};

MemoryTable& table() {
  static MemoryTable* t = new MemoryTable();  // leaked: outlives static destructors
  return *t;
}

constexpr size_t kHugePage = size_t{2} << 20;

// Large blocks are 2 MiB aligned and marked for transparent huge pages: weight
// streams (decode) then take far fewer TLB misses.
void* aligned_host_alloc(size_t size) {
  const size_t align = size >= kHugePage ? kHugePage : kAlignment;
  size_t rounded = (size + align - 1) / align * align;
  if (rounded == 0) rounded = align;
  void* p = std::aligned_alloc(align, rounded);
#ifdef MADV_HUGEPAGE
  if (p != nullptr && align == kHugePage) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

// Looks up the allocation containing ptr; caller holds the table lock.
const std::pair<const uintptr_t, Allocation>* find_block(MemoryTable& t, const void* ptr) {
  auto addr = reinterpret_cast<uintptr_t>(ptr);
  auto it = t.blocks.upper_bound(addr);
  if (it == t.blocks.begin()) return nullptr;
  --it;
  size_t extent = it->second.size == 0 ? 1 : it->second.size;
  if (addr >= it->first + extent) return nullptr;
  return &*it;
}

qdMemoryType type_of(MemoryTable& t, const void* ptr, int* device) {
  const auto* b = find_block(t, ptr);
  if (b == nullptr) {
    *device = -1;
    return qdMemoryTypeUnregistered;
  }
  *device = b->second.device;
  return b->second.device < 0 ? qdMemoryTypeHost : qdMemoryTypeDevice;
}

// Checks that the pointers match the declared direction (CUDA rejects e.g.
// a host pointer passed as the device side of a HostToDevice copy).
qdError_t check_direction(const void* dst, const void* src, qdMemcpyKind kind) {
  if (kind == qdMemcpyDefault) return qdSuccess;
  if (kind < qdMemcpyHostToHost || kind > qdMemcpyDefault) return qdErrorInvalidMemcpyDirection;
  MemoryTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  int d = 0;
  bool dst_dev = type_of(t, dst, &d) == qdMemoryTypeDevice;
  bool src_dev = type_of(t, src, &d) == qdMemoryTypeDevice;
  switch (kind) {
    case qdMemcpyHostToDevice: return dst_dev ? qdSuccess : qdErrorInvalidDevicePointer;
    case qdMemcpyDeviceToHost: return src_dev ? qdSuccess : qdErrorInvalidDevicePointer;
    case qdMemcpyDeviceToDevice:
      return (src_dev && dst_dev) ? qdSuccess : qdErrorInvalidDevicePointer;
    default: return qdSuccess;
  }
}

}  // namespace
}  // namespace qdrt

using namespace qdrt;

extern "C" {

qdError_t qdMalloc(void** ptr, size_t size) {
  if (ptr == nullptr) return qdErrorInvalidValue;
  *ptr = nullptr;
  int device = current_device();
  if (!valid_device(device)) return qdErrorInvalidDevice;
  if (size == 0) return qdSuccess;  // like cudaMalloc: success with a null pointer
  MemoryTable& t = table();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    if (size > config().capacity_bytes || t.used[device] > config().capacity_bytes - size) {
      return qdErrorMemoryAllocation;
    }
    t.used[device] += size;  // reserve before the (slow) host allocation
  }
  void* p = aligned_host_alloc(size);
  std::lock_guard<std::mutex> lock(t.mu);
  if (p == nullptr) {
    t.used[device] -= size;
    return qdErrorMemoryAllocation;
  }
  t.blocks[reinterpret_cast<uintptr_t>(p)] = Allocation{size, device};
  *ptr = p;
  return qdSuccess;
}

qdError_t qdFree(void* ptr) {
  if (ptr == nullptr) return qdSuccess;
  MemoryTable& t = table();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    auto it = t.blocks.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == t.blocks.end() || it->second.device < 0) return qdErrorInvalidDevicePointer;
    t.used[it->second.device] -= it->second.size;
    t.blocks.erase(it);
  }
  std::free(ptr);
  return qdSuccess;
}

qdError_t qdMallocHost(void** ptr, size_t size) {
  if (ptr == nullptr) return qdErrorInvalidValue;
  *ptr = nullptr;
  if (size == 0) return qdSuccess;
  void* p = aligned_host_alloc(size);
  if (p == nullptr) return qdErrorMemoryAllocation;
  MemoryTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  t.blocks[reinterpret_cast<uintptr_t>(p)] = Allocation{size, -1};
  *ptr = p;
  return qdSuccess;
}

qdError_t qdFreeHost(void* ptr) {
  if (ptr == nullptr) return qdSuccess;
  MemoryTable& t = table();
  {
    std::lock_guard<std::mutex> lock(t.mu);
    auto it = t.blocks.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == t.blocks.end() || it->second.device >= 0) return qdErrorInvalidValue;
    t.blocks.erase(it);
  }
  std::free(ptr);
  return qdSuccess;
}

qdError_t qdMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return qdErrorInvalidValue;
  int device = current_device();
  if (!valid_device(device)) return qdErrorInvalidDevice;
  MemoryTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  *total_bytes = config().capacity_bytes;
  *free_bytes = config().capacity_bytes - t.used[device];
  return qdSuccess;
}

qdError_t qdDeviceMemoryUsed(int device, size_t* used_bytes) {
  if (used_bytes == nullptr) return qdErrorInvalidValue;
  if (!valid_device(device)) return qdErrorInvalidDevice;
  MemoryTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  *used_bytes = t.used[device];
  return qdSuccess;
}

qdError_t qdPointerGetAttributes(qdPointerAttributes* attr, const void* ptr) {
  if (attr == nullptr) return qdErrorInvalidValue;
  MemoryTable& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  const auto* b = find_block(t, ptr);
  if (b == nullptr) {
    *attr = qdPointerAttributes{qdMemoryTypeUnregistered, -1, nullptr, 0};
  } else {
    *attr = qdPointerAttributes{b->second.device < 0 ? qdMemoryTypeHost : qdMemoryTypeDevice,
                                b->second.device, reinterpret_cast<void*>(b->first),
                                b->second.size};
  }
  return qdSuccess;
}

qdError_t qdMemcpy(void* dst, const void* src, size_t count, qdMemcpyKind kind) {
  if (count == 0) return qdSuccess;
  if (dst == nullptr || src == nullptr) return qdErrorInvalidValue;
  qdError_t err = check_direction(dst, src, kind);
  if (err != qdSuccess) return err;
  // Synchronous copies are ordered after the current device's queued work,
  // like CUDA's legacy default stream.
  synchronize_device_streams(current_device());
  std::memmove(dst, src, count);
  return qdSuccess;
}

qdError_t qdMemcpyAsync(void* dst, const void* src, size_t count, qdMemcpyKind kind,
                        qdStream_t stream) {
  if (count == 0) return qdSuccess;
  if (dst == nullptr || src == nullptr) return qdErrorInvalidValue;
  qdError_t err = check_direction(dst, src, kind);
  if (err != qdSuccess) return err;
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return qdErrorInvalidResourceHandle;
  s->enqueue([dst, src, count] { std::memmove(dst, src, count); });
  return qdSuccess;
}

qdError_t qdMemset(void* ptr, int value, size_t count) {
  if (count == 0) return qdSuccess;
  if (ptr == nullptr) return qdErrorInvalidValue;
  synchronize_device_streams(current_device());
  std::memset(ptr, value, count);
  return qdSuccess;
}

}  // extern "C"
