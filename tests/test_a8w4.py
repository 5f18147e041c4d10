"""npu_quant_matmul A8W4 (int8 x1, int32-packed int4 x2, int64 per-group scale): the
NPU's hi/lo split with float16 accumulation over k-groups, against torch_npu's golden
(a8w4_quant_golden, re-derived here in torch), its comparison criterion, errors,
opcheck and torch.compile."""
from __future__ import annotations

import pytest
import torch

import torch_qdev

ISAS = torch_qdev._C._supported_cpu_isas()


def golden(x1, w, scale, pertoken, y_offset, group, out_dtype):
    """torch_npu's A8W4 golden: x = 16 hi + lo + 8 with hi = x // 16, lo = (x & 15) - 8; per
    k-group (hi|lo) @ W_j as int32, * scale_j in float32, rounded to float16 and accumulated
    in float16; then (16 HI + LO + y_offset) * pertoken."""
    m, k = x1.shape
    n = w.shape[1]
    x = x1.to(torch.int64)
    split = torch.stack([torch.div(x, 16, rounding_mode="floor"), (x & 0xF) - 8], 1).reshape(2 * m, k)
    acc = torch.zeros(2 * m, n, dtype=torch.float16)
    for j in range(k // group):
        part = split[:, j * group:(j + 1) * group] @ w[j * group:(j + 1) * group].to(torch.int64)
        mm = part.to(torch.float32) * scale[j].reshape(1, -1)
        acc = (acc.float() + mm.half().float()).half()
    y = acc.float().reshape(m, 2, n)
    y = y[:, 0] * 16 + y[:, 1] + (y_offset.reshape(1, n) if y_offset is not None else 0)
    return (y * pertoken.reshape(m, 1)).to(out_dtype)


def decoded(scale_i64):
    """The float32 scale the NPU reads from an int64 npu_trans_quant_param value (19 bits)."""
    return (scale_i64 & 0xFFFFE000).to(torch.int32).view(torch.float32)


def golden_compare(out, gold, k, dtype):
    """torch_npu's criterion for its A8W4 test: mean relative error and a per-element bound."""
    gold, out = gold.float(), out.float()
    nmax = gold.abs().clamp(min=1)
    eb = ((out - gold) / nmax).mean()
    fp16 = dtype == torch.float16
    eb_max = 2 ** -10 if fp16 else 2 ** -7
    thresh = (2 ** -8 if k < 2048 else 2 ** -7) if fp16 else (2 ** -7 if k < 2048 else 2 ** -6)
    return bool(eb <= eb_max) and bool(((out - gold).abs() <= thresh * nmax).all())


def make(m, k, n, group=256, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x1 = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
    w = torch.randint(-8, 8, (k, n), dtype=torch.int32, generator=gen)
    scale_f = torch.rand(k // group, n, generator=gen) * 0.05 + 0.001
    scale = torch_qdev.npu_trans_quant_param(scale_f.reshape(-1)).reshape(k // group, n)
    pertoken = torch.rand(m, 1, generator=gen) * 0.02
    # y_offset compensates the -8 of the split: 8 * column sums of W, scaled per group
    y_offset = 8 * (w.reshape(k // group, group, n).sum(1).float() * decoded(scale)).sum(0)
    return x1, w, torch_qdev.npu_convert_weight_to_int4pack(w), scale, scale_f, pertoken, y_offset


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("device", ["cpu", "qdev"])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,k,n,group", [(1, 512, 64, 256), (5, 1024, 96, 256), (3, 256, 40, 128)])
def test_a8w4_matches_the_npu_golden(isa, device, out_dtype, m, k, n, group):
    x1, w, x2, scale, _, pertoken, y_offset = make(m, k, n, group)
    previous = torch_qdev._C._get_cpu_isa()
    assert torch_qdev._C._set_cpu_isa(isa)
    try:
        got = torch_qdev.npu_quant_matmul(x1.to(device), x2.to(device), scale.to(device), offset=y_offset.to(device),
                                          pertoken_scale=pertoken.to(device), output_dtype=out_dtype,
                                          group_sizes=[0, 0, group])
    finally:
        torch_qdev._C._set_cpu_isa(previous)
    assert got.shape == (m, n) and got.dtype == out_dtype and got.device.type == device
    # bit for bit with the golden fed the scale the NPU decodes from the int64 value
    assert torch.equal(got.cpu(), golden(x1, w, decoded(scale), pertoken, y_offset, group, out_dtype))
    # the whole is the int8 matmul it stands for: ((x - 8) @ W) * s + y_offset ~ x @ W * s
    exact = (x1.double() @ (w.double().reshape(k // group, group, n) * decoded(scale).double()[:, None]).reshape(k, n))
    exact = exact * pertoken.double()
    err = (got.cpu().double() - exact).norm() / exact.norm()
    assert err < 2e-2


@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_a8w4_passes_torch_npus_own_test(out_dtype):
    """torch_npu's A8W4 test case (M=1, K=8192, N=1024, weights 1..7, random y_offset): its
    golden on the float32 scale, its criterion. The scale reaches the kernel through
    npu_trans_quant_param (19 bits), as on the NPU."""
    gen = torch.Generator().manual_seed(3)
    m, k, n, group = 1, 8192, 1024, 256
    x1 = torch.randint(-128, 128, (m, k), dtype=torch.int8, generator=gen)
    w = torch.randint(1, 8, (k, n), dtype=torch.int32, generator=gen)
    y_offset = torch.randn(n, generator=gen)
    pertoken = torch.randn(m, 1, generator=gen) * 0.01
    scale_f = torch.rand(k // group, n, generator=gen)
    scale = torch_qdev.npu_trans_quant_param(scale_f.reshape(-1)).reshape(k // group, n)
    got = torch_qdev.npu_quant_matmul(x1.qdev(), torch_qdev.npu_convert_weight_to_int4pack(w).qdev(), scale.qdev(),
                                      offset=y_offset.qdev(), pertoken_scale=pertoken.qdev(), output_dtype=out_dtype,
                                      group_sizes=[0, 0, group]).cpu()
    assert golden_compare(got, golden(x1, w, scale_f, pertoken, y_offset, group, out_dtype), k, out_dtype)


def test_a8w4_default_group_and_no_offset():
    x1, w, x2, scale, _, pertoken, _ = make(2, 512, 32)
    got = torch_qdev.npu_quant_matmul(x1, x2, scale, pertoken_scale=pertoken, output_dtype=torch.float16)
    assert torch.equal(got, golden(x1, w, decoded(scale), pertoken, None, 256, torch.float16))


def test_a8w4_errors():
    x1, w, x2, scale, _, pertoken, y_offset = make(2, 512, 32)
    call = lambda **kw: torch_qdev.npu_quant_matmul(**{**dict(x1=x1, x2=x2, scale=scale, pertoken_scale=pertoken,
                                                                output_dtype=torch.float16), **kw})
    with pytest.raises(RuntimeError, match="A8W4 takes no bias"):
        call(bias=torch.zeros(32, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="A8W4 scale must be int64"):
        call(scale=scale.view(torch.float64).float())
    with pytest.raises(RuntimeError, match=r"A8W4 scale must be int64 .* of shape \(2, 32\)"):
        call(scale=scale[:1])
    with pytest.raises(RuntimeError, match="A8W4 needs a float32 pertoken_scale"):
        call(pertoken_scale=None)
    with pytest.raises(RuntimeError, match="A8W4 needs float16 or bfloat16 output"):
        call(output_dtype=torch.int8)
    with pytest.raises(RuntimeError, match="k dim of x1 and x2 need be same"):
        call(x1=x1[:, :256])
    with pytest.raises(RuntimeError, match="supports 2-D x1 and x2"):
        call(x1=x1.unsqueeze(0))
    with pytest.raises(RuntimeError, match="k-group that is a multiple of 16 and divides k"):
        call(group_sizes=[0, 0, 100])
    with pytest.raises(RuntimeError, match=r"offset \(y_offset\) must be float32"):
        call(offset=y_offset.half())


def test_a8w4_opcheck_and_compile():
    x1, w, x2, scale, _, pertoken, y_offset = make(3, 512, 32)
    args = (x1.qdev(), x2.qdev(), scale.qdev())
    kwargs = dict(offset=y_offset.qdev(), pertoken_scale=pertoken.qdev(), output_dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.qdev.npu_quant_matmul.default, args, kwargs)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(a, b, s, o, p):
        return torch_qdev.npu_quant_matmul(a, b, s, offset=o, pertoken_scale=p, output_dtype=torch.bfloat16) * 2

    got = f(*args, kwargs["offset"], kwargs["pertoken_scale"])
    assert got.shape == (3, 32)
    assert torch.equal(got.cpu(), torch_qdev.npu_quant_matmul(*args, **kwargs).cpu() * 2)
