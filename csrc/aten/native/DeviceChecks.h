// Device glue shared by the ops that run on host views of qdev or CPU tensors: every tensor
// argument on the first one's device, and that device entered (after its queued work).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>

#include <optional>

#include "../../runtime/QdevStream.h"

namespace at::native::qdev {

inline void same_device(const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.device() == like.device(), "Expected all tensors to be on the same device, but found at least "
              "two devices, ", like.device(), " and ", t.device(), "!");
}

// An optional argument: checked only when given.
inline void same_device(const std::optional<at::Tensor>& t, const at::Tensor& like) {
  if (t.has_value() && t->defined()) same_device(*t, like);
}

// qdev tensors: this device, after the work queued on its current stream.
inline void enter(const at::Tensor& like, std::optional<c10::DeviceGuard>& guard) {
  if (like.device().type() == c10::DeviceType::PrivateUse1) {
    guard.emplace(like.device());
    c10::qdev::sync_current_stream(like.device().index());
  }
}

}  // namespace at::native::qdev
