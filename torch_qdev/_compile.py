"""torch.compile support: a Dynamo DeviceInterface and Inductor codegen for qdev.

qdev memory is host memory, so Inductor's C++ (CPU) kernels can run directly
on qdev buffers; the wrapper only has to allocate on qdev and guard the qdev
device. Both registrations happen on first import of the Dynamo/Inductor
modules, so ``import torch_qdev`` does not pay for importing the compiler.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading
from collections import namedtuple
from typing import Any, Callable

import torch

_lock = threading.Lock()


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` right after ``name`` has been imported."""

    def __init__(self, name: str, callback: Callable[[Any], None]):
        self.name = name
        self.callback = callback
        self._busy = False

    def find_spec(self, fullname: str, path: Any, target: Any = None):
        if fullname != self.name or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        original = spec.loader.exec_module
        hook = self

        def exec_module(module: Any) -> None:
            original(module)
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            hook.callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _when_imported(name: str, callback: Callable[[Any], None]) -> None:
    if name in sys.modules:
        callback(sys.modules[name])
    else:
        sys.meta_path.insert(0, _PostImportHook(name, callback))


def _register_dynamo(module: Any) -> None:
    DeviceInterface = module.DeviceInterface
    qdev = torch.qdev
    Props = namedtuple("QdevDynamoProperties", ["multi_processor_count", "name", "total_memory"])

    def _props(device: Any = None) -> Any:
        p = qdev.get_device_properties(device)
        return Props(p.multi_processor_count, p.name, p.total_memory)

    class QdevInterface(DeviceInterface):
        device = qdev.device
        Event = qdev.Event
        Stream = qdev.Stream

        class Worker:
            @staticmethod
            def set_device(device: int) -> None:
                qdev.set_device(device)

            @staticmethod
            def current_device() -> int:
                return qdev.current_device()

            @staticmethod
            def get_device_properties(device: Any = None) -> Any:
                return _props(device)

        current_device = staticmethod(qdev.current_device)
        set_device = staticmethod(qdev.set_device)
        maybe_exchange_device = staticmethod(qdev._maybe_exchange_device)
        exchange_device = staticmethod(qdev._exchange_device)
        device_count = staticmethod(qdev.device_count)
        is_available = staticmethod(qdev.is_available)
        stream = staticmethod(qdev.stream)
        current_stream = staticmethod(qdev.current_stream)
        set_stream = staticmethod(qdev.set_stream)
        synchronize = staticmethod(qdev.synchronize)
        get_device_properties = staticmethod(_props)
        memory_allocated = staticmethod(qdev.memory_allocated)
        is_bf16_supported = staticmethod(qdev.is_bf16_supported)

        @staticmethod
        def get_raw_stream(device_idx: int) -> int:
            return qdev.current_stream(device_idx).stream_id

        @staticmethod
        def get_compute_capability(device: Any = None) -> str:
            return ""

        @staticmethod
        def is_triton_capable(device: Any = None) -> bool:
            return False

    module.register_interface_for_device("qdev", QdevInterface)
    for i in range(qdev.device_count()):
        module.register_interface_for_device(f"qdev:{i}", QdevInterface)


def _register_device_op_overrides(module: Any) -> None:
    class QdevDeviceOpOverrides(module.DeviceOpOverrides):
        def import_get_raw_stream_as(self, name: str) -> str:
            return f"def {name}(idx): return 0"

        def set_device(self, device_idx: int) -> str:
            return f"torch.qdev.set_device({device_idx})"

        def synchronize(self) -> str:
            return "torch.qdev.synchronize()"

        def device_guard(self, device_idx: int) -> str:
            return f"torch.qdev.device({device_idx})"

    module.register_device_op_overrides("qdev", QdevDeviceOpOverrides())


_inductor_components: dict[str, Any] = {}


def inductor_component(name: str) -> Any:
    """Scheduling and wrapper codegen classes that Inductor looks up on torch.qdev."""
    with _lock:
        if not _inductor_components:
            from torch._inductor.codegen.cpp import CppScheduling
            from torch._inductor.codegen.cpp_wrapper_cpu import CppWrapperCpu
            from torch._inductor.codegen.wrapper import PythonWrapperCodegen
            from torch._inductor.codegen.wrapper_fxir import WrapperFxCodegen

            from torch._inductor.virtualized import V

            class QdevPythonWrapperCodegen(PythonWrapperCodegen):
                """Calls Inductor's C++ kernels as CPU kernels: qdev buffers are host memory."""

                @staticmethod
                def create(is_subgraph: bool, subgraph_name: Any, parent_wrapper: Any,
                           partition_signatures: Any = None) -> Any:
                    if is_subgraph:
                        return PythonWrapperCodegen.create(
                            is_subgraph, subgraph_name, parent_wrapper, partition_signatures)
                    return QdevPythonWrapperCodegen()

                def _generate_kernel_call_helper(self, kernel_name: str, call_args: Any, *,
                                                 device: Any = None, triton: bool = True,
                                                 **kwargs: Any) -> Any:
                    device = device or V.graph.get_current_device_or_throw()
                    if device.type == "qdev" and not triton:
                        device = torch.device("cpu")
                    return super()._generate_kernel_call_helper(
                        kernel_name, call_args, device=device, triton=triton, **kwargs)

            _inductor_components.update(
                Scheduling=CppScheduling,
                PythonWrapperCodegen=QdevPythonWrapperCodegen,
                CppWrapperCodegen=CppWrapperCpu,
                WrapperFxCodegen=WrapperFxCodegen,
            )
    return _inductor_components[name]


def _treat_qdev_as_cpu_in_scheduler(module: Any) -> None:
    """The scheduler skips its loop reordering/reindexing for nodes on CPU, whose C++ codegen cannot
    take them (it would read Triton-style groups: reductions failed to compile). qdev uses the same
    C++ codegen, so its nodes count as CPU there."""
    base = module.BaseSchedulerNode
    if getattr(base.is_cpu, "_qdev", False):
        return
    original = base.is_cpu

    def is_cpu(self: Any) -> bool:
        if original(self):
            return True
        device = self.get_device()
        return device is not None and device.type == "qdev"

    is_cpu._qdev = True  # type: ignore[attr-defined]
    base.is_cpu = is_cpu


def _cpp_backend_for_qdev(module: Any) -> None:
    """Inductor asks get_current_backend() how the current device's kernels are generated (dtype
    propagation, asserts); for an unknown device it answers CUDA's "triton". qdev's kernels are
    the C++ ones, so it gets the CPU answer. Patched right after torch._inductor.utils is imported,
    before the modules that import the function by name."""
    original = module.get_current_backend
    if getattr(original, "_qdev", False):
        return

    def get_current_backend(device_type: Any = None) -> str:
        if not device_type:
            from torch._inductor.virtualized import V

            device_type = V.graph.get_current_device_or_throw().type
        return original("cpu" if device_type == "qdev" else device_type)

    get_current_backend._qdev = True  # type: ignore[attr-defined]
    module.get_current_backend = get_current_backend
    for name in ("torch._inductor.codegen.common", "torch._inductor.scheduler", "torch._inductor.kernel.mm_common"):
        if name in sys.modules and getattr(sys.modules[name], "get_current_backend", None) is original:
            sys.modules[name].get_current_backend = get_current_backend


def install() -> None:
    _when_imported("torch._inductor.utils", _cpp_backend_for_qdev)
    _when_imported("torch._inductor.scheduler", _treat_qdev_as_cpu_in_scheduler)
    _when_imported("torch._dynamo.device_interface", _register_dynamo)
    _when_imported("torch._inductor.codegen.common", _register_device_op_overrides)
