// Device enumeration, selection (thread-local) and error strings.
#include "internal.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace qdrt {

bool parse_byte_size(const char* text, size_t* out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (end == text || !(value >= 0) || std::isinf(value)) return false;
  while (*end == ' ') ++end;
  double mult = 1;
  switch (std::toupper(static_cast<unsigned char>(*end))) {
    case '\0': break;
    case 'B': mult = 1; ++end; break;
    case 'K': mult = 1024.0; ++end; break;
    case 'M': mult = 1024.0 * 1024; ++end; break;
    case 'G': mult = 1024.0 * 1024 * 1024; ++end; break;
    case 'T': mult = 1024.0 * 1024 * 1024 * 1024; ++end; break;
    default: return false;
  }
  if (mult != 1) {  // accept K, KB, KiB
    if (*end == 'i' || *end == 'I') ++end;
    if (*end == 'b' || *end == 'B') ++end;
  }
  if (*end != '\0') return false;
  double bytes = value * mult;
  if (bytes > 9.0e18) return false;
  *out = static_cast<size_t>(bytes);
  return true;
}

static Config load_config() {
  Config c;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  c.cores = cores > 0 ? static_cast<int>(cores) : 1;
  if (const char* env = std::getenv("QDEV_DEVICE_COUNT")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 0 && n <= kMaxDevices) {
      c.device_count = static_cast<int>(n);
    } else {
      std::fprintf(stderr, "qdrt: ignoring invalid QDEV_DEVICE_COUNT='%s' (want 0..%d)\n", env,
                   kMaxDevices);
    }
  }
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGE_SIZE);
  size_t physical = (pages > 0 && page_size > 0)
                        ? static_cast<size_t>(pages) * static_cast<size_t>(page_size)
                        : (size_t{16} << 30);
  c.capacity_bytes = physical / static_cast<size_t>(c.device_count > 0 ? c.device_count : 1);
  if (const char* env = std::getenv("QDEV_MEMORY_LIMIT")) {
    size_t bytes = 0;
    if (parse_byte_size(env, &bytes) && bytes > 0) {
      c.capacity_bytes = bytes;
    } else {
      std::fprintf(stderr, "qdrt: ignoring invalid QDEV_MEMORY_LIMIT='%s'\n", env);
    }
  }
  return c;
}

const Config& config() {
  static const Config c = load_config();
  return c;
}

bool valid_device(int device) { return device >= 0 && device < config().device_count; }

static thread_local int tls_device = 0;

int current_device() { return tls_device; }

}  // namespace qdrt

using namespace qdrt;

extern "C" {

const char* qdGetErrorName(qdError_t error) {
  switch (error) {
    case qdSuccess: return "qdSuccess";
    case qdErrorInvalidValue: return "qdErrorInvalidValue";
    case qdErrorMemoryAllocation: return "qdErrorMemoryAllocation";
    case qdErrorInvalidDevice: return "qdErrorInvalidDevice";
    case qdErrorInvalidResourceHandle: return "qdErrorInvalidResourceHandle";
    case qdErrorNotReady: return "qdErrorNotReady";
    case qdErrorInvalidMemcpyDirection: return "qdErrorInvalidMemcpyDirection";
    case qdErrorInvalidDevicePointer: return "qdErrorInvalidDevicePointer";
    case qdErrorLaunchFailure: return "qdErrorLaunchFailure";
    case qdErrorUnknown: return "qdErrorUnknown";
  }
  return "qdErrorUnrecognized";
}

const char* qdGetErrorString(qdError_t error) {
  switch (error) {
    case qdSuccess: return "no error";
    case qdErrorInvalidValue: return "invalid argument";
    case qdErrorMemoryAllocation: return "out of memory";
    case qdErrorInvalidDevice: return "invalid device ordinal";
    case qdErrorInvalidResourceHandle: return "invalid resource handle";
    case qdErrorNotReady: return "device not ready";
    case qdErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case qdErrorInvalidDevicePointer: return "invalid device pointer";
    case qdErrorLaunchFailure: return "unspecified launch failure";
    case qdErrorUnknown: return "unknown error";
  }
  return "unrecognized error code";
}

qdError_t qdGetDeviceCount(int* count) {
  if (count == nullptr) return qdErrorInvalidValue;
  *count = config().device_count;
  return qdSuccess;
}

qdError_t qdSetDevice(int device) {
  if (!valid_device(device)) return qdErrorInvalidDevice;
  tls_device = device;
  return qdSuccess;
}

qdError_t qdGetDevice(int* device) {
  if (device == nullptr) return qdErrorInvalidValue;
  if (config().device_count == 0) return qdErrorInvalidDevice;
  *device = tls_device;
  return qdSuccess;
}

qdError_t qdGetDeviceProperties(qdDeviceProp* prop, int device) {
  if (prop == nullptr) return qdErrorInvalidValue;
  if (!valid_device(device)) return qdErrorInvalidDevice;
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "qdev virtual NPU (host memory)");
  prop->totalGlobalMem = config().capacity_bytes;
  prop->multiProcessorCount = config().cores;
  prop->major = 1;
  prop->minor = 0;
  return qdSuccess;
}

qdError_t qdDeviceSynchronize(void) {
  int device = tls_device;
  if (!valid_device(device)) return qdErrorInvalidDevice;
  synchronize_device_streams(device);
  return qdSuccess;
}

}  // extern "C"
