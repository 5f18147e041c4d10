"""Semantics of the aliasing CPU fallback: results, in-place, out=, views, lists, devices."""
from __future__ import annotations

import pytest
import torch

from hypothesis import given, settings, strategies as st


def q(t):
    return t.to("qdev")


@pytest.mark.parametrize("fn", [
    lambda a, b: a + b, lambda a, b: a * b - b, lambda a, b: a / (b.abs() + 1),
    lambda a, b: torch.matmul(a, b.t()), lambda a, b: torch.maximum(a, b),
    lambda a, b: torch.where(a > 0, a, b), lambda a, b: torch.cat([a, b], 1),
    lambda a, b: torch.stack([a, b]).sum(0), lambda a, b: a.exp().log1p(),
    lambda a, b: torch.nn.functional.softmax(a, -1), lambda a, b: a.sort(-1).values,
    lambda a, b: torch.cumsum(a, 0), lambda a, b: a.mean(1, keepdim=True),
    lambda a, b: torch.nn.functional.gelu(a), lambda a, b: a.masked_fill(b > 0, 0.5),
])
def test_ops_match_cpu(fn):
    a, b = torch.randn(5, 6), torch.randn(5, 6)
    expected = fn(a, b)
    got = fn(q(a), q(b))
    assert got.device.type == "qdev"
    torch.testing.assert_close(got.cpu(), expected)


def test_in_place_ops_write_through():
    x = torch.randn(4, 4)
    qx = q(x)
    ptr = qx.data_ptr()
    qx.mul_(2).add_(1)
    assert qx.data_ptr() == ptr
    torch.testing.assert_close(qx.cpu(), x * 2 + 1)
    qx[1:3].sigmoid_()
    x2 = x * 2 + 1
    x2[1:3].sigmoid_()
    torch.testing.assert_close(qx.cpu(), x2)
    d = qx.diagonal()
    d.clamp_(max=0)
    x2.diagonal().clamp_(max=0)
    torch.testing.assert_close(qx.cpu(), x2)


def test_out_with_right_size_writes_in_place():
    a, b = torch.randn(3, 3), torch.randn(3, 3)
    out = torch.empty(3, 3, device="qdev")
    ptr = out.data_ptr()
    r = torch.add(q(a), q(b), out=out)
    assert r is out and out.data_ptr() == ptr
    torch.testing.assert_close(out.cpu(), a + b)


def test_out_that_must_grow_is_resized():
    a = torch.randn(4, 5)
    out = torch.empty(0, device="qdev")
    torch.mul(q(a), 3, out=out)
    assert out.shape == (4, 5) and out.device.type == "qdev"
    torch.testing.assert_close(out.cpu(), a * 3)
    small = torch.empty(2, device="qdev")
    with pytest.warns(UserWarning, match="will be resized"):  # torch's own warning, as on CPU
        torch.arange(10, out=small)
    assert torch.equal(small.cpu(), torch.arange(10.0))


def test_non_contiguous_out():
    a = torch.randn(4, 6)
    out = torch.zeros(6, 4, device="qdev").t()
    torch.neg(q(a), out=out)
    assert out.stride() == (1, 4)
    torch.testing.assert_close(out.cpu(), -a)


def test_multiple_outputs_and_lists():
    a = torch.randn(5, 7)
    values, idx = q(a).max(1)
    ev, ei = a.max(1)
    assert values.device.type == "qdev" and idx.dtype == torch.int64
    assert torch.equal(values.cpu(), ev) and torch.equal(idx.cpu(), ei)
    parts = q(a).split([2, 5], dim=1)
    assert [p.shape for p in parts] == [(5, 2), (5, 5)]
    assert parts[1].data_ptr() == q(a).data_ptr() or parts[1].device.type == "qdev"
    xs = [q(torch.ones(3)), q(torch.zeros(3))]
    torch._foreach_add_(xs, 1.0)
    assert torch.equal(xs[0].cpu(), torch.full((3,), 2.0)) and torch.equal(xs[1].cpu(), torch.ones(3))
    u, counts = torch.unique(q(torch.tensor([3, 1, 3, 2])), return_counts=True)
    assert torch.equal(u.cpu(), torch.tensor([1, 2, 3])) and torch.equal(counts.cpu(), torch.tensor([1, 1, 2]))
    t = torch.topk(q(a), 2)
    assert torch.equal(t.indices.cpu(), a.topk(2).indices)


