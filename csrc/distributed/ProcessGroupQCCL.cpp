#include "ProcessGroupQCCL.h"

#include <ATen/core/ivalue.h>
#include <c10/core/TensorImpl.h>

#include <algorithm>

#include "../aten/native/QdevFormat.h"
#include "QdevStream.h"

namespace c10d::qdev {

namespace {

// Collects the CPU views of one collective's tensors after checking each, and
// the qdev devices they live on (whose current streams are waited for).
class HostViews {
 public:
  explicit HostViews(const char* op) : op_(op) {}

  at::Tensor operator()(const at::Tensor& t) {
    check(t);
    if (!t.is_privateuseone()) return t;
    if (std::find(devices_.begin(), devices_.end(), t.device()) == devices_.end()) {
      devices_.push_back(t.device());
    }
    return alias(t);
  }

  std::vector<at::Tensor> operator()(const std::vector<at::Tensor>& ts) {
    std::vector<at::Tensor> out;
    out.reserve(ts.size());
    for (const auto& t : ts) out.push_back((*this)(t));
    return out;
  }

  std::vector<std::vector<at::Tensor>> operator()(const std::vector<std::vector<at::Tensor>>& ls) {
    std::vector<std::vector<at::Tensor>> out;
    out.reserve(ls.size());
    for (const auto& l : ls) out.push_back((*this)(l));
    return out;
  }

  // Queued work (non_blocking copies) on the tensors' devices lands before the
  // inner backend reads or writes their memory.
  void sync() const {
    for (const auto& d : devices_) c10::qdev::sync_current_stream(d.index());
  }

 private:
  void check(const at::Tensor& t) const {
    TORCH_CHECK(t.defined(), "qccl ", op_, ": got an undefined tensor");
    const auto type = t.device().type();
    TORCH_CHECK(type == c10::DeviceType::PrivateUse1 || type == c10::DeviceType::CPU, "qccl ", op_,
                ": unsupported device type ", t.device(), " (qccl takes qdev and CPU tensors)");
    TORCH_CHECK(t.layout() == at::kStrided, "qccl ", op_, ": only dense (strided) tensors are supported, got layout ",
                t.layout());
    if (type == c10::DeviceType::PrivateUse1 && at::native::qdev::is_internal_format(t)) {
      TORCH_CHECK(false, "qccl ", op_, ": tensor is in the internal format ",
                  at::native::qdev::format::name(at::native::qdev::get_npu_format(t)),
                  ", whose storage does not hold the logical values; collectives take ND tensors "
                  "(torch_qdev.npu_format_cast(t, 2) converts it)");
    }
    // Gloo reads numel() elements from data_ptr() whatever the strides are.
    TORCH_CHECK(t.is_contiguous(), "qccl ", op_, ": Tensors must be contiguous (got sizes ", t.sizes(),
                " and strides ", t.strides(), "); call .contiguous() first");
    TORCH_CHECK(!t.is_conj() && !t.is_neg(), "qccl ", op_,
                ": tensors with a pending conj/neg bit are not supported; call resolve_conj()/resolve_neg() first");
  }

  // A CPU tensor over t's bytes that keeps t's storage alive: the inner
  // backend's work may outlive the caller's reference.
  static at::Tensor alias(const at::Tensor& t) {
    const c10::Storage& storage = t.storage();
    void* base = storage.unsafeGetStorageImpl()->mutable_data();
    auto* owner = new c10::Storage(storage);
    c10::DataPtr ptr(base, owner, [](void* ctx) { delete static_cast<c10::Storage*>(ctx); },
                     c10::Device(c10::DeviceType::CPU));
    c10::Storage alias_storage(c10::Storage::use_byte_size_t(), storage.nbytes(), std::move(ptr),
                               nullptr, false);
    auto out = at::detail::make_tensor<c10::TensorImpl>(
        std::move(alias_storage), c10::DispatchKeySet(c10::DispatchKey::CPU), t.dtype());
    out.unsafeGetTensorImpl()->set_sizes_and_strides(t.sizes(), t.strides(), t.storage_offset());
    return out;
  }

