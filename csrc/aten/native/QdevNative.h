#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/Scalar.h>
#include <torch/library.h>

#include <optional>

#include "QdevMacros.h"

namespace at::native::qdev {

// --- aliasing helpers (TensorAlias.cpp) -------------------------------------
// qdev memory is host memory, so a qdev tensor can be seen as a CPU tensor
// over the same bytes. The alias spans the whole storage (views computed on it
// map back exactly) and carries the conj/neg bits. A resizable alias lets an
// out= kernel grow it; the caller then moves the result back (see Fallback).
at::Tensor cpu_alias(const at::Tensor& t, bool resizable = false);
// Like cpu_alias (not resizable), but the alias owns a reference to t's storage, so it may
// outlive t (zero-copy export to host consumers, e.g. DLPack).
QDEV_EXPORT at::Tensor owning_cpu_alias(const at::Tensor& t);
// A qdev tensor over `owner`'s storage with the geometry of `view`, a CPU
// tensor that aliases cpu_alias(owner).
at::Tensor qdev_view_of(const at::Tensor& owner, const at::Tensor& view);

// --- minimal op set (Minimal.cpp) -------------------------------------------
at::Tensor empty_memory_format(c10::IntArrayRef size, std::optional<c10::ScalarType> dtype,
                               std::optional<c10::Layout> layout,
                               std::optional<c10::Device> device, std::optional<bool> pin_memory,
                               std::optional<c10::MemoryFormat> memory_format);
at::Tensor empty_strided(c10::IntArrayRef size, c10::IntArrayRef stride,
                         std::optional<c10::ScalarType> dtype, std::optional<c10::Layout> layout,
                         std::optional<c10::Device> device, std::optional<bool> pin_memory);
at::Tensor as_strided(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride,
                      std::optional<int64_t> storage_offset);
at::Tensor view(const at::Tensor& self, c10::IntArrayRef size);
at::Tensor reshape_alias(const at::Tensor& self, c10::IntArrayRef size, c10::IntArrayRef stride);
const at::Tensor& resize_(const at::Tensor& self, c10::IntArrayRef size,
                          std::optional<c10::MemoryFormat> memory_format);
at::Tensor& set_source_storage_offset(at::Tensor& self, c10::Storage source, int64_t offset,
                                      c10::IntArrayRef size, c10::IntArrayRef stride);
at::Tensor& set_source_storage(at::Tensor& self, c10::Storage source);
at::Tensor& set_source_tensor(at::Tensor& self, const at::Tensor& source);
at::Tensor& set_empty(at::Tensor& self);
c10::Scalar local_scalar_dense(const at::Tensor& self);
at::Tensor& fill_scalar_(at::Tensor& self, const c10::Scalar& value);
at::Tensor& fill_tensor_(at::Tensor& self, const at::Tensor& value);
at::Tensor& zero_(at::Tensor& self);
void record_stream(at::Tensor& self, c10::Stream stream);
// Draws its mask with bernoulli_, i.e. from the qdev generator (the op has no
// generator argument, so the CPU kernel would use the CPU generator).
std::tuple<at::Tensor, at::Tensor> native_dropout(const at::Tensor& input, double p,
                                                  std::optional<bool> train);

// --- copies (Copy.cpp) --------------------------------------------------------
at::Tensor copy_from(const at::Tensor& self, const at::Tensor& dst, bool non_blocking);
at::Tensor copy_from_and_resize(const at::Tensor& self, const at::Tensor& dst);

// --- boxed kernels (Fallback.cpp) ---------------------------------------------
// Runs any aten op on CPU aliases of its qdev arguments; random ops draw from
// the qdev generator of the target device.
void cpu_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack);

}  // namespace at::native::qdev
