"""Memory statistics of the qdev caching allocator (torch.cuda.memory's API)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from ._utils import _get_device_index


def _flatten(prefix: str, value: Any, out: "OrderedDict[str, Any]") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def memory_stats(device: Any = None) -> "OrderedDict[str, Any]":
    """Flat dict of allocator statistics, keys like ``allocated_bytes.all.current``."""
    index = _get_device_index(device, optional=True)
    nested = torch._C._accelerator_getDeviceStats(index)
    out: OrderedDict[str, Any] = OrderedDict()
    _flatten("", nested, out)
    return OrderedDict(sorted(out.items()))


def memory_allocated(device: Any = None) -> int:
    return memory_stats(device).get("allocated_bytes.all.current", 0)


def max_memory_allocated(device: Any = None) -> int:
    return memory_stats(device).get("allocated_bytes.all.peak", 0)


def memory_reserved(device: Any = None) -> int:
    return memory_stats(device).get("reserved_bytes.all.current", 0)


def max_memory_reserved(device: Any = None) -> int:
    return memory_stats(device).get("reserved_bytes.all.peak", 0)


def reset_peak_memory_stats(device: Any = None) -> None:
    torch._C._accelerator_resetPeakStats(_get_device_index(device, optional=True))


def reset_accumulated_memory_stats(device: Any = None) -> None:
    torch._C._accelerator_resetAccumulatedStats(_get_device_index(device, optional=True))


def empty_cache() -> None:
    """Returns every cached, unused block of every qdev device to the runtime."""
    torch._C._accelerator_emptyCache()


def mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of the device as the runtime sees them."""
    return torch._C._accelerator_getMemoryInfo(_get_device_index(device, optional=True))


def memory_summary(device: Any = None, abbreviated: bool = False) -> str:
    """A short human-readable report of the allocator's state."""
    index = _get_device_index(device, optional=True)
    stats = memory_stats(index)
    free, total = mem_get_info(index)

    def mib(n: int) -> str:
        return f"{n / 2**20:10.2f} MiB"

    rows = [
        ("allocated", "allocated_bytes.all"), ("reserved", "reserved_bytes.all"),
        ("active", "active_bytes.all"), ("requested", "requested_bytes.all"),
    ]
    lines = [f"qdev:{index} memory summary (capacity {mib(total)}, free {mib(free)})",
             f"{'':12s}{'current':>14s}{'peak':>14s}{'allocated':>14s}{'freed':>14s}"]
    for label, key in rows:
        lines.append(f"{label:12s}" + "".join(
            mib(stats.get(f"{key}.{f}", 0)).rjust(14) for f in ("current", "peak", "allocated", "freed")))
    if not abbreviated:
        lines.append(f"device allocations: {stats.get('num_device_alloc', 0)}, "
                     f"device frees: {stats.get('num_device_free', 0)}, "
                     f"retries: {stats.get('num_alloc_retries', 0)}, OOMs: {stats.get('num_ooms', 0)}")
    return "\n".join(lines)
