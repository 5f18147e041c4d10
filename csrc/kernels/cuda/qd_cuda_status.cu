// Status texts and the last CUDA error of a launch, per host thread.
#include <string>

#include "qd_cuda_common.cuh"

namespace qdev::cuda_kernels {
namespace {
thread_local std::string last_cuda_error;
}

Status launch_status(cudaError_t err) {
  if (err == cudaSuccess) return Status::kOk;
  last_cuda_error = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  return Status::kLaunchFailed;
}

const char* cuda_error_text() { return last_cuda_error.c_str(); }

const char* status_text(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument (layout contract of the CUDA kernel not met)";
    case Status::kUnsupported: return "unsupported by the CUDA kernels";
    case Status::kLaunchFailed: return "CUDA launch failed";
  }
  return "unknown status";
}

}  // namespace qdev::cuda_kernels
