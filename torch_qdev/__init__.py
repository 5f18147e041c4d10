"""torch_qdev: an out-of-tree PyTorch backend for an NPU-like virtual device.

``import torch_qdev`` (or plain ``import torch``, through the ``torch.backends``
entry point) renames PyTorch's PrivateUse1 backend to ``qdev`` and installs
``torch.qdev``, the ``Tensor.qdev()``/``is_qdev`` methods and the torch.compile
hooks. qdev memory is host memory managed by the qdrt runtime.
"""
from __future__ import annotations

import os
import sys
import threading

if "torch" not in sys.modules:
    # `import torch` would autoload this very package (the torch.backends entry
    # point) while it is half-initialized; it registers itself below instead.
    _autoload_env = os.environ.get("TORCH_DEVICE_BACKEND_AUTOLOAD")
    os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    try:
        import torch
    finally:
        if _autoload_env is None:
            del os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"]
        else:
            os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = _autoload_env
else:
    import torch

from ._version import __version__, check_torch_version

check_torch_version()

from . import _C  # noqa: E402  (loads libqdrt and libtorch_qdev, registering the backend)
from . import qdev as _device_module  # noqa: E402

from . import ops  # noqa: E402  (typed wrappers over torch.ops.qdev.*)
from . import contrib  # noqa: E402
from . import attention  # noqa: E402  (qdev::decode_attention fake kernel, Hugging Face hook)
from .ops import (  # noqa: E402
    Format,
    dyn_quant_matmul_4bit,
    dyn_quant_pack_4bit_weight,
    dyn_quant_pack_4bit_weight_asym,
    get_npu_format,
    get_storage_size,
    npu_dynamic_quant,
    npu_dynamic_quant_asymmetric,
    npu_format_cast,
    npu_format_cast_,
    npu_quant_matmul,
    npu_convert_weight_to_int4pack,
    npu_trans_quant_param,
    npu_weight_quant_batchmatmul,
)
from . import ops_moe  # noqa: E402  (MoE ops: grouped matmul, routing, swiglu/norm + quant)
from .ops_moe import *  # noqa: E402,F401,F403

__all__ = ["__version__", "Format", "dyn_quant_matmul_4bit", "dyn_quant_pack_4bit_weight", "get_npu_format", "get_storage_size", "npu_dynamic_quant",
           "npu_dynamic_quant_asymmetric", "npu_format_cast", "npu_format_cast_", "npu_quant_matmul",
          "npu_trans_quant_param", "npu_convert_weight_to_int4pack", "npu_weight_quant_batchmatmul",
           "dyn_quant_pack_4bit_weight_asym"]
__all__ += ops_moe.__all__



def __getattr__(name: str):
    # Loaded on first use: defining the op imports nothing heavy, but plain `import torch` needn't.
    if name == "npu_mm_all_reduce_base":
        from .distributed.mm_all_reduce import npu_mm_all_reduce_base

        return npu_mm_all_reduce_base
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_register_lock = threading.Lock()
_registered = False


def _register() -> None:
    """Wires qdev into torch; idempotent, so autoload and explicit import may both call it."""
    global _registered
    with _register_lock:
        if _registered:
            return
        name = torch._C._get_privateuse1_backend_name()
        if name != "qdev":
            # Raises the standard "already set" error if another backend owns PrivateUse1.
            torch.utils.rename_privateuse1_backend("qdev")
        if getattr(torch, "qdev", None) is not _device_module:
            torch._register_device_module("qdev", _device_module)
        if not hasattr(torch.Tensor, "is_qdev"):
            torch.utils.generate_methods_for_privateuse1_backend(
                for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=True
            )
        from . import _compile, _dlpack

        _compile.install()
        _dlpack.install()
        from . import distributed as _distributed

        _distributed._register()  # the qccl c10d backend (cheap: the extension loads on first use)
        _registered = True


def _autoload() -> None:
    """Entry point for ``torch.backends`` autoload (see pyproject.toml).

    Runs during ``import torch``; it never raises, so a broken build cannot make
    ``import torch`` fail for everyone (it warns instead).
    """
    try:
        _register()
    except Exception as exc:  # pragma: no cover - exercised only with broken installs
        import warnings

        warnings.warn(f"torch_qdev could not be autoloaded: {exc}", RuntimeWarning, stacklevel=2)


_register()


def _register_triton_cuda() -> None:
    """With a CUDA build of torch and the triton package, the qdev:: ops' CUDA kernels are the
    Triton ones (torch_qdev.triton). QDEV_TRITON_CUDA=0 leaves CUDA tensors without them."""
    if torch.version.cuda is None or os.environ.get("QDEV_TRITON_CUDA", "1") == "0":
        return
    import importlib.util

    if importlib.util.find_spec("triton") is None:
        return
    try:
        from .triton import register_cuda_kernels

        register_cuda_kernels("CUDA")
    except Exception as exc:  # a broken triton install must not break `import torch`
        import warnings

        warnings.warn(f"torch_qdev: the Triton CUDA kernels could not be registered: {exc}", RuntimeWarning,
                      stacklevel=2)


_register_triton_cuda()
