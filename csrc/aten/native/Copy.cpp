// Copies between CPU and qdev and between qdev devices. Synchronous copies
// run on the calling thread over CPU aliases (any dtype, stride, broadcast,
// conj/neg bit). non_blocking copies of equal, contiguous byte ranges where
// the host side is pinned are queued on the current stream instead, as CUDA
// does; the queued task keeps both storages alive until it ran.
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <c10/core/DeviceGuard.h>

#include <cstring>

#include "../../runtime/QdevException.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QdevNative.h"

namespace at::native::qdev {
namespace {

bool is_qdev(const at::Tensor& t) { return t.device().type() == c10::DeviceType::PrivateUse1; }

bool is_pinned(const at::Tensor& t) {
  return at::detail::getPrivateUse1Hooks().isPinnedPtr(t.const_data_ptr());
}

bool can_copy_async(const at::Tensor& src, const at::Tensor& dst) {
  if (src.dtype() != dst.dtype() || src.sizes() != dst.sizes()) return false;
  if (!src.is_contiguous() || !dst.is_contiguous()) return false;
  if (src.is_conj() != dst.is_conj() || src.is_neg() != dst.is_neg()) return false;
  if (is_qdev(src) && is_qdev(dst)) return src.device() == dst.device();
  return is_qdev(src) ? is_pinned(dst) : is_pinned(src);
}

}  // namespace

at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking) {
  TORCH_CHECK(is_qdev(self) || self.is_cpu(), "qdev: cannot copy from ", self.device(), " to ",
              dst.device(), "; copy through the CPU");
  TORCH_CHECK(is_qdev(dst) || dst.is_cpu(), "qdev: cannot copy from ", self.device(), " to ",
              dst.device(), "; copy through the CPU");
  if (dst.numel() == 0) return dst;
  c10::DeviceIndex device = is_qdev(dst) ? dst.device().index() : self.device().index();
  c10::DeviceGuard guard(c10::Device(c10::DeviceType::PrivateUse1, device));

  if (non_blocking && can_copy_async(self, dst) && !is_internal_format(self) &&
      !is_internal_format(dst)) {
    c10::Storage keep_src = self.storage();
    c10::Storage keep_dst = dst.storage();
    const void* src_ptr = self.const_data_ptr();
    void* dst_ptr = dst.data_ptr();
    size_t nbytes = dst.nbytes();
    qdStream_t stream = c10::qdev::native_stream(c10::qdev::current_stream(device));
    QDEV_CHECK(qdLaunchHostTask(stream, [keep_src, keep_dst, src_ptr, dst_ptr, nbytes] {
      std::memcpy(dst_ptr, src_ptr, nbytes);
    }));
    return dst;
  }

  if (is_qdev(self)) c10::qdev::sync_current_stream(self.device().index());
  if (is_qdev(dst)) c10::qdev::sync_current_stream(dst.device().index());
  // Internal-format (FRACTAL_NZ) sides are unpacked to ND around the copy.
  const at::Tensor src_view = logical_host_view(self);
  at::Tensor dst_base;
  at::Tensor dst_view = logical_host_view(dst, &dst_base);
  dst_view.copy_(src_view);
  if (dst_base.defined()) {
    store_nd_base(dst, dst_base);
  } else {
    invalidate_derived_caches(dst);  // e.g. a raw byte copy into a packed weight
  }
  return dst;
}

at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst) {
  dst.resize_(self.sizes());
  return copy_from(self, dst, /*non_blocking=*/false);
}

}  // namespace at::native::qdev