def test_indexing_with_cpu_and_qdev_indices():
    a = torch.randn(6, 3)
    qa = q(a)
    idx = torch.tensor([0, 4])
    assert torch.equal(qa[idx].cpu(), a[idx])
    assert torch.equal(qa[q(idx)].cpu(), a[idx])
    qa[idx] = 0.0
    a[idx] = 0.0
    assert torch.equal(qa.cpu(), a)
    qa.index_put_((q(torch.tensor([1])),), q(torch.tensor(5.0)))
    a.index_put_((torch.tensor([1]),), torch.tensor(5.0))
    assert torch.equal(qa.cpu(), a)
    mask = qa > 0
    assert torch.equal(qa[mask].cpu(), a[a > 0])


def test_zero_dim_cpu_scalars_mix_with_qdev():
    a = torch.randn(3)
    r = q(a) * torch.tensor(2.0)
    assert r.device.type == "qdev"
    torch.testing.assert_close(r.cpu(), a * 2)


def test_mixed_devices_are_rejected():
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        q(torch.ones(3)) + torch.ones(3)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.ones(3, device="qdev:0") + torch.ones(3, device="qdev:1")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.add(q(torch.ones(3)), q(torch.ones(3)), out=torch.empty(3))


def test_factories_with_qdev_device():
    assert torch.equal(torch.arange(5, device="qdev").cpu(), torch.arange(5))
    assert torch.equal(torch.eye(3, device="qdev").cpu(), torch.eye(3))
    torch.testing.assert_close(torch.linspace(0, 1, 5, device="qdev").cpu(), torch.linspace(0, 1, 5))
    ti = torch.tril_indices(3, 3, device="qdev:1")
    assert ti.device == torch.device("qdev:1") and torch.equal(ti.cpu(), torch.tril_indices(3, 3))
    assert torch.tensor([[1, 2]], device="qdev").shape == (1, 2)
    assert torch.zeros_like(q(torch.ones(2, 2))).device.type == "qdev"
    assert torch.full((2,), 3.0, device="qdev:1").device.index == 1


def test_results_stay_on_input_device():
    x = torch.randn(4, device="qdev:1")
    y = (x.exp() + 1).sort().values
    assert y.device == torch.device("qdev:1")
    assert torch.qdev.current_device() == 0


def test_fallback_warn_names_ops_once():
    from conftest import run_python

    r = run_python("""
        import torch
        x = torch.ones(3, device='qdev')
        for _ in range(3):
            torch.sigmoid(x)
    """, env={"QDEV_FALLBACK_WARN": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("aten::sigmoid") == 1 and "has no qdev kernel" in r.stderr
    quiet = run_python("import torch; torch.sigmoid(torch.ones(3, device='qdev'))")
    assert "has no qdev kernel" not in quiet.stderr


def test_printing():
    s = str(torch.tensor([1.5, -2.0], device="qdev"))
    assert "device='qdev:0'" in s and "1.5" in s
    assert "qdev:1" in repr(torch.zeros(2, 2, dtype=torch.int8, device="qdev:1"))


def test_nn_layers():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    bn = torch.nn.BatchNorm2d(4)
    x = torch.randn(2, 3, 8, 8)
    expected = bn(conv(x))
    got = bn.qdev()(conv.qdev()(q(x)))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(bn.running_mean.cpu(), bn.running_mean.cpu())  # buffers updated on qdev
    attn = torch.nn.functional.scaled_dot_product_attention
    qq, kk, vv = (torch.randn(1, 2, 4, 8) for _ in range(3))
    torch.testing.assert_close(attn(q(qq), q(kk), q(vv)).cpu(), attn(qq, kk, vv), rtol=1e-4, atol=1e-5)


def test_bf16_and_int_ops():
    a = torch.randn(8, 8).bfloat16()
    torch.testing.assert_close((q(a) @ q(a)).cpu(), a @ a)
    i = torch.randint(-100, 100, (16,), dtype=torch.int8)
    assert torch.equal((q(i) // 3).cpu(), i // 3)


ELEMENTWISE = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "atan2": torch.atan2, "hypot": torch.hypot,
}


@settings(max_examples=50, deadline=None)
@given(op=st.sampled_from(sorted(ELEMENTWISE)), rows=st.integers(0, 6), cols=st.integers(1, 6),
       transpose=st.booleans(), broadcast=st.booleans(), inplace=st.booleans())
def test_fuzz_elementwise_against_cpu(op, rows, cols, transpose, broadcast, inplace):
    fn = ELEMENTWISE[op]
    a = torch.randn(cols, rows).t() if transpose else torch.randn(rows, cols)
    b = torch.randn(cols) if broadcast else torch.randn(rows, cols)
    expected = fn(a, b)
    qa, qb = q(a), q(b)
    if transpose:
        qa = q(a.t().contiguous()).t()
    if inplace:
        getattr(qa, op + "_")(qb)
        got = qa
    else:
        got = fn(qa, qb)
    torch.testing.assert_close(got.cpu(), expected)
