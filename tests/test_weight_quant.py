"""npu_convert_weight_to_int4pack, npu_weight_quant_batchmatmul (A16W8 / A16W4) and LinearWeightQuant."""
from __future__ import annotations

import pytest
import torch

import torch_qdev
from torch_qdev.contrib.module import LinearWeightQuant

import quant_reference as ref


def golden(x, w_int, scale, offset=None, bias=None, group=0, keep_fp32=False):
    """CANN's golden: (W + off) and * scale rounded in x's dtype, fp32 matmul, + bias, bf16 rounding."""
    dt = x.dtype
    k, n = w_int.shape[-2:]
    rows = lambda t: t.reshape(1, -1) if t.dim() == 1 else t
    s = rows(scale)
    o = rows(offset) if offset is not None else None
    if group:
        s = s.repeat_interleave(group, 0)[:k]
        o = o.repeat_interleave(group, 0)[:k] if o is not None else None
    w = w_int.to(dt)
    if o is not None:
        w = w + o.to(dt)
    w = w * s.to(dt)
    y = x.float() @ w.float()
    if bias is not None:
        y = y + bias.float()
    if dt == torch.bfloat16:
        y = y.bfloat16().float()
    return y if keep_fp32 else y.to(dt)


def test_convert_weight_to_int4pack():
    w = torch.randint(-8, 8, (16, 64), dtype=torch.int32)
    packed = torch_qdev.npu_convert_weight_to_int4pack(w.qdev())
    assert packed.shape == (16, 8) and packed.dtype == torch.int32
    assert torch.equal(packed.cpu(), ref.pack_int4(w))
    assert torch.equal(ref.unpack_int4(packed.cpu()), w.to(torch.int8))
    with pytest.raises(RuntimeError, match="weight last dim should be the multiple of 8, but it is 12"):
        torch_qdev.npu_convert_weight_to_int4pack(torch.zeros(4, 12, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="weight should be contiguous"):
        torch_qdev.npu_convert_weight_to_int4pack(torch.zeros(16, 8, dtype=torch.int32).t())
    with pytest.raises(RuntimeError, match="weight dtype only support int32 and float32"):
        torch_qdev.npu_convert_weight_to_int4pack(torch.zeros(4, 8, dtype=torch.int8))
    with pytest.raises(RuntimeError, match="weight shape only support dim num 2/3, but it is 1"):
        torch_qdev.npu_convert_weight_to_int4pack(torch.zeros(8, dtype=torch.int32))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["tensor", "channel", "group"])
