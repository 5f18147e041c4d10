"""Autocast for qdev: ``torch.autocast("qdev")`` or ``torch.qdev.amp.autocast()``."""
from __future__ import annotations

from typing import Any

import torch


def get_amp_supported_dtype() -> list[torch.dtype]:
    return [torch.float16, torch.bfloat16]


class autocast(torch.amp.autocast_mode.autocast):
    """``torch.autocast(device_type="qdev", ...)`` with torch.cuda.amp.autocast's signature."""

    def __init__(self, enabled: bool = True, dtype: torch.dtype = torch.float16,
                 cache_enabled: bool = True) -> None:
        super().__init__("qdev", enabled=enabled, dtype=dtype, cache_enabled=cache_enabled)

    def __enter__(self) -> Any:
        return super().__enter__()

    def __exit__(self, *args: Any) -> Any:
        return super().__exit__(*args)
