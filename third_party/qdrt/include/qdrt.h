/*
 * qdrt: the qdev device runtime ("driver").
 *
 * A torch-free C API modelled on the CUDA runtime for a virtual NPU whose
 * memory is host memory. Devices have a capacity and allocation accounting,
 * streams are ordered work queues (one worker thread each, started lazily),
 * events carry completion and a timestamp. Every call returns a qdError_t.
 *
 * Environment:
 *   QDEV_DEVICE_COUNT  number of devices (default 2, 0..64)
 *   QDEV_MEMORY_LIMIT  capacity of each device: bytes, or with K/M/G/T suffix
 *                      (KiB/MiB/GiB also accepted); default physical RAM / count
 *
 * The current device is thread-local (default 0). A NULL qdStream_t means the
 * default stream of the current device.
 */
#ifndef QDRT_H_
#define QDRT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define QDRT_API __declspec(dllexport)
#else
#define QDRT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qdError {
  qdSuccess = 0,
  qdErrorInvalidValue = 1,
  qdErrorMemoryAllocation = 2,
  qdErrorInvalidDevice = 3,
  qdErrorInvalidResourceHandle = 4,
  qdErrorNotReady = 5,
  qdErrorInvalidMemcpyDirection = 6,
  qdErrorInvalidDevicePointer = 7,
  qdErrorLaunchFailure = 8,
  qdErrorUnknown = 999
} qdError_t;

typedef enum qdMemcpyKind {
  qdMemcpyHostToHost = 0,
  qdMemcpyHostToDevice = 1,
  qdMemcpyDeviceToHost = 2,
  qdMemcpyDeviceToDevice = 3,
  qdMemcpyDefault = 4 /* infer the direction from the pointers */
} qdMemcpyKind;

typedef enum qdMemoryType {
  qdMemoryTypeUnregistered = 0, /* ordinary pageable host memory */
  qdMemoryTypeHost = 1,         /* pinned host memory from qdMallocHost */
  qdMemoryTypeDevice = 2        /* device memory from qdMalloc */
} qdMemoryType;

typedef struct qdPointerAttributes {
  qdMemoryType type;
  int device;          /* owning device, -1 for host memory */
  void* base;          /* start of the allocation that holds the pointer */
  size_t size;         /* size of that allocation in bytes */
} qdPointerAttributes;

typedef struct qdDeviceProp {
  char name[64];
  size_t totalGlobalMem;
  int multiProcessorCount; /* host cores the device computes on */
  int major, minor;        /* virtual architecture version */
} qdDeviceProp;

typedef struct qdStream_st* qdStream_t;
typedef struct qdEvent_st* qdEvent_t;
typedef void (*qdHostFn_t)(void* user_data);

enum { qdEventDefault = 0, qdEventDisableTiming = 2 };
enum { qdStreamDefault = 0, qdStreamNonBlocking = 1 };

/* Errors */
QDRT_API const char* qdGetErrorName(qdError_t error);
QDRT_API const char* qdGetErrorString(qdError_t error);

/* Devices */
QDRT_API qdError_t qdGetDeviceCount(int* count);
QDRT_API qdError_t qdSetDevice(int device);
QDRT_API qdError_t qdGetDevice(int* device);
QDRT_API qdError_t qdGetDeviceProperties(qdDeviceProp* prop, int device);
QDRT_API qdError_t qdDeviceSynchronize(void); /* all streams of the current device */

/* Memory (device memory belongs to the current device) */
QDRT_API qdError_t qdMalloc(void** ptr, size_t size);
QDRT_API qdError_t qdFree(void* ptr);
QDRT_API qdError_t qdMallocHost(void** ptr, size_t size);
QDRT_API qdError_t qdFreeHost(void* ptr);
QDRT_API qdError_t qdMemGetInfo(size_t* free_bytes, size_t* total_bytes);
QDRT_API qdError_t qdDeviceMemoryUsed(int device, size_t* used_bytes);
QDRT_API qdError_t qdPointerGetAttributes(qdPointerAttributes* attr, const void* ptr);
QDRT_API qdError_t qdMemcpy(void* dst, const void* src, size_t count, qdMemcpyKind kind);
QDRT_API qdError_t qdMemcpyAsync(void* dst, const void* src, size_t count, qdMemcpyKind kind,
                                 qdStream_t stream);
QDRT_API qdError_t qdMemset(void* ptr, int value, size_t count);

/* Streams (bound to the device current at creation; lower priority number = higher priority) */
QDRT_API qdError_t qdStreamCreate(qdStream_t* stream);
QDRT_API qdError_t qdStreamCreateWithPriority(qdStream_t* stream, unsigned int flags, int priority);
QDRT_API qdError_t qdStreamDestroy(qdStream_t stream);
QDRT_API qdError_t qdStreamSynchronize(qdStream_t stream);
QDRT_API qdError_t qdStreamQuery(qdStream_t stream); /* qdSuccess when idle, else qdErrorNotReady */
QDRT_API qdError_t qdStreamWaitEvent(qdStream_t stream, qdEvent_t event, unsigned int flags);
QDRT_API qdError_t qdStreamGetPriority(qdStream_t stream, int* priority);
QDRT_API qdError_t qdStreamGetDevice(qdStream_t stream, int* device);
QDRT_API qdError_t qdDeviceGetDefaultStream(int device, qdStream_t* stream);
QDRT_API qdError_t qdDeviceGetStreamPriorityRange(int* least_priority, int* greatest_priority);
QDRT_API qdError_t qdLaunchHostFunc(qdStream_t stream, qdHostFn_t fn, void* user_data);

/* Events */
QDRT_API qdError_t qdEventCreate(qdEvent_t* event);
QDRT_API qdError_t qdEventCreateWithFlags(qdEvent_t* event, unsigned int flags);
QDRT_API qdError_t qdEventDestroy(qdEvent_t event);
QDRT_API qdError_t qdEventRecord(qdEvent_t event, qdStream_t stream);
QDRT_API qdError_t qdEventQuery(qdEvent_t event); /* qdSuccess when complete (or never recorded) */
QDRT_API qdError_t qdEventSynchronize(qdEvent_t event);
QDRT_API qdError_t qdEventElapsedTime(float* ms, qdEvent_t start, qdEvent_t end);

#ifdef __cplusplus
} /* extern "C" */

#include <functional>
/* C++ extension: enqueue a callable (used by the torch glue for async copies
 * that must keep their buffers alive until the copy ran). */
QDRT_API qdError_t qdLaunchHostTask(qdStream_t stream, std::function<void()> task);
#endif

#endif /* QDRT_H_ */
