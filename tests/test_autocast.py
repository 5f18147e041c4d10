"""torch.autocast("qdev"): lower-precision matmuls, fp32 for sensitive ops, fallthrough elsewhere."""
from __future__ import annotations

import pytest
import torch


def test_supported_dtypes():
    assert torch.qdev.get_amp_supported_dtype() == [torch.float16, torch.bfloat16]
    assert torch.amp.is_autocast_available("qdev")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_matmul_family_runs_in_autocast_dtype(dtype):
    a, b = torch.randn(8, 8, device="qdev"), torch.randn(8, 8, device="qdev")
    lin = torch.nn.Linear(8, 4).qdev()
    with torch.autocast("qdev", dtype=dtype):
        assert torch.mm(a, b).dtype == dtype
        assert (a @ b).dtype == dtype
        assert lin(a).dtype == dtype
        assert torch.addmm(a, a, b).dtype == dtype
        assert (a + b).dtype == torch.float32  # not on the list: falls through
        assert torch.softmax(torch.mm(a, b), -1).dtype == torch.float32  # fp32 policy
    assert torch.mm(a, b).dtype == torch.float32
    ref = (a.cpu().to(dtype) @ b.cpu().to(dtype))
    with torch.autocast("qdev", dtype=dtype):
        got = a @ b
    torch.testing.assert_close(got.cpu(), ref)


def test_qdev_amp_autocast_class_and_disabled():
    a = torch.randn(4, 4, device="qdev")
    with torch.qdev.amp.autocast(dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("qdev")
        assert (a @ a).dtype == torch.bfloat16
        with torch.autocast("qdev", enabled=False):
            assert (a @ a).dtype == torch.float32
    assert not torch.is_autocast_enabled("qdev")


def test_autocast_does_not_break_other_ops():
    with torch.autocast("qdev", dtype=torch.float16):
        x = torch.randn(4, device="qdev")
        y = torch.zeros(4, device="qdev").normal_()
        z = x.cpu()
    assert x.dtype == torch.float32 and y.device.type == "qdev" and z.device.type == "cpu"


def test_autocast_backward():
    lin = torch.nn.Linear(8, 8).qdev()
    x = torch.randn(4, 8, device="qdev")
    with torch.autocast("qdev", dtype=torch.bfloat16):
        loss = lin(x).float().pow(2).mean()
    loss.backward()
    assert lin.weight.grad.dtype == torch.float32 and lin.weight.grad.device.type == "qdev"
