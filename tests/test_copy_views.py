"""Copies between devices, views over qdev storage, storage plumbing (set_, resize_)."""
from __future__ import annotations

import pytest
import torch

from hypothesis import given, settings, strategies as st

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
          torch.int32, torch.int64, torch.bool, torch.complex64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(dtype):
    x = (torch.randn(7, 5) * 10).to(dtype)
    q = x.to("qdev")
    assert q.dtype == dtype and q.device.type == "qdev"
    assert torch.equal(q.cpu(), x)
    assert torch.equal(q.to("qdev:1").to("qdev:0").cpu(), x)


def test_dtype_conversion_during_copy():
    x = torch.randn(4, 4)
    assert torch.equal(x.to("qdev", torch.float16).cpu(), x.half())
    q = x.to("qdev")
    assert torch.equal(q.to(torch.int32).cpu(), x.to(torch.int32))
    assert torch.equal(q.to("cpu", torch.bfloat16), x.bfloat16())


def test_non_contiguous_copies():
    x = torch.randn(6, 8)
    q = x.to("qdev")
    assert torch.equal(q.t().cpu(), x.t())
    assert torch.equal(q[:, ::2].cpu(), x[:, ::2])
    dst = torch.zeros(8, 6, device="qdev")
    dst.copy_(x.t())
    assert torch.equal(dst.cpu(), x.t())
    dst2 = torch.zeros(6, 8, device="qdev").t()
    dst2.copy_(q.t())
    assert torch.equal(dst2.cpu(), x.t())


def test_broadcasting_copy():
    q = torch.zeros(3, 4, device="qdev")
    q.copy_(torch.arange(4.0))
    assert torch.equal(q.cpu(), torch.arange(4.0).expand(3, 4))


def test_cross_device_copy():
    a = torch.randn(10, device="qdev:0")
    b = a.to("qdev:1")
    assert b.device == torch.device("qdev:1")
    assert torch.equal(a.cpu(), b.cpu())
    c = torch.empty(10, device="qdev:1")
    c.copy_(a)
    assert torch.equal(c.cpu(), a.cpu())


def test_conj_and_neg_views_copy_without_recursion():
    z = torch.tensor([1 + 2j, 3 - 4j])
    q = z.to("qdev")
    assert torch.equal(q.conj().cpu(), z.conj())
    assert torch.equal(z.conj().to("qdev").cpu(), z.conj())
    n = torch._neg_view(q)
    assert torch.equal(n.cpu(), -z)
    dst = torch.empty(2, dtype=torch.complex64, device="qdev")
    dst.copy_(q.conj())
    assert torch.equal(dst.cpu(), z.conj())
    assert torch.equal(q.conj().resolve_conj().cpu(), z.conj())


def test_views_share_storage():
    base = torch.zeros(4, 6, device="qdev")
    v = base.view(24)
    v[3] = 7
    assert base[0, 3].item() == 7
    r = base.reshape(6, 4)
    assert r.data_ptr() == base.data_ptr()
    s = base[1:3, 2:]
    s.fill_(1)
    assert base.sum().item() == 7 + 8
    a = base.as_strided((2, 2), (6, 1), 1)
    assert a.data_ptr() == base.data_ptr() + 4
    t = base.t()
    t[5, 3] = 9  # base[3, 5]
    assert base[3, 5].item() == 9
    u = base.unfold(1, 2, 2)  # a view op served by the fallback
    assert u.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    u[0, 0, 0] = -1
    assert base[0, 0].item() == -1


def test_item_and_scalars():
    q = torch.tensor([2.5], device="qdev")
    assert q.item() == 2.5
    assert float(q) == 2.5
    assert torch.tensor(True, device="qdev").item() is True
    assert int(torch.tensor(7, device="qdev")) == 7
    with pytest.raises(RuntimeError):
        torch.zeros(2, device="qdev").item()


def test_fill_and_zero_native():
    q = torch.empty(3, 4, device="qdev")
    q.fill_(3.5)
    assert torch.equal(q.cpu(), torch.full((3, 4), 3.5))
    q[:, 1].zero_()
    assert q[:, 1].abs().sum().item() == 0
    q.fill_(torch.tensor(2.0, device="qdev"))
    assert q.sum().item() == 24
    with pytest.raises(RuntimeError, match="0-dimension value tensor"):
        q.fill_(torch.ones(2, device="qdev"))
    assert torch.equal(torch.zeros(5, device="qdev").cpu(), torch.zeros(5))
    assert torch.equal(torch.ones(2, 2, dtype=torch.int64, device="qdev").cpu(), torch.ones(2, 2, dtype=torch.int64))
    assert torch.equal(torch.full((2,), 7, device="qdev").cpu(), torch.full((2,), 7))


def test_resize_keeps_data_and_grows():
    q = torch.arange(6.0, device="qdev")
    q.resize_(2, 3)
    assert torch.equal(q.cpu(), torch.arange(6.0).view(2, 3))
    q.resize_(4, 4)
    assert q.shape == (4, 4)
    assert torch.equal(q.view(-1)[:6].cpu(), torch.arange(6.0))
    q.resize_(0)
    assert q.numel() == 0


def test_storage_resize_and_set():
    q = torch.arange(4.0, device="qdev")
    s = q.untyped_storage()
    s.resize_(32)
    assert s.nbytes() == 32
    assert torch.equal(q.cpu(), torch.arange(4.0))
    t = torch.empty(0, device="qdev")
    t.set_(q.untyped_storage(), 1, (2,), (1,))
    assert torch.equal(t.cpu(), torch.tensor([1.0, 2.0]))
    t2 = torch.empty(0, device="qdev").set_(q)
    assert t2.data_ptr() == q.data_ptr()
    t3 = torch.empty(0, device="qdev").set_(q.untyped_storage())
    assert t3.numel() == 8
    t4 = torch.ones(3, device="qdev").set_()
    assert t4.numel() == 0 and t4.device.type == "qdev"
    with pytest.raises(RuntimeError, match="different device"):
        torch.empty(0).set_(q.untyped_storage())


def test_clone_and_contiguous_formats():
    x = torch.randn(2, 3, 4, 5)
    q = x.to("qdev").to(memory_format=torch.channels_last)
    assert q.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(q.cpu(), x)
    c = q.clone()
    assert c.data_ptr() != q.data_ptr() and torch.equal(c.cpu(), x)
    e = torch.empty_strided((2, 3), (1, 2), device="qdev")
    assert e.stride() == (1, 2)


def test_dlpack_round_trip():
    q = torch.arange(10.0, device="qdev")
    cap = torch.utils.dlpack.to_dlpack(q)
    back = torch.utils.dlpack.from_dlpack(cap)
    assert back.device == q.device and back.data_ptr() == q.data_ptr()


def test_numpy_requires_cpu():
    with pytest.raises(TypeError, match="numpy"):
        torch.ones(2, device="qdev").numpy()


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
       perm_seed=st.integers(0, 1000), step=st.integers(1, 3))
def test_fuzz_strided_round_trips(shape, perm_seed, step):
    x = torch.randn(*shape) if shape else torch.randn(())
    q = x.to("qdev")
    if x.dim() > 1:
        perm = torch.randperm(x.dim(), generator=torch.Generator().manual_seed(perm_seed)).tolist()
        x, q = x.permute(perm), q.permute(perm)
    if x.dim() > 0:
        x, q = x[..., ::step], q[..., ::step]
    assert torch.equal(q.cpu(), x)
    assert torch.equal((q + 1).cpu(), x + 1)
    assert torch.equal(q.contiguous().cpu(), x.contiguous())
