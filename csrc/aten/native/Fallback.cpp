// The boxed CPU fallback for every aten op without a qdev kernel.
//
// Unlike at::native::cpu_fallback, which copies arguments to the CPU and
// results back, this one runs the CPU kernel on *aliases* of the qdev
// memory (it is host memory). That makes in-place ops, out= ops and views
// exact and cheap:
//   * in-place / out= kernels write straight into the qdev bytes; an out=
//     kernel that grows its output reallocates the (resizable) alias, and
//     the qdev tensor is then grown and filled to match;
//   * a result that aliases an argument's storage (a view) comes back as a
//     qdev view of the same storage; only fresh results are copied to qdev;
//   * Generator arguments are swapped for the CPU engine inside the qdev
//     generator, and an omitted generator becomes the target device's
//     default qdev generator, so torch.qdev.manual_seed governs every random
//     op, native or not.
// Device consistency is checked here because CPU kernels cannot see that an
// alias was a qdev tensor.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/detail/PrivateUse1HooksInterface.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/core/LegacyTypeDispatch.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "../../runtime/QdevFunctions.h"
#include "../../runtime/QdevGenerator.h"
#include "../../runtime/QdevStream.h"
#include "QdevFormat.h"
#include "QdevNative.h"

namespace at::native::qdev {
namespace {

constexpr auto kQdev = c10::DeviceType::PrivateUse1;

bool is_qdev(const at::Tensor& t) { return t.defined() && t.device().type() == kQdev; }

// Ops that, as on CUDA, accept CPU index tensors next to device tensors.
bool accepts_cpu_tensors(const c10::OperatorName& name) {
  static const std::unordered_set<std::string> ops = {
      "aten::index", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_"};
  return ops.count(name.name) != 0;
}

bool is_optional_generator(const c10::Argument& arg) {
  const auto& type = arg.type();
  if (type->kind() != c10::TypeKind::OptionalType) return false;
  return type->castRaw<c10::OptionalType>()->getElementType()->kind() ==
         c10::TypeKind::GeneratorType;
}

// A copy of a Tensor[] / Tensor?[] list with fn applied to its tensors.
template <typename Fn>
c10::impl::GenericList map_tensors(const c10::impl::GenericList& list, Fn fn) {
  c10::impl::GenericList out(list.elementType());
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    c10::IValue e = list.get(i);
    out.push_back(e.isTensor() ? c10::IValue(fn(e.toTensor())) : e);
  }
  return out;
}

class FallbackCall {
 public:
  explicit FallbackCall(const c10::OperatorHandle& op) : op_(op), schema_(op.schema()) {}

  void run(torch::jit::Stack* stack) {
    const auto& args = schema_.arguments();
    const size_t n = args.size();
    std::vector<c10::IValue> inputs(std::make_move_iterator(stack->end() - n),
                                    std::make_move_iterator(stack->end()));
    torch::jit::drop(*stack, n);

    for (size_t i = 0; i < n; ++i) scan(inputs[i]);
    check_devices();

    std::optional<c10::DeviceGuard> guard;
    if (target_) {
      guard.emplace(*target_);
      c10::qdev::sync_current_stream(target_->index());
    }
    for (size_t i = 0; i < n; ++i) {
      const bool is_write = args[i].alias_info() != nullptr && args[i].alias_info()->isWrite();
      stack->push_back(convert(inputs[i], args[i], is_write));
    }

    {
      // Below autograd: the aliases must not record history of their own.
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      op_.callBoxed(stack);
    }

    for (auto& w : writes_) {
      sync_written(w.original, w.alias);
      invalidate_derived_caches(w.original);
    }
    for (auto& w : internal_writes_) store_nd_base(w.original, w.alias);
    const size_t num_returns = schema_.returns().size();
    for (auto it = stack->end() - num_returns; it != stack->end(); ++it) *it = map_return(*it);
  }

 private:
  struct Alias {
    at::Tensor original;
    at::Tensor alias;
  };

  void note_tensor(const at::Tensor& t) {
    if (!t.defined()) return;
    if (is_qdev(t)) {
      if (!target_) {
        target_ = t.device();
      } else if (*target_ != t.device()) {
        mismatch_ = t.device();
      }
    } else if (t.is_cpu()) {
      if (t.dim() > 0 && !accepts_cpu_tensors(schema_.operator_name())) cpu_seen_ = true;
    } else {
      other_ = t.device();
    }
  }

  void scan(const c10::IValue& v) {
    if (v.isTensor()) {
      note_tensor(v.toTensor());
    } else if (v.isList()) {
      auto list = v.toList();
      for (size_t i = 0; i < list.size(); ++i) {
        c10::IValue e = list.get(i);
        if (e.isTensor()) note_tensor(e.toTensor());
      }
    } else if (v.isDevice() && v.toDevice().type() == kQdev && !target_) {
      c10::Device d = v.toDevice();
      target_ = c10::Device(kQdev, c10::qdev::resolve_device_index(d.has_index() ? d.index() : -1));
    }
  }

  void check_devices() const {
    if (!target_) return;
    auto fail = [&](const c10::Device& other) {
      TORCH_CHECK(false, "Expected all tensors to be on the same device, but found at least two "
                  "devices, ", *target_, " and ", other, "! (in qdev fallback for ",
                  schema_.operator_name(), ")");
    };
    if (mismatch_) fail(*mismatch_);
    if (other_) fail(*other_);
    if (cpu_seen_) fail(c10::Device(c10::DeviceType::CPU));
  }

