// Every aten registration of the qdev backend, on one screen. Implementations
// live in native/.
#include <torch/library.h>

#include "native/QdevNative.h"

namespace at::qdev {

namespace native = at::native::qdev;

// The minimal op set (docs/source/accelerator/operators.md) plus fill/zero.
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  m.impl("empty.memory_format", native::empty_memory_format);
  m.impl("empty_strided", native::empty_strided);
  m.impl("as_strided", native::as_strided);
  m.impl("view", native::view);
  m.impl("_reshape_alias", native::reshape_alias);
  m.impl("resize_", native::resize_);
  m.impl("set_.source_Storage_storage_offset", native::set_source_storage_offset);
  m.impl("set_.source_Storage", native::set_source_storage);
  m.impl("set_.source_Tensor", native::set_source_tensor);
  m.impl("set_", native::set_empty);
  m.impl("_copy_from", native::copy_from);
  m.impl("_copy_from_and_resize", native::copy_from_and_resize);
  m.impl("_local_scalar_dense", native::local_scalar_dense);
  m.impl("fill_.Scalar", native::fill_scalar_);
  m.impl("fill_.Tensor", native::fill_tensor_);
  m.impl("zero_", native::zero_);
  m.impl("record_stream", native::record_stream);
  m.impl("native_dropout", native::native_dropout);
}

// Random ops run the CPU kernel on aliases with the qdev generator's engine
// (explicit so that they never depend on the global fallback's behaviour).
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  const auto random_kernel = [] {
    return torch::CppFunction::makeFromBoxedFunction<&native::cpu_fallback>();
  };
  for (const char* name :
       {"normal_", "uniform_", "random_", "random_.from", "random_.to", "bernoulli_.Tensor",
        "bernoulli_.float", "bernoulli.p", "exponential_", "geometric_", "log_normal_",
        "cauchy_", "randperm.generator_out", "multinomial", "normal.Tensor_float",
        "normal.float_Tensor", "normal.Tensor_Tensor"}) {
    m.impl(name, random_kernel());
  }
}

// Functional ops whose structured default (meta + the CPU out= kernel) trips a
// CPU-kernel quirk: run the CPU functional kernel instead. (mse_loss.out on the
// CPU resizes a 0-dim out to the input shape and warns about it.)
//
// convolution: its composite default picks convolution_overrideable for
// backends other than CPU/CUDA; the CPU kernels (oneDNN) run on aliases.
TORCH_LIBRARY_IMPL(aten, PrivateUse1, m) {
  for (const char* name : {"mse_loss", "convolution", "convolution_backward"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&native::cpu_fallback>());
  }
}

// Everything else: CPU kernels over aliases of the qdev memory.
TORCH_LIBRARY_IMPL(_, PrivateUse1, m) {
  m.fallback(torch::CppFunction::makeFromBoxedFunction<&native::cpu_fallback>());
}

// _copy_from must see conj/neg views as they are and honour the bits itself;
// the default Conjugate/Negative fallbacks would clone through copy_ and
// recurse into _copy_from forever.
TORCH_LIBRARY_IMPL(aten, Conjugate, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}
TORCH_LIBRARY_IMPL(aten, Negative, m) {
  m.impl("_copy_from", torch::CppFunction::makeFallthrough());
  m.impl("_copy_from_and_resize", torch::CppFunction::makeFallthrough());
}

}  // namespace at::qdev
