"""DLPack: a qdev tensor round-trips as a qdev tensor over the same memory (kDLExtDev), and goes
to host consumers (numpy, dl_device=kDLCPU) zero-copy; what cannot be exported fails clearly."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch.utils.dlpack import DLDeviceType

import torch_qdev
from conftest import internal_format


@pytest.mark.parametrize("device", ["qdev:0", "qdev:1"])
@pytest.mark.parametrize("route", ["protocol", "capsule", "versioned_capsule", "torch.to_dlpack"])
def test_round_trip_keeps_device_and_memory(device, route):
    x = torch.arange(24, dtype=torch.float32).reshape(4, 6).to(device)
    assert x.__dlpack_device__() == (DLDeviceType.kDLExtDev, torch.device(device).index)
    if route == "protocol":
        y = torch.from_dlpack(x)
    elif route == "capsule":
        y = torch.utils.dlpack.from_dlpack(torch.utils.dlpack.to_dlpack(x))
    elif route == "versioned_capsule":
        y = torch.from_dlpack(x.__dlpack__(max_version=(1, 0)))
    else:
        y = torch.from_dlpack(torch.to_dlpack(x))
    assert y.device == x.device and y.dtype == x.dtype and y.shape == x.shape
    assert y.data_ptr() == x.data_ptr()  # zero-copy
    y[1, 2] = -5.0  # writes are visible both ways
    assert x[1, 2].item() == -5.0
    x[3, 5] = 42.0
    assert y[3, 5].item() == 42.0
    assert torch.equal(y.cpu(), x.cpu())


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.int64, torch.float16,
                                   torch.bfloat16, torch.float64, torch.bool, torch.complex64])
def test_views_and_dtypes(dtype):
    base = (torch.arange(7 * 10) % 5).reshape(7, 10).to(dtype)
    x = base.to("qdev")
    view = x[2:, 1::3].t()  # offset, step, transposed strides
    y = torch.from_dlpack(view)
    assert y.device == view.device and y.stride() == view.stride() and y.data_ptr() == view.data_ptr()
    assert torch.equal(y.cpu(), base[2:, 1::3].t())


def test_other_device_and_cpu_targets_copy():
    x = torch.randn(5, 3).to("qdev:0")
    y = torch.from_dlpack(x, device="qdev:1")
    assert y.device == torch.device("qdev:1") and torch.equal(y.cpu(), x.cpu())
    c = torch.from_dlpack(x, device="cpu")
    assert c.device.type == "cpu" and torch.equal(c, x.cpu())
    with pytest.raises(ValueError, match="without copying"):
        torch.from_dlpack(x, device="cpu", copy=False)
    # A CPU producer lands on the CPU; asked for qdev, it is copied there.
    t = torch.arange(4.0)
    assert torch.from_dlpack(t).data_ptr() == t.data_ptr()
    q = torch.from_dlpack(t, device="qdev:1")
    assert q.device == torch.device("qdev:1") and torch.equal(q.cpu(), t)


def test_imported_tensor_keeps_the_memory_alive():
    gc.collect()
    base = torch.qdev.memory_allocated(0)
    x = torch.full((1 << 16,), 3.0, device="qdev")
    grown = torch.qdev.memory_allocated(0)
    assert grown > base
    y = torch.from_dlpack(x)
    del x
    gc.collect()
    assert torch.qdev.memory_allocated(0) == grown  # y still holds x's block
    assert y.sum().item() == 3.0 * (1 << 16)
    del y
    gc.collect()
    assert torch.qdev.memory_allocated(0) == base


def test_numpy_gets_the_qdev_memory_zero_copy():
    gc.collect()
    base = torch.qdev.memory_allocated(1)
    x = torch.arange(12, dtype=torch.int32).reshape(3, 4).to("qdev:1")
    a = np.from_dlpack(x, device="cpu")  # dl_device=(kDLCPU, 0): the qdev bytes themselves
    assert a.__array_interface__["data"][0] == x.data_ptr()
    assert np.array_equal(a, np.arange(12, dtype=np.int32).reshape(3, 4))
    a[0, 1] = -9
    assert x[0, 1].item() == -9
    x[2, 3] = 77
    assert a[2, 3] == 77
    cap = x.__dlpack__(dl_device=(DLDeviceType.kDLCPU, 0), copy=False)
    c = torch.from_dlpack(cap)
    assert c.device.type == "cpu" and c.data_ptr() == x.data_ptr()
    del c, cap
    del x
    gc.collect()
    assert torch.qdev.memory_allocated(1) > base  # the array keeps the device memory alive
    assert a[2, 3] == 77
    del a
    gc.collect()
    assert torch.qdev.memory_allocated(1) == base
    # copy=True gives the consumer its own host copy.
    x = torch.ones(3, device="qdev")
    b = np.from_dlpack(x, device="cpu", copy=True)
    b[0] = 5
    assert x[0].item() == 1.0
    # Without device="cpu", numpy refuses a kDLExtDev capsule (its own message).
    with pytest.raises((RuntimeError, BufferError), match="device"):
        np.from_dlpack(x)


def test_export_waits_for_the_current_stream():
    s = torch.qdev.Stream()
    big = torch.empty(64 << 20, dtype=torch.uint8).pin_memory()
    src = torch.arange(1024, dtype=torch.float32).pin_memory()
    with torch.qdev.stream(s):
        dst = torch.zeros(1024, device="qdev")
        big_q = big.to("qdev", non_blocking=True)  # keeps s busy for milliseconds
        dst.copy_(src, non_blocking=True)  # queued behind it
        a = np.from_dlpack(dst, device="cpu")  # a host reader: s's work must have run
        assert np.array_equal(a, np.arange(1024, dtype=np.float32))
    assert big_q.numel() == big.numel()


def test_what_cannot_be_exported_fails_clearly():
    with pytest.raises(BufferError, match="require gradient"):
        torch.from_dlpack(torch.ones(2, device="qdev", requires_grad=True))
    with pytest.raises(BufferError, match="require gradient"):
        np.from_dlpack(torch.ones(2, device="qdev", requires_grad=True), device="cpu")
    with pytest.raises(BufferError, match="conjugate"):
        torch.from_dlpack(torch.ones(2, dtype=torch.complex64, device="qdev").conj())
    with pytest.raises(TypeError, match="stream must be"):
        torch.ones(2, device="qdev").__dlpack__(stream="s")
    with internal_format(True):
        w = torch.randint(-128, 128, (64, 64), dtype=torch.int8).to("qdev")
        nz = torch_qdev.npu_format_cast(w, 29)
        assert torch_qdev.get_npu_format(nz) == torch_qdev.Format.FRACTAL_NZ
        for export in (torch.from_dlpack, torch.utils.dlpack.to_dlpack,
                       lambda t: np.from_dlpack(t, device="cpu")):
            with pytest.raises(BufferError, match="FRACTAL_NZ.*npu_format_cast"):
                export(nz)
        nd = torch_qdev.npu_format_cast(nz, 2)
        assert torch.equal(torch.from_dlpack(nd).cpu(), w.cpu())


def test_other_devices_still_use_torchs_own_code():
    t = torch.arange(3)
    assert t.__dlpack_device__() == (DLDeviceType.kDLCPU, 0)
    assert torch.from_dlpack(torch.utils.dlpack.to_dlpack(t)).data_ptr() == t.data_ptr()
