"""DLPack for qdev tensors: ``torch.from_dlpack`` / ``__dlpack__`` round-trip a qdev tensor as a
qdev tensor without a copy.

DLPack names an out-of-tree (PrivateUse1) device ``kDLExtDev``. PyTorch 2.13 already converts a
PrivateUse1 tensor to a ``kDLExtDev`` capsule and back in C++ (the importer asks the backend's
hooks, ``getDeviceFromPtr``, which qdev device owns the pointer), but ``Tensor.__dlpack_device__``
compares the device type with ``"privateuse1"``, which a renamed backend never is, so
``torch.from_dlpack(qdev_tensor)`` failed with "Unknown device type qdev for Dlpack". The wrappers
installed here answer ``(kDLExtDev, index)`` for qdev tensors and add what a host-memory device
needs on export:

* the current stream of the tensor's device is synchronized first: a consumer reads the bytes
  directly, so work queued on a qdev stream must have run (as CUDA's producer waits on its stream);
* a tensor in an internal format (FRACTAL_NZ) is refused: its bytes are not its strided values;
* ``__dlpack__(dl_device=(kDLCPU, 0))`` (e.g. ``numpy.from_dlpack(t, device="cpu")``) exports the
  qdev memory itself as a CPU capsule, zero-copy (qdev memory is host memory), unless ``copy=True``.

Everything else (CPU/CUDA tensors, subclasses with ``__torch_function__``) goes to PyTorch's own code.
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch.overrides import has_torch_function_unary
from torch.utils.dlpack import DLDeviceType

from . import _C

__all__ = ["install"]


def _is_qdev(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and not has_torch_function_unary(t) and t.device.type == "qdev"


def _prepare_export(t: torch.Tensor) -> None:
    from .ops import _INTERNAL, Format

    fmt = int(torch.ops.qdev.get_npu_format(t))
    if fmt in _INTERNAL:
        raise BufferError(
            f"Can't export a qdev tensor in the internal format {Format(fmt).name} through DLPack: its "
            "bytes are not its strided values. Export torch_qdev.npu_format_cast(t, 2) (ND) instead.")
    torch.qdev.current_stream(t.device).synchronize()


def install() -> None:
    """Wraps ``Tensor.__dlpack__``, ``Tensor.__dlpack_device__`` and ``to_dlpack``; idempotent."""
    if getattr(torch.Tensor.__dlpack__, "_qdev_wrapped", False):
        return
    original_dlpack = torch.Tensor.__dlpack__
    original_device = torch.Tensor.__dlpack_device__
    original_to_dlpack = torch.utils.dlpack.to_dlpack

    @functools.wraps(original_device)
    def __dlpack_device__(self):
        if _is_qdev(self):
            return (DLDeviceType.kDLExtDev, self.device.index)
        return original_device(self)

    @functools.wraps(original_dlpack)
    def __dlpack__(self, *, stream: Any = -1, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[Any, int] | None = None, copy: bool | None = None):
        if not _is_qdev(self):
            return original_dlpack(self, stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)
        if stream is not None and type(stream) is not int:
            raise TypeError("stream must be ``int`` or ``none``")
        if self.requires_grad:  # PyTorch's own text; checked here since the CPU alias below has no grad
            raise BufferError("Can't export tensors that require gradient, use tensor.detach()")
        _prepare_export(self)
        if dl_device is not None and int(dl_device[0]) == DLDeviceType.kDLCPU and int(dl_device[1]) == 0 \
                and copy is not True:
            # The consumer wants host memory, and qdev memory is host memory: hand out the bytes
            # themselves, kept alive by the capsule.
            alias = _C._owning_cpu_alias(self)
            return original_dlpack(alias, stream=None, max_version=max_version, copy=copy)
        return original_dlpack(self, stream=None, max_version=max_version, dl_device=dl_device, copy=copy)

    @functools.wraps(original_to_dlpack)
    def to_dlpack(tensor):
        if _is_qdev(tensor):
            _prepare_export(tensor)
        return original_to_dlpack(tensor)

    for fn in (__dlpack__, __dlpack_device__, to_dlpack):
        fn._qdev_wrapped = True  # type: ignore[attr-defined]
    torch.Tensor.__dlpack__ = __dlpack__
    torch.Tensor.__dlpack_device__ = __dlpack_device__
    torch.utils.dlpack.to_dlpack = to_dlpack
    if getattr(torch, "to_dlpack", None) is original_to_dlpack:
        torch.to_dlpack = to_dlpack