def test_a16w8_modes(dtype, mode):
    gen = torch.Generator().manual_seed(3)
    m, k, n, group = 5, 128, 48, 32
    x = torch.randn(m, k, generator=gen).to(dtype)
    w = torch.randint(-128, 128, (k, n), dtype=torch.int8, generator=gen)
    shape = {"tensor": (1,), "channel": (n,), "group": (k // group, n)}[mode]
    scale = (torch.rand(shape, generator=gen) * 0.02).to(dtype)
    offset = torch.randn(shape, generator=gen).to(dtype)
    bias = torch.randn(n, generator=gen).to(dtype if dtype == torch.float16 else torch.float32)
    g = group if mode == "group" else 0
    got = torch_qdev.npu_weight_quant_batchmatmul(x.qdev(), w.qdev(), scale.qdev(), offset.qdev(), bias=bias.qdev(),
                                                  antiquant_group_size=g)
    assert got.dtype == dtype and got.shape == (m, n)
    assert torch.equal(got.cpu(), golden(x, w, scale, offset, bias, g))


def test_a16w4_both_layouts_and_int8_output():
    gen = torch.Generator().manual_seed(4)
    m, k, n = 3, 64, 32
    x = torch.randn(m, k, generator=gen).half()
    w = torch.randint(-8, 8, (k, n), dtype=torch.int32, generator=gen)
    scale, offset = (torch.rand(n, generator=gen) * 0.1).half(), torch.randn(n, generator=gen).half()
    expected = golden(x, w.to(torch.int8), scale, offset)
    n_packed = torch_qdev.npu_convert_weight_to_int4pack(w)                  # (k, n/8)
    k_packed = torch_qdev.npu_convert_weight_to_int4pack(w.t().contiguous()).t()  # (k/8, n) view
    for wp in (n_packed, k_packed):
        got = torch_qdev.npu_weight_quant_batchmatmul(x, wp, scale, offset)
        assert torch.equal(got, expected)
    qs = torch.tensor([0.5])
    got8 = torch_qdev.npu_weight_quant_batchmatmul(x, n_packed, scale, offset, quant_scale=qs)
    assert got8.dtype == torch.int8
    y32 = golden(x, w.to(torch.int8), scale, offset, keep_fp32=True)  # requantized before any fp16 rounding
    expect8 = torch.round((y32 * 0.5).clamp(-256, 255)).clamp(-128, 127).to(torch.int8)
    assert torch.equal(got8, expect8)


def test_batch_rules_and_errors():
    x = torch.randn(2, 3, 32).half()
    w = torch.randint(-128, 128, (2, 32, 16), dtype=torch.int8)
    s = torch.rand(16).half()
    assert torch_qdev.npu_weight_quant_batchmatmul(x, w, s).shape == (2, 3, 16)
    with pytest.raises(RuntimeError, match="batch of x is diff from batch of weight"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 3, 32).half(), w, s)
    with pytest.raises(RuntimeError, match="The k of x and weight should be equal. but x_k_dim is 31, weight_k_dim is 32"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 31).half(), w[0], s)
    with pytest.raises(RuntimeError, match="x shape do not support dim num less than 2, but it is 1"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(32).half(), w[0], s)
    with pytest.raises(RuntimeError, match="antiquant_group_size can be either 0 or a multiple of 32"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 32).half(), w[0], s, antiquant_group_size=16)
    with pytest.raises(RuntimeError, match="quant_offset cannot exist in isolation from quant_scale"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 32).half(), w[0], s, quant_offset=torch.ones(1))
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 32).half().qdev(), w[0].qdev(), s.qdev(),
                                                bias=torch.ones(16).half())
    with pytest.raises(RuntimeError, match="inner_precise only support 0 or 1. but is:2"):
        torch_qdev.npu_weight_quant_batchmatmul(torch.randn(3, 32).half(), w[0], s, inner_precise=2)


def test_linear_weight_quant_module_and_fake():
    gen = torch.Generator().manual_seed(5)
    m = LinearWeightQuant(64, 32, antiquant_offset=True, antiquant_group_size=32).qdev()
    w = torch.randint(-128, 128, (32, 64), dtype=torch.int8, generator=gen)
    scale = (torch.rand(32, 2, generator=gen) * 0.02).half()   # (n, k/group): transposed by forward
    offset = torch.randn(32, 2, generator=gen).half()
    bias = torch.randn(32, generator=gen).half()
    m.weight.data, m.antiquant_scale.data, m.antiquant_offset.data, m.bias.data = (
        w.qdev(), scale.qdev(), offset.qdev(), bias.qdev())
    x = torch.randn(4, 64, generator=gen).half()
    y = m(x.qdev())  # decode-sized: the fused GEMV (its fp32 summation order differs from MKL's)
    torch.testing.assert_close(y.cpu(), golden(x, w.t(), scale.t(), offset.t(), bias, 32), rtol=2e-3, atol=2e-3)
    torch.library.opcheck(torch.ops.qdev.npu_weight_quant_batchmatmul.default,
                          (x.qdev(), w.t().qdev(), scale.t().contiguous().qdev(), offset.t().contiguous().qdev(),
                           None, None, bias.qdev(), 32, 0, None))


def _kernel_variants():
    """Every CPU variant; avx512vnni twice where the CPU has AVX512_BF16 (vdpbf16ps GEMV on and off)."""
    out = []
    for isa in torch_qdev._C._supported_cpu_isas():
        out.append((isa, False))
        if isa == "avx512vnni":
            previous = torch_qdev._C._set_cpu_avx512_bf16(True)
            if torch_qdev._C._cpu_avx512_bf16():
                out.append((isa, True))
            torch_qdev._C._set_cpu_avx512_bf16(previous)
    return out