  at::Tensor alias_of(const at::Tensor& t, bool is_write) {
    if (!is_qdev(t)) return t;
    if (is_internal_format(t)) {
      // FRACTAL_NZ: the op works on an unpacked ND copy, packed back if written.
      at::Tensor nd_base;
      at::Tensor view = logical_host_view(t, &nd_base);
      aliases_.push_back({t, view});
      if (is_write) internal_writes_.push_back({t, nd_base});
      return view;
    }
    at::Tensor alias = cpu_alias(t, /*resizable=*/is_write);
    aliases_.push_back({t, alias});
    if (is_write) writes_.push_back({t, alias});
    return alias;
  }

  c10::IValue convert(const c10::IValue& v, const c10::Argument& arg, bool is_write) {
    if (v.isTensor()) return alias_of(v.toTensor(), is_write);
    if (v.isList()) {
      return map_tensors(v.toList(), [&](const at::Tensor& t) { return alias_of(t, is_write); });
    }
    if (v.isGenerator()) {
      const at::Generator& gen = v.toGenerator();
      if (gen.device().type() == kQdev) {
        auto* impl = static_cast<c10::qdev::QdevGeneratorImpl*>(gen.unsafeGetGeneratorImpl());
        return impl->cpu_generator();
      }
      // As CUDA: a generator of another device type does not drive a qdev op.
      TORCH_CHECK(!target_, "Expected a 'qdev' device type for generator but found '", gen.device().type(), "'");
      return v;
    }
    if (v.isNone() && target_ && is_optional_generator(arg)) {
      const at::Generator& gen = c10::qdev::default_generator(target_->index());
      return static_cast<c10::qdev::QdevGeneratorImpl*>(gen.unsafeGetGeneratorImpl())
          ->cpu_generator();
    }
    if (v.isDevice() && v.toDevice().type() == kQdev) return c10::Device(c10::DeviceType::CPU);
    return v;
  }

  // Brings a written qdev tensor in line with its alias after the kernel ran.
  void sync_written(const at::Tensor& q, const at::Tensor& a) {
    c10::StorageImpl* q_storage = q.storage().unsafeGetStorageImpl();
    c10::StorageImpl* a_storage = a.storage().unsafeGetStorageImpl();
    const bool moved = a_storage->data() != q_storage->data();
    const bool reshaped = a.sizes() != q.sizes() || a.strides() != q.strides() ||
                          a.storage_offset() != q.storage_offset();
    if (!moved && !reshaped) return;
    if (moved) {
      // The kernel grew the alias into fresh CPU memory: grow the qdev storage
      // and take the bytes over.
      size_t need = a_storage->nbytes();
      if (q_storage->nbytes() < need) {
        at::detail::getPrivateUse1Hooks().resizePrivateUse1Bytes(q.storage(), need);
      }
      if (need > 0) std::memcpy(q_storage->mutable_data(), a_storage->data(), need);
    }
    q.unsafeGetTensorImpl()->set_sizes_and_strides(a.sizes(), a.strides(), a.storage_offset());
  }

  at::Tensor to_qdev(const at::Tensor& r) {
    if (!r.defined() || !r.is_cpu()) return r;
    for (const auto& a : aliases_) {
      if (r.unsafeGetTensorImpl() == a.alias.unsafeGetTensorImpl()) return a.original;
    }
    if (r.has_storage()) {
      for (const auto& a : aliases_) {
        if (r.storage().is_alias_of(a.alias.storage())) return qdev_view_of(a.original, r);
      }
    }
    if (!target_) return r;
    at::Tensor src = r.resolve_conj().resolve_neg();
    auto options = src.options().device(*target_);
    at::Tensor out = src.is_non_overlapping_and_dense()
                         ? at::empty_strided(src.sizes(), src.strides(), options)
                         : at::empty(src.sizes(), options);
    if (out.numel() > 0) cpu_alias(out).copy_(src);
    return out;
  }

  c10::IValue map_return(const c10::IValue& v) {
    if (v.isTensor()) return to_qdev(v.toTensor());
    if (v.isList()) {
      return map_tensors(v.toList(), [&](const at::Tensor& t) { return to_qdev(t); });
    }
    return v;
  }

  const c10::OperatorHandle& op_;
  const c10::FunctionSchema& schema_;
  std::optional<c10::Device> target_;
  std::optional<c10::Device> mismatch_;
  std::optional<c10::Device> other_;
  bool cpu_seen_ = false;
  std::vector<Alias> aliases_;
  std::vector<Alias> writes_;
  std::vector<Alias> internal_writes_;  // (qdev tensor, its unpacked ND base)
};

}  // namespace

// QDEV_FALLBACK_WARN=1 names every op that runs through this fallback (once per
// op), to find the ops worth a native qdev kernel.
bool warn_on_fallback() {
  static const bool enabled = [] {
    const char* env = std::getenv("QDEV_FALLBACK_WARN");
    return env != nullptr && *env != '\0' && std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

void note_fallback(const c10::OperatorHandle& op) {
  static std::mutex mu;
  static std::unordered_set<std::string>* seen = new std::unordered_set<std::string>();
  const std::string name = c10::toString(op.schema().operator_name());
  std::lock_guard<std::mutex> lock(mu);
  if (seen->insert(name).second) {
    TORCH_WARN("qdev: ", name, " has no qdev kernel and runs the CPU kernel on qdev memory (QDEV_FALLBACK_WARN)");
  }
}

void cpu_fallback(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  if (warn_on_fallback()) note_fallback(op);
  FallbackCall(op).run(stack);
}

}  // namespace at::native::qdev
