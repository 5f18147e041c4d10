#pragma once

#include <ATen/core/Generator.h>
#include <c10/core/GeneratorImpl.h>

#include "QdevMacros.h"

namespace c10::qdev {

// A qdev generator: device PrivateUse1, state and stream of numbers of an
// inner CPU mt19937 generator. Because qdev memory is host memory, random
// kernels run as CPU kernels over CPU aliases of qdev tensors and draw from
// the inner generator, so seeding torch.qdev is what makes them reproducible.
struct QDEV_EXPORT QdevGeneratorImpl final : public c10::GeneratorImpl {
  explicit QdevGeneratorImpl(c10::DeviceIndex device, uint64_t seed);

  void set_current_seed(uint64_t seed) override;
  void set_offset(uint64_t offset) override;
  uint64_t get_offset() const override;
  uint64_t current_seed() const override;
  uint64_t seed() override;
  void set_state(const c10::TensorImpl& new_state) override;
  c10::intrusive_ptr<c10::TensorImpl> get_state() const override;

  // The CPU generator doing the work (same state, CPU device type).
  const at::Generator& cpu_generator() const { return cpu_; }

 private:
  QdevGeneratorImpl* clone_impl() const override;
  at::Generator cpu_;
};

QDEV_EXPORT const at::Generator& default_generator(c10::DeviceIndex device);
QDEV_EXPORT at::Generator new_generator(c10::DeviceIndex device);

}  // namespace c10::qdev