@pytest.fixture(params=_kernel_variants(), ids=lambda v: v[0] + ("+bf16dot" if v[1] else ""))
def kernel_variant(request):
    isa, bf16dot = request.param
    previous_isa = torch_qdev._C._get_cpu_isa()
    previous_bf16 = torch_qdev._C._set_cpu_avx512_bf16(bf16dot)
    assert torch_qdev._C._set_cpu_isa(isa)
    yield isa
    torch_qdev._C._set_cpu_isa(previous_isa)
    torch_qdev._C._set_cpu_avx512_bf16(previous_bf16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group", [0, 32, 64])
@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("m", [1, 2, 3, 8, 13])  # the GEMV's row tiles: 1, 2, 4 and 8 (13 = 8 + 5)
@pytest.mark.parametrize("with_offset", [True, False])
def test_fused_linear_layout_paths_every_isa(kernel_variant, dtype, group, bits, m, with_offset):
    """nn.Linear-layout weights (x2 = weight.t(), int8 or int32-packed int4): small M runs the fused
    GEMV (up to wq_gemv_max_rows: 4, or 8 / 16 with the vdpbf16ps GEMV), larger M dequantizes W'
    panels (same kernel roundings) for a dense GEMM."""
    gen = torch.Generator().manual_seed(6)
    k, n = 200 if group == 0 else 192, 40  # 200: a k tail past the last 64-k step
    x = torch.randn(m, k, generator=gen).to(dtype)
    lo, hi = (-128, 128) if bits == 8 else (-8, 8)
    w_nk = torch.randint(lo, hi, (n, k), dtype=torch.int8, generator=gen)
    stored = w_nk if bits == 8 else torch_qdev.npu_convert_weight_to_int4pack(w_nk.to(torch.int32))  # (n, k/8)
    shape = (n,) if group == 0 else (k // group, n)
    scale = (torch.rand(shape, generator=gen) * (0.02 if bits == 8 else 0.3)).to(dtype)
    offset = torch.randn(shape, generator=gen).to(dtype) if with_offset else None
    qoffset = offset.qdev() if with_offset else None
    got = torch_qdev.npu_weight_quant_batchmatmul(x.qdev(), stored.qdev().t(), scale.qdev(), qoffset,
                                                  antiquant_group_size=group)
    big_x = torch.cat([x, torch.randn(30, k, generator=gen).to(dtype)])  # M = 37: panels + GEMM
    big = torch_qdev.npu_weight_quant_batchmatmul(big_x, stored.t(), scale, offset, antiquant_group_size=group)
    torch_qdev._C._set_cpu_isa("ref")
    big_ref = torch_qdev.npu_weight_quant_batchmatmul(big_x, stored.t(), scale, offset, antiquant_group_size=group)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3  # fp32 summation order differs from the golden's
    torch.testing.assert_close(got.cpu(), golden(x, w_nk.t(), scale, offset, group=group), rtol=tol, atol=tol)
    torch.testing.assert_close(big, golden(big_x, w_nk.t(), scale, offset, group=group), rtol=tol, atol=tol)
    assert torch.equal(big, big_ref)  # every ISA's dequantization writes the same W' bits


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_linear_layout_prefill_with_bias_groups_and_requant(dtype):
    """The panel path with bias (fp32 GEMM), 3-D x, several panels (k large enough for 64-row panels
    to split n), and int8 requant output."""
    gen = torch.Generator().manual_seed(7)
    k, n = 16384 + 128, 200  # 2 MiB / (2 k) < 64: panels of 64 columns, 4 of them
    x = (torch.randn(2, 9, k, generator=gen) * 0.1).to(dtype)
    w_nk = torch.randint(-8, 8, (n, k), dtype=torch.int8, generator=gen)
    packed = torch_qdev.npu_convert_weight_to_int4pack(w_nk.to(torch.int32))
    scale = (torch.rand(k // 128, n, generator=gen) * 0.05).to(dtype)
    bias = torch.randn(n, generator=gen).to(dtype)
    got = torch_qdev.npu_weight_quant_batchmatmul(x.qdev(), packed.qdev().t(), scale.qdev(), bias=bias.qdev(),
                                                  antiquant_group_size=128)
    expected = golden(x, w_nk.t(), scale, bias=bias, group=128)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(got.cpu(), expected, rtol=tol, atol=tol)
    qs = torch.tensor([0.25])
    got8 = torch_qdev.npu_weight_quant_batchmatmul(x, packed.t(), scale, bias=bias, antiquant_group_size=128,
                                                   quant_scale=qs)
    want8 = torch.round(golden(x, w_nk.t(), scale, bias=bias, group=128, keep_fp32=True) * 0.25).clamp(-128, 127)
    assert got8.dtype == torch.int8 and (got8.float() - want8).abs().max() <= 1  # a rounding tie may flip
