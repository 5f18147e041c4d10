#include "QdevGenerator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/DistributionsHelper.h>

#include <mutex>
#include <vector>

#include "QdevFunctions.h"

namespace c10::qdev {

QdevGeneratorImpl::QdevGeneratorImpl(c10::DeviceIndex device, uint64_t seed)
    : c10::GeneratorImpl(c10::Device(c10::DeviceType::PrivateUse1, device),
                         c10::DispatchKeySet(c10::DispatchKey::PrivateUse1)),
      cpu_(at::make_generator<at::CPUGeneratorImpl>(seed)) {}

void QdevGeneratorImpl::set_current_seed(uint64_t seed) { cpu_.set_current_seed(seed); }

void QdevGeneratorImpl::set_offset(uint64_t offset) { cpu_.set_offset(offset); }

uint64_t QdevGeneratorImpl::get_offset() const { return cpu_.get_offset(); }

uint64_t QdevGeneratorImpl::current_seed() const { return cpu_.current_seed(); }

uint64_t QdevGeneratorImpl::seed() { return cpu_.seed(); }

void QdevGeneratorImpl::set_state(const c10::TensorImpl& new_state) {
  cpu_.unsafeGetGeneratorImpl()->set_state(new_state);
}

c10::intrusive_ptr<c10::TensorImpl> QdevGeneratorImpl::get_state() const {
  return cpu_.unsafeGetGeneratorImpl()->get_state();
}

QdevGeneratorImpl* QdevGeneratorImpl::clone_impl() const {
  auto* copy = new QdevGeneratorImpl(device().index(), current_seed());
  copy->cpu_ = cpu_.clone();
  return copy;
}

const at::Generator& default_generator(c10::DeviceIndex device) {
  static std::vector<at::Generator>* gens = [] {
    auto* v = new std::vector<at::Generator>();
    for (c10::DeviceIndex d = 0; d < device_count(); ++d) {
      v->push_back(at::make_generator<QdevGeneratorImpl>(d, c10::default_rng_seed_val));
    }
    return v;
  }();
  device = resolve_device_index(device);
  return (*gens)[device];
}

at::Generator new_generator(c10::DeviceIndex device) {
  device = resolve_device_index(device);
  return at::make_generator<QdevGeneratorImpl>(device, c10::default_rng_seed_val);
}

}  // namespace c10::qdev
