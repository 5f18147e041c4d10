// torch_qdev.distributed._C: binds ProcessGroupQCCL as a subclass of
// torch._C._distributed_c10d.Backend, so torch.distributed takes it as a
// device backend (Backend.register_backend in torch_qdev/distributed).
#include <pybind11/pybind11.h>
#include <torch/csrc/utils/pybind.h>

#include "../../csrc/distributed/ProcessGroupQCCL.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "qccl: the c10d backend for qdev tensors";
  // Registers c10d::Backend with pybind before it is used as a base class.
  py::module_::import("torch._C._distributed_c10d");
  py::class_<c10d::qdev::ProcessGroupQCCL, c10d::Backend,
             c10::intrusive_ptr<c10d::qdev::ProcessGroupQCCL>>(m, "ProcessGroupQCCL")
      .def(py::init([](const c10::intrusive_ptr<c10d::Backend>& inner) {
             return c10::make_intrusive<c10d::qdev::ProcessGroupQCCL>(inner);
           }),
           py::arg("inner"),
           "Wraps `inner` (a CPU backend, e.g. ProcessGroupGloo) for qdev and CPU tensors.")
      .def_property_readonly("inner", &c10d::qdev::ProcessGroupQCCL::inner);
}
