// qdev::int4_group_search: the error-minimising (scale, minimum) search of the 4-bit
// recipe (torch_qdev.quantization.int4_search) for CPU/qdev float32 groups.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <vector>

#include "../../kernels/quant/qd_group_search.h"
#include "QdevFormat.h"
#include "QuantOps.h"

namespace at::native::qdev {

std::tuple<at::Tensor, at::Tensor> int4_group_search(const at::Tensor& w, const std::optional<at::Tensor>& importance,
                                                     at::ArrayRef<double> deltas, int64_t qmax) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kFloat, "int4_group_search: w must be a 2-D float32 tensor "
              "(groups, group_size), but it is ", w.scalar_type(), " of shape ", w.sizes());
  TORCH_CHECK(w.size(1) > 0, "int4_group_search: empty groups");
  TORCH_CHECK(qmax >= 1 && qmax <= 255, "int4_group_search: qmax must be in [1, 255], but it is ", qmax);
  const bool has_imp = importance.has_value() && importance->defined();
  if (has_imp) {
    TORCH_CHECK(importance->sizes() == w.sizes() && importance->scalar_type() == at::kFloat,
                "int4_group_search: importance must be float32 of w's shape ", w.sizes());
    TORCH_CHECK(importance->device() == w.device(), "Expected all tensors to be on the same device, but found at "
                "least two devices, ", w.device(), " and ", importance->device(), "!");
  }
  const at::Tensor wc = logical_host_view(w).contiguous();
  const at::Tensor ic = has_imp ? logical_host_view(*importance).contiguous() : at::Tensor();
  at::Tensor scale = at::empty({w.size(0)}, w.options());
  at::Tensor minimum = at::empty({w.size(0)}, w.options());
  std::vector<float> d(deltas.begin(), deltas.end());
  ::qdev::kernels::GroupSearchArgs a;
  a.w = wc.const_data_ptr<float>();
  a.importance = has_imp ? ic.const_data_ptr<float>() : nullptr;
  a.gs = w.size(1);
  a.qmax = static_cast<int>(qmax);
  a.deltas = d.data();
  a.ndeltas = static_cast<int>(d.size());
  a.scale = logical_host_view(scale).mutable_data_ptr<float>();
  a.minimum = logical_host_view(minimum).mutable_data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 8192 / a.gs);
  at::parallel_for(0, w.size(0), grain, [&](int64_t g0, int64_t g1) { ::qdev::kernels::group_search_ref(a, g0, g1); });
  return {scale, minimum};
}

}  // namespace at::native::qdev