  const char* op_;
  std::vector<c10::Device> devices_;
};

std::vector<at::Tensor> flatten(const std::vector<std::vector<at::Tensor>>& ls) {
  std::vector<at::Tensor> out;
  for (const auto& l : ls) out.insert(out.end(), l.begin(), l.end());
  return out;
}

c10::intrusive_ptr<Work> wrap(c10::intrusive_ptr<Work> inner, std::vector<at::Tensor> outputs,
                              int rank, OpType type) {
  return c10::make_intrusive<QCCLWork>(std::move(inner), std::move(outputs), rank, type);
}

}  // namespace

// --- QCCLWork -------------------------------------------------------------------

QCCLWork::QCCLWork(c10::intrusive_ptr<Work> inner, std::vector<at::Tensor> outputs, int rank,
                   OpType type)
    : Work(rank, type), inner_(std::move(inner)), outputs_(std::move(outputs)) {}

bool QCCLWork::isCompleted() { return inner_->isCompleted(); }
bool QCCLWork::isSuccess() const { return inner_->isSuccess(); }
std::exception_ptr QCCLWork::exception() const { return inner_->exception(); }
int QCCLWork::sourceRank() const { return inner_->sourceRank(); }
std::vector<at::Tensor> QCCLWork::result() { return outputs_; }
void QCCLWork::synchronize() { inner_->synchronize(); }
bool QCCLWork::wait(std::chrono::milliseconds timeout) { return inner_->wait(timeout); }
void QCCLWork::abort() { inner_->abort(); }
uint64_t QCCLWork::getSequencenumber() const { return inner_->getSequencenumber(); }
c10::intrusive_ptr<c10::ivalue::Future> QCCLWork::getFutureResult() {
  return inner_->getFutureResult();
}

c10::intrusive_ptr<c10::ivalue::Future> QCCLWork::getFuture() {
  std::lock_guard<std::mutex> lock(future_mutex_);
  if (!future_) {
    // The inner future completes with the CPU aliases; this one with the
    // caller's tensors, on the qdev devices they live on.
    std::vector<c10::Device> devices;
    for (const auto& t : outputs_) {
      if (t.is_privateuseone() &&
          std::find(devices.begin(), devices.end(), t.device()) == devices.end()) {
        devices.push_back(t.device());
      }
    }
    auto child = c10::make_intrusive<c10::ivalue::Future>(c10::ListType::ofTensors(), devices);
    inner_->getFuture()->addCallback([child, outputs = outputs_](c10::ivalue::Future& parent) {
      if (parent.hasError()) {
        child->setError(parent.exception_ptr());
      } else {
        child->markCompleted(c10::IValue(outputs));
      }
    });
    future_ = child;
  }
  return future_;
}

// --- ProcessGroupQCCL -------------------------------------------------------------

ProcessGroupQCCL::ProcessGroupQCCL(c10::intrusive_ptr<Backend> inner)
    : Backend(inner->getRank(), inner->getSize()), inner_(std::move(inner)) {
  TORCH_CHECK(inner_, "qccl: the inner backend is null");
  init();
}

c10::intrusive_ptr<Backend::Options> ProcessGroupQCCL::getBackendOptions() {
  return inner_->getBackendOptions();
}
void ProcessGroupQCCL::setGroupUid(const std::string& pg_uid) {
  Backend::setGroupUid(pg_uid);
  inner_->setGroupUid(pg_uid);
}
void ProcessGroupQCCL::setTimeout(std::chrono::milliseconds timeout) { inner_->setTimeout(timeout); }
void ProcessGroupQCCL::abort() { inner_->abort(); }
void ProcessGroupQCCL::shutdown() { inner_->shutdown(); }
void ProcessGroupQCCL::setSequenceNumberForGroup() { inner_->setSequenceNumberForGroup(); }
uint64_t ProcessGroupQCCL::getSequenceNumberForGroup() {
  return inner_->getSequenceNumberForGroup();
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::broadcast(std::vector<at::Tensor>& tensors,
                                                     const BroadcastOptions& opts) {
  HostViews host("broadcast");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->broadcast(views, opts), tensors, rank_, OpType::BROADCAST);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::allreduce(std::vector<at::Tensor>& tensors,
                                                     const AllreduceOptions& opts) {
  HostViews host("allreduce");
  auto views = host(tensors);
  AllreduceOptions o = opts;
  if (o.sparseIndices) o.sparseIndices = host(*o.sparseIndices);
  host.sync();
  return wrap(inner_->allreduce(views, o), tensors, rank_, OpType::ALLREDUCE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::allreduce_coalesced(
    std::vector<at::Tensor>& tensors, const AllreduceCoalescedOptions& opts) {
  HostViews host("allreduce_coalesced");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->allreduce_coalesced(views, opts), tensors, rank_,
              OpType::ALLREDUCE_COALESCED);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::reduce(std::vector<at::Tensor>& tensors,
                                                  const ReduceOptions& opts) {
  HostViews host("reduce");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->reduce(views, opts), tensors, rank_, OpType::REDUCE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                                     std::vector<at::Tensor>& inputs,
                                                     const AllgatherOptions& opts) {
  HostViews host("allgather");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->allgather(out, in, opts), flatten(outputs), rank_, OpType::ALLGATHER);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::_allgather_base(at::Tensor& output, at::Tensor& input,
                                                           const AllgatherOptions& opts) {
  HostViews host("allgather_into_tensor");
  auto out = host(output);
  auto in = host(input);
  host.sync();
  return wrap(inner_->_allgather_base(out, in, opts), {output}, rank_, OpType::_ALLGATHER_BASE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::allgather_coalesced(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const AllgatherOptions& opts) {
  HostViews host("allgather_coalesced");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->allgather_coalesced(out, in, opts), flatten(outputs), rank_,
              OpType::ALLGATHER_COALESCED);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::allgather_into_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
    const AllgatherOptions& opts) {
  HostViews host("allgather_into_tensor_coalesced");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->allgather_into_tensor_coalesced(out, in, opts), outputs, rank_,
              OpType::COALESCED);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::gather(std::vector<std::vector<at::Tensor>>& outputs,
                                                  std::vector<at::Tensor>& inputs,
                                                  const GatherOptions& opts) {
  HostViews host("gather");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->gather(out, in, opts), flatten(outputs), rank_, OpType::GATHER);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::scatter(std::vector<at::Tensor>& outputs,
                                                   std::vector<std::vector<at::Tensor>>& inputs,
                                                   const ScatterOptions& opts) {
  HostViews host("scatter");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->scatter(out, in, opts), outputs, rank_, OpType::SCATTER);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::reduce_scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const ReduceScatterOptions& opts) {
  HostViews host("reduce_scatter");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->reduce_scatter(out, in, opts), outputs, rank_, OpType::REDUCE_SCATTER);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::_reduce_scatter_base(at::Tensor& output,
                                                                at::Tensor& input,
                                                                const ReduceScatterOptions& opts) {
  HostViews host("reduce_scatter_tensor");
  auto out = host(output);
  auto in = host(input);
  host.sync();
  return wrap(inner_->_reduce_scatter_base(out, in, opts), {output}, rank_,
              OpType::_REDUCE_SCATTER_BASE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::reduce_scatter_tensor_coalesced(
    std::vector<at::Tensor>& outputs, std::vector<at::Tensor>& inputs,
    const ReduceScatterOptions& opts) {
  HostViews host("reduce_scatter_tensor_coalesced");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->reduce_scatter_tensor_coalesced(out, in, opts), outputs, rank_,
              OpType::COALESCED);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::alltoall_base(at::Tensor& output, at::Tensor& input,
                                                         std::vector<int64_t>& output_split_sizes,
                                                         std::vector<int64_t>& input_split_sizes,
                                                         const AllToAllOptions& opts) {
  HostViews host("alltoall_base");
  auto out = host(output);
  auto in = host(input);
  host.sync();
  return wrap(inner_->alltoall_base(out, in, output_split_sizes, input_split_sizes, opts),
              {output}, rank_, OpType::ALLTOALL_BASE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::alltoall(std::vector<at::Tensor>& outputs,
                                                    std::vector<at::Tensor>& inputs,
                                                    const AllToAllOptions& opts) {
  HostViews host("alltoall");
  auto out = host(outputs);
  auto in = host(inputs);
  host.sync();
  return wrap(inner_->alltoall(out, in, opts), outputs, rank_, OpType::ALLTOALL);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::send(std::vector<at::Tensor>& tensors, int dst_rank,
                                                int tag) {
  HostViews host("send");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->send(views, dst_rank, tag), tensors, rank_, OpType::SEND);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::recv(std::vector<at::Tensor>& tensors, int src_rank,
                                                int tag) {
  HostViews host("recv");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->recv(views, src_rank, tag), tensors, rank_, OpType::RECV);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::recvAnysource(std::vector<at::Tensor>& tensors,
                                                         int tag) {
  HostViews host("recv");
  auto views = host(tensors);
  host.sync();
  return wrap(inner_->recvAnysource(views, tag), tensors, rank_, OpType::RECVANYSOURCE);
}

c10::intrusive_ptr<Work> ProcessGroupQCCL::barrier(const BarrierOptions& opts) {
  // Gloo's barrier moves no tensor data; the device only picks this backend.
  BarrierOptions o = opts;
  o.device = std::nullopt;
  o.device_ids.clear();
  return wrap(inner_->barrier(o), {}, rank_, OpType::BARRIER);
}

void ProcessGroupQCCL::monitoredBarrier(const BarrierOptions& opts, bool wait_all_ranks) {
  BarrierOptions o = opts;
  o.device = std::nullopt;
  o.device_ids.clear();
  inner_->monitoredBarrier(o, wait_all_ranks);
}

}  // namespace c10d::qdev
