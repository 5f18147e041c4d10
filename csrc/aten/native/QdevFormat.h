// torch_npu's tensor formats on qdev (ND/NCHW/... and FRACTAL_NZ), kept as
// per-storage metadata (runtime/QdevStorageImpl.h), and the host views that
// let every other op see logical (ND) values of internal-format tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "QdevMacros.h"

namespace at::native::qdev {

namespace format {
constexpr int64_t kUndefined = -1, kNCHW = 0, kNHWC = 1, kND = 2, kNC1HWC0 = 3, kFractalZ = 4,
                  kNC1HWC0_C04 = 12, kHWCN = 16, kNDHWC = 27, kFractalNZ = 29, kNCDHW = 30,
                  kNDC1HWC0 = 32, kFractalZ3D = 33, kNC = 35, kNCL = 47, kNZ_C0_16 = 50,
                  kNZ_C0_32 = 51, kNZ_C0_2 = 52, kNZ_C0_4 = 53, kNZ_C0_8 = 54;
QDEV_EXPORT const char* name(int64_t fmt);
bool is_base(int64_t fmt);
bool is_nz(int64_t fmt);
}  // namespace format

// torch.qdev.config.allow_internal_format, mirrored for C++.
QDEV_EXPORT void set_allow_internal_format(bool allow);
QDEV_EXPORT bool allow_internal_format();

QDEV_EXPORT bool is_internal_format(const at::Tensor& t);

// A CPU tensor holding t's logical values. For base formats it aliases t's
// memory; for internal formats it is a view of a freshly unpacked ND copy of
// the whole storage, returned in *nd_base so that writes can be packed back.
at::Tensor logical_host_view(const at::Tensor& t, at::Tensor* nd_base = nullptr);
// Packs an ND copy (from logical_host_view) back into t's internal-format storage.
void store_nd_base(const at::Tensor& t, const at::Tensor& nd_base);

// Drops data derived from t's storage bytes (cached GEMM column sums); called
// by every path that writes qdev memory outside the logical-value views.
void invalidate_derived_caches(const at::Tensor& t);

// int8 FRACTAL_NZ (C0 32) 2-D weight spanning its whole storage: the GEMM's
// packed operand as is. nz_weight_view also returns the cached column sums.
bool x2_is_nz(const at::Tensor& x2);
void nz_weight_view(const at::Tensor& x2, int64_t k, int64_t n, const int8_t*& data,
                    const int32_t*& colsum, bool& has_min);

// Ops.
QDEV_EXPORT int64_t get_npu_format(const at::Tensor& self);
int64_t get_storage_size(const at::Tensor& self);
at::Tensor npu_format_cast(const at::Tensor& self, int64_t acl_format,
                           std::optional<int64_t> customize_dtype, std::optional<int64_t> input_dtype);
at::Tensor npu_format_cast_tensor(const at::Tensor& self, const at::Tensor& dst,
                                  std::optional<int64_t> customize_dtype,
                                  std::optional<int64_t> input_dtype);
at::Tensor& npu_format_cast_inplace(at::Tensor& self, int64_t acl_format,
                                    std::optional<int64_t> customize_dtype,
                                    std::optional<int64_t> input_dtype);
at::Tensor& npu_format_cast_inplace_tensor(at::Tensor& self, const at::Tensor& src,
                                           std::optional<int64_t> customize_dtype,
                                           std::optional<int64_t> input_dtype);

}  // namespace at::native::qdev
