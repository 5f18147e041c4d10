from __future__ import annotations

from typing import Any

import torch

from .. import _C


def _get_device_index(device: Any, optional: bool = False) -> int:
    """Index of a qdev device given as int, str or torch.device.

    ``None`` (and a device without index) means the current device when
    ``optional`` is true; other device types are rejected.
    """
    if device is None:
        if optional:
            return _C._get_device()
        raise ValueError("Expected a qdev device, but got: None")
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device):
        if device.type != "qdev":
            raise ValueError(f"Expected a qdev device, but got: {device}")
        if device.index is None:
            return _C._get_device()
        index = device.index
    elif isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        raise TypeError(f"Expected a qdev device (int, str or torch.device), but got: {device!r}")
    if index >= 0:
        _C._check_device_index(index)
    return index
