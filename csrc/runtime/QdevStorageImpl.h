#pragma once

#include <c10/core/ScalarType.h>
#include <c10/core/Storage.h>
#include <c10/core/StorageImpl.h>

#include <memory>
#include <mutex>
#include <vector>

#include "QdevMacros.h"

namespace c10::qdev {

// Storage of qdev tensors, carrying torch_npu's per-storage format descriptor.
// A storage in an internal format (FRACTAL_NZ) holds the packed bytes of a
// virtual ND buffer of shape base_sizes; every tensor on it indexes that ND
// buffer with its ordinary sizes/strides/offset.
struct QDEV_EXPORT QdevStorageImpl final : public c10::StorageImpl {
  QdevStorageImpl(c10::StorageImpl::use_byte_size_t use_byte_size, c10::SymInt size_bytes,
                  c10::DataPtr data_ptr, c10::Allocator* allocator, bool resizable)
      : c10::StorageImpl(use_byte_size, std::move(size_bytes), std::move(data_ptr), allocator,
                         resizable) {}

  static constexpr int64_t kUnset = -1;  // base format, guessed from the tensor's rank

  int64_t format = kUnset;
  std::vector<int64_t> base_sizes;  // internal formats: the logical ND shape encoded
  int64_t c0 = 0;                   // internal formats: elements per fractal row
  c10::ScalarType dtype = c10::ScalarType::Undefined;  // internal formats: element type

  // int8 FRACTAL_NZ weights: per-matrix column sums for the GEMM's u8 correction,
  // computed on first use and dropped whenever the bytes are rewritten.
  std::mutex cache_mu;
  std::vector<int32_t> colsum;
  bool has_min = true;  // whether the int8 weight holds -128
  bool colsum_valid = false;
  // Other data an op derived from the bytes (e.g. npu_grouped_matmul's repacked int4 experts),
  // owned here so that it is dropped together with the column sums.
  std::shared_ptr<void> derived;

  void invalidate_cache() {
    std::lock_guard<std::mutex> lock(cache_mu);
    colsum_valid = false;
    colsum.clear();
    derived.reset();
  }
};

// The qdev storage impl behind a storage, or nullptr (e.g. storages created
// directly as c10::StorageImpl, which only ever hold base formats).
inline QdevStorageImpl* qdev_storage_impl(const c10::Storage& storage) {
  return dynamic_cast<QdevStorageImpl*>(storage.unsafeGetStorageImpl());
}

}  // namespace c10::qdev
