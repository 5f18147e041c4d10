"""torch.qdev: the device module of the qdev backend, shaped like torch.cuda."""
from __future__ import annotations

import threading
from typing import Any

import torch

from .. import _C
from ._utils import _get_device_index
from .amp import get_amp_supported_dtype
from .config import config
from .memory import (
    empty_cache,
    max_memory_allocated,
    max_memory_reserved,
    mem_get_info,
    memory_allocated,
    memory_reserved,
    memory_stats,
    memory_summary,
    reset_accumulated_memory_stats,
    reset_peak_memory_stats,
)
from .random import (
    default_generators,
    get_rng_state,
    get_rng_state_all,
    initial_seed,
    manual_seed,
    manual_seed_all,
    seed,
    seed_all,
    set_rng_state,
    set_rng_state_all,
)
from .streams import Event, Stream, StreamContext, current_stream, default_stream, set_stream, stream

__all__ = [
    "Event", "Stream", "StreamContext", "config", "current_device", "current_stream",
    "default_generators", "default_stream", "device", "device_count", "device_of",
    "empty_cache", "get_amp_supported_dtype", "get_device_capability", "get_device_name",
    "get_device_properties", "get_rng_state", "get_rng_state_all", "init", "initial_seed",
    "is_available", "is_bf16_supported", "is_initialized", "manual_seed", "manual_seed_all",
    "max_memory_allocated", "max_memory_reserved", "mem_get_info", "memory_allocated",
    "memory_reserved", "memory_stats", "memory_summary", "reset_accumulated_memory_stats",
    "reset_peak_memory_stats", "seed", "seed_all", "set_device", "set_rng_state",
    "set_rng_state_all", "set_stream", "stream", "synchronize",
]

_initialized = False
_init_lock = threading.Lock()


def is_available() -> bool:
    """True when the runtime reports at least one qdev device."""
    return device_count() > 0


def device_count() -> int:
    """Number of qdev devices (``QDEV_DEVICE_COUNT``, default 2)."""
    return _C._get_device_count()


def _is_in_bad_fork() -> bool:
    return _C._is_in_bad_fork()


def is_initialized() -> bool:
    return _initialized and not _is_in_bad_fork()


def _lazy_init() -> None:
    global _initialized
    if is_initialized():
        return
    with _init_lock:
        if is_initialized():
            return
        if _is_in_bad_fork():
            raise RuntimeError(
                "Cannot re-initialize qdev in forked subprocess. To use qdev with "
                "multiprocessing, you must use the 'spawn' start method"
            )
        _C._init()
        _initialized = True


def init() -> None:
    """Initializes the qdev runtime (done lazily on first use otherwise)."""
    _lazy_init()


def current_device() -> int:
    _lazy_init()
    return _C._get_device()


def set_device(device: Any) -> None:
    """Sets the current qdev device of this thread. A negative index is ignored."""
    index = _get_device_index(device)
    if index >= 0:
        _C._set_device(index)


def _exchange_device(index: int) -> int:
    if index < 0:
        return -1
    return _C._exchange_device(index)


def _maybe_exchange_device(index: int) -> int:
    return _exchange_device(index)


class device:
    """Context manager that changes the current qdev device (like ``torch.cuda.device``)."""

    def __init__(self, device: Any):
        self.idx = _get_device_index(device, optional=True)
        self.prev_idx = -1

    def __enter__(self):
        self.prev_idx = _exchange_device(self.idx)

    def __exit__(self, *args: Any) -> bool:
        if self.prev_idx >= 0:
            _C._set_device(self.prev_idx)
        return False


class device_of(device):
    """Makes the device of the given tensor current; a non-qdev tensor changes nothing."""

    def __init__(self, obj: torch.Tensor):
        idx = obj.get_device() if obj.device.type == "qdev" else -1
        super().__init__(idx)


def synchronize(device: Any = None) -> None:
    """Waits for all queued work on every stream of the device."""
    _lazy_init()
    index = _get_device_index(device, optional=True)
    torch._C._accelerator_synchronizeDevice(index)


class _QdevDeviceProperties:
    """What ``get_device_properties`` returns; fields mirror torch.cuda's."""

    def __init__(self, name: str, total_memory: int, multi_processor_count: int, major: int,
                 minor: int):
        self.name = name
        self.total_memory = total_memory
        self.multi_processor_count = multi_processor_count
        self.major = major
        self.minor = minor
        self.type = "qdev"

    def __repr__(self) -> str:
        return (f"_QdevDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory // (1024 * 1024)}MB, "
                f"multi_processor_count={self.multi_processor_count})")


def get_device_properties(device: Any = None) -> _QdevDeviceProperties:
    _lazy_init()
    index = _get_device_index(device, optional=True)
    return _QdevDeviceProperties(*_C._get_device_properties(index))


def get_device_name(device: Any = None) -> str:
    return get_device_properties(device).name


def get_device_capability(device: Any = None) -> tuple[int, int]:
    props = get_device_properties(device)
    return props.major, props.minor


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """bf16 runs on every qdev device (CPU kernels do the arithmetic)."""
    return True


def __getattr__(name: str):
    # Inductor looks these up on the device module only when it compiles for qdev,
    # so importing torch._inductor is deferred until then.
    if name in ("Scheduling", "PythonWrapperCodegen", "CppWrapperCodegen", "WrapperFxCodegen"):
        from .. import _compile

        return _compile.inductor_component(name)
    raise AttributeError(f"module 'torch.qdev' has no attribute '{name}'")
