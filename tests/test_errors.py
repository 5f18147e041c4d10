"""Bad input gives a clear Python exception and never kills the process."""
from __future__ import annotations

import pytest
import torch


def test_invalid_device_index():
    with pytest.raises(RuntimeError, match="Invalid device index 5 for qdev"):
        torch.empty(2, device="qdev:5")
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.set_device(2)
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.ones(1).to("qdev:9")
    with pytest.raises(RuntimeError, match="Invalid device index"):
        with torch.qdev.device(3):
            pass
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.get_device_properties(4)
    assert torch.qdev.current_device() == 0


def test_wrong_device_types():
    with pytest.raises(ValueError, match="Expected a qdev device"):
        torch.qdev.set_device("cpu")
    with pytest.raises(TypeError):
        torch.qdev.get_device_properties(1.5)
    with pytest.raises(ValueError, match="Expected a qdev stream"):
        torch.qdev.set_stream(torch.Stream("cpu"))


def test_layout_and_pinning_errors():
    with pytest.raises(RuntimeError, match="Only dense CPU tensors can be pinned"):
        torch.empty(2, device="qdev", pin_memory=True)
    with pytest.raises(RuntimeError):
        torch.ones(2, device="qdev").pin_memory()


def test_negative_and_huge_sizes():
    with pytest.raises(RuntimeError, match="negative dimension"):
        torch.empty(-1, device="qdev")
    with pytest.raises(RuntimeError, match="overflow|out of memory"):
        torch.empty(2**62, 2**62, device="qdev")
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(2**45, dtype=torch.uint8, device="qdev")
    assert torch.ones(2, device="qdev").sum().item() == 2


def test_shape_errors_from_kernels():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        torch.ones(2, 3, device="qdev") @ torch.ones(2, 3, device="qdev")
    with pytest.raises(RuntimeError):
        torch.ones(4, device="qdev").view(3)
    with pytest.raises(RuntimeError, match="size of tensor a"):
        torch.ones(3, device="qdev") + torch.ones(4, device="qdev")


def test_mixed_device_copy_errors_are_clear():
    with pytest.raises(RuntimeError, match="same device"):
        torch.ones(2, device="qdev").add_(torch.ones(2))


def test_elapsed_time_before_record():
    a, b = torch.qdev.Event(enable_timing=True), torch.qdev.Event(enable_timing=True)
    with pytest.raises((RuntimeError, ValueError), match="must be recorded"):
        a.elapsed_time(b)
