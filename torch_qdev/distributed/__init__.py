"""torch.distributed on qdev: the ``qccl`` c10d backend.

qdev memory is host memory, so ``qccl`` (a C++ ``c10d::Backend``, ``_C.ProcessGroupQCCL``)
runs every collective through an inner ``ProcessGroupGloo`` on CPU aliases of the tensors:
no copies. It checks each tensor first (qdev or CPU, dense, contiguous, ND format: gloo
ignores strides and would silently write wrong values) and waits for the tensors' current
qdev streams. torch_qdev registers it when it is loaded, for the ``cpu`` and ``qdev``
devices, so all of these work::

    dist.init_process_group()                      # qdev is the accelerator: qccl
    dist.init_process_group("qccl")                # one backend for CPU and qdev tensors
    dist.init_process_group("cpu:gloo,qdev:qccl")

Registration imports nothing heavy: the extension loads when the first group is made.
"""
from __future__ import annotations

import torch

__all__ = ["BACKEND_NAME", "is_available", "ProcessGroupQCCL"]

BACKEND_NAME = "qccl"
_registered = False


def is_available() -> bool:
    """Whether this torch has torch.distributed and torch_qdev was built with qccl."""
    if not torch.distributed.is_available():
        return False
    try:
        from . import _C  # noqa: F401
    except ImportError:
        return False
    return True


def __getattr__(name: str):
    if name == "ProcessGroupQCCL":
        from ._C import ProcessGroupQCCL

        return ProcessGroupQCCL
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _create_backend(dist_opts, pg_options):
    """Backend factory for ``Backend.register_backend(..., extended_api=True)``."""
    import torch.distributed as dist

    try:
        from ._C import ProcessGroupQCCL
    except ImportError as exc:
        raise RuntimeError(
            "qccl: torch_qdev was built without its distributed backend (the torch it was built "
            "against had no torch.distributed); rebuild torch_qdev against this torch"
        ) from exc
    if not dist.is_gloo_available():
        raise RuntimeError("qccl: this torch has no Gloo, which qccl runs on")
    gloo_cls = dist.ProcessGroupGloo
    if isinstance(pg_options, gloo_cls._Options):
        gloo = gloo_cls(dist_opts.store, dist_opts.group_rank, dist_opts.group_size, pg_options)
    elif pg_options is not None:
        raise TypeError(
            f"qccl: pg_options must be a ProcessGroupGloo._Options (qccl runs on gloo), got "
            f"{type(pg_options).__name__}"
        )
    else:
        gloo = gloo_cls(dist_opts.store, dist_opts.group_rank, dist_opts.group_size,
                        dist_opts.timeout)
    gloo.options.global_ranks_in_group = list(dist_opts.global_ranks_in_group)
    gloo.options.group_name = dist_opts.group_id
    gloo._set_sequence_number_for_group()
    return ProcessGroupQCCL(gloo)


def _cover_cpu_in_default_init() -> None:
    """``init_process_group()`` with no backend maps only the accelerator (qdev) to a backend.

    On a CUDA machine CPU tensors then have no backend either; here qccl serves CPU tensors
    as well, so it maps ``cpu`` too. Programs that never touch qdev (CPU-only gloo scripts)
    keep working once torch_qdev is installed.
    """
    from torch.distributed import distributed_c10d as c10d

    config = c10d.BackendConfig
    if getattr(config.__init__, "_qdev_covers_cpu", False):
        return
    original = config.__init__

    def __init__(self, backend):
        original(self, backend)
        if (str(backend) == c10d.Backend.UNDEFINED
                and self.device_backend_map.get("qdev") == BACKEND_NAME
                and "cpu" not in self.device_backend_map):
            self.device_backend_map["cpu"] = c10d.Backend(BACKEND_NAME)

    __init__._qdev_covers_cpu = True
    __init__.__wrapped__ = original
    config.__init__ = __init__


_DTENSOR_RANDOM = "torch.distributed.tensor._random"
_RNG_MESSAGE = (
    "DTensor random ops on qdev need a Philox-style (seed, offset) generator state, which qdev's "
    "generator (mt19937) does not have, so shards could not draw the numbers one device would. "
    "Create the tensor with torch random ops on one device and distribute_tensor() it, or "
    "initialize the local shards yourself")


def _refuse_qdev_rng_tracker(module) -> None:
    """DTensor's RNG tracker reads CUDA's 16-byte (seed, offset) state; on qdev's 5056-byte
    mt19937 state it would fail with a bare AssertionError. Refuse it with a clear error."""
    cls = module.OffsetBasedRNGTracker
    if getattr(cls.__init__, "_qdev_refuses", False):
        return
    original = cls.__init__

    def __init__(self, device_mesh, *args, **kwargs):
        if getattr(device_mesh, "device_type", None) == "qdev":
            raise RuntimeError(_RNG_MESSAGE)
        original(self, device_mesh, *args, **kwargs)

    __init__._qdev_refuses = True
    __init__.__wrapped__ = original
    cls.__init__ = __init__


class _AfterImport:
    """A meta-path finder that runs ``hook(module)`` once ``name`` has been imported, so that
    registration never imports DTensor itself (seconds on a loaded machine)."""

    def __init__(self, name: str, hook) -> None:
        self.name, self.hook = name, hook

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        import importlib.util
        import sys

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module, hook = spec.loader.exec_module, self.hook

        def run_then_hook(module):
            exec_module(module)
            hook(module)

        spec.loader.exec_module = run_then_hook
        return spec


def _hook_dtensor_random() -> None:
    import sys

    if _DTENSOR_RANDOM in sys.modules:
        _refuse_qdev_rng_tracker(sys.modules[_DTENSOR_RANDOM])
    elif not any(isinstance(f, _AfterImport) and f.name == _DTENSOR_RANDOM for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(_DTENSOR_RANDOM, _refuse_qdev_rng_tracker))


def _register() -> None:
    """Registers ``qccl`` with torch.distributed (called from ``torch_qdev._register``)."""
    global _registered
    if _registered or not torch.distributed.is_available():
        return
    from torch.distributed import Backend

    if BACKEND_NAME not in Backend.backend_list:
        Backend.register_backend(BACKEND_NAME, _create_backend, extended_api=True,
                                 devices=["cpu", "qdev"])
    fake = Backend.backend_capability.get("fake")
    if fake is not None and "qdev" not in fake:  # FakeProcessGroup (tracing, tests) takes qdev tensors too
        fake.append("qdev")
    _cover_cpu_in_default_init()
    _hook_dtensor_random()
    _registered = True
