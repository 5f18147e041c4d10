"""Property-based tests of valid inputs (hypothesis): every quantized op against its plain-
PyTorch reference over the argument space (shapes with tails, dtypes, scale kinds, batch
broadcast on both sides, formats), on every CPU kernel variant the machine runs. Bit-exact
where the formula is exact; within the stated bound where the summation order is free.
The hand-picked cases and the default-variant fuzz tests live beside each op's tests; these
add the variant axis and the parts of the argument space those do not draw."""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import torch_qdev
import quant_reference as ref
from conftest import ISAS, cpu_isa

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def rand_i8(shape, gen):
    return torch.randint(-128, 128, shape, dtype=torch.int8, generator=gen)


# ---------------------------------------------------------------- A8W8 / A4W4

# (output dtype, scale kind, pertoken, bias dtype): every combination torch_npu documents.
A8W8_KINDS = [
    (torch.int8, "f32", False, None), (torch.int8, "f32+offset", False, torch.int32), (torch.int8, "i64+offset", False, None),
    (torch.float16, "f32", False, torch.int32), (torch.float16, "i64", False, None),
    (torch.float16, "f32", True, torch.float16), (torch.float16, "f32", True, torch.float32),
    (torch.bfloat16, "f32", False, torch.int32), (torch.bfloat16, "bf16", True, torch.bfloat16),
    (torch.bfloat16, "f32", True, torch.float32), (torch.int32, "f32", False, torch.int32),
    (torch.int32, "bf16", False, None),
]


def a8w8_args(m, k, n, kind, per_channel, gen):
    out, sk, pertoken, bdt = kind
    ns = n if per_channel else 1
    scale_f = torch.rand(ns, generator=gen) * 0.02 + 0.001
    offset = torch.randn(ns, generator=gen) * 20 if "offset" in sk else None
    if sk.startswith("i64"):
        scale, offset = torch_qdev.npu_trans_quant_param(scale_f, offset), None
    else:
        scale = scale_f.to(torch.bfloat16 if sk == "bf16" else torch.float32)
    kw = dict(offset=offset, pertoken_scale=torch.rand(m, generator=gen) + 0.5 if pertoken else None,
              output_dtype=out, bias=None)
    if bdt == torch.int32:
        kw["bias"] = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=gen)
    elif bdt is not None:
        kw["bias"] = (torch.randn(n, generator=gen) * 10).to(bdt)
    return scale, kw


@settings(max_examples=30, **SETTINGS)
@given(isa=st.sampled_from(ISAS), m=st.integers(1, 40), k=st.integers(1, 300), n=st.integers(1, 90),
       b1=st.sampled_from([(), (1,), (2,), (3, 1), (1, 2)]), b2=st.sampled_from([(), (1,), (2,), (1, 2)]),
       layout=st.sampled_from(["contiguous", "transposed", "nz"]), kind=st.sampled_from(A8W8_KINDS),
       per_channel=st.booleans(), bias3d=st.booleans(), device=st.sampled_from(["cpu", "qdev"]),
       seed=st.integers(0, 2**31 - 1))
def test_a8w8_every_isa(isa, m, k, n, b1, b2, layout, kind, per_channel, bias3d, device, seed):
    """Batch broadcast on both operands, every output stage and scale kind, x2 plain /
    transposed / FRACTAL_NZ: bit-exact with the golden on every kernel variant."""
    gen = torch.Generator().manual_seed(seed)
    try:
        batch = torch.broadcast_shapes(b1, b2)
    except RuntimeError:
        return
    x1, x2 = rand_i8((*b1, m, k), gen), rand_i8((*b2, k, n), gen)
    scale, kw = a8w8_args(m, k, n, kind, per_channel, gen)
    if bias3d and len(batch) == 1 and kw["bias"] is not None:  # per-batch bias (batch, 1, n)
        kw["bias"] = torch.stack([kw["bias"]] + [kw["bias"] * 2] * (batch[0] - 1)).unsqueeze(1)
    expected = ref.quant_matmul(x1, x2, scale, **kw)
    if layout == "nz" and (device != "qdev" or x2.dim() != 2):
        layout = "transposed"
    q2 = x2.to(device)
    if layout == "transposed":
        q2 = x2.transpose(-1, -2).contiguous().to(device).transpose(-1, -2)
    elif layout == "nz":
        prev_fmt = torch.qdev.config.allow_internal_format
        torch.qdev.config.allow_internal_format = True
        try:
            q2 = torch_qdev.npu_format_cast(q2, 29)
        finally:
            torch.qdev.config.allow_internal_format = prev_fmt
    kwd = {key: (v.to(device) if isinstance(v, torch.Tensor) else v) for key, v in kw.items()}
    with cpu_isa(isa):
        got = torch_qdev.npu_quant_matmul(x1.to(device), q2, scale.to(device), **kwd)
    assert got.shape == (*batch, m, n) and got.dtype == expected.dtype
    assert torch.equal(got.cpu(), expected)


@settings(max_examples=20, **SETTINGS)
@given(isa=st.sampled_from(ISAS), m=st.integers(1, 30), k8=st.integers(1, 40), n8=st.integers(1, 12),
       k_packed=st.booleans(), pertoken=st.booleans(), batch=st.sampled_from([(), (2,)]),
       seed=st.integers(0, 2**31 - 1))
def test_a4w4_every_isa(isa, m, k8, n8, k_packed, pertoken, batch, seed):
    """int32-packed int4 operands (x2 packed along n, or the transpose of one packed along k)."""
    gen = torch.Generator().manual_seed(seed)
    k, n = 8 * k8, 8 * n8
    xv = torch.randint(-8, 8, (*batch, m, k), generator=gen)
    wv = torch.randint(-8, 8, (k, n), generator=gen)
    x1 = ref.pack_int4(xv)
    x2 = ref.pack_int4(wv.t().contiguous()).t() if k_packed else ref.pack_int4(wv)
    scale = torch.rand(n, generator=gen) * 0.01 + 0.001
    kw = dict(output_dtype=torch.bfloat16, pertoken_scale=torch.rand(m, generator=gen) + 0.5) if pertoken else \
        dict(output_dtype=torch.float16)
    expected = ref.quant_matmul(xv.to(torch.int8), wv.to(torch.int8), scale, **kw)
    with cpu_isa(isa):
        got = torch_qdev.npu_quant_matmul(x1.qdev(), x2.qdev(), scale.qdev(),
                                          **{key: (v.qdev() if isinstance(v, torch.Tensor) else v)
                                             for key, v in kw.items()})
    assert torch.equal(got.cpu(), expected)


@settings(max_examples=15, **SETTINGS)
@given(isa=st.sampled_from(ISAS), m=st.integers(1, 12), groups=st.integers(1, 3), group=st.sampled_from([32, 64, 256]),
       n8=st.integers(1, 10), with_offset=st.booleans(), out=st.sampled_from([torch.float16, torch.bfloat16]),
       seed=st.integers(0, 2**31 - 1))
def test_a8w4_every_isa(isa, m, groups, group, n8, with_offset, out, seed):
    """A8W4 bit for bit with torch_npu's golden over group counts, group sizes and n tails."""
    from test_a8w4 import decoded, golden

    gen = torch.Generator().manual_seed(seed)
    k, n = groups * group, 8 * n8
    x1 = rand_i8((m, k), gen)
    w = torch.randint(-8, 8, (k, n), dtype=torch.int32, generator=gen)
    scale = torch_qdev.npu_trans_quant_param((torch.rand(groups * n, generator=gen) * 0.05 + 0.001)).reshape(groups, n)
    pertoken = torch.rand(m, 1, generator=gen) * 0.02
    y_offset = torch.randn(n, generator=gen) if with_offset else None
    with cpu_isa(isa):
        got = torch_qdev.npu_quant_matmul(x1.qdev(), torch_qdev.npu_convert_weight_to_int4pack(w).qdev(),
                                          scale.qdev(), offset=y_offset.qdev() if with_offset else None,
                                          pertoken_scale=pertoken.qdev(), output_dtype=out, group_sizes=[0, 0, group])
    assert torch.equal(got.cpu(), golden(x1, w, decoded(scale), pertoken, y_offset, group, out))


# ---------------------------------------------------------------- npu_dynamic_quant


@settings(max_examples=80, **SETTINGS)
@given(isa=st.sampled_from(ISAS), lead=st.sampled_from([(1,), (3,), (2, 5), (17,)]), h8=st.integers(1, 40),
       dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
       mode=st.sampled_from(["pertoken", "pertensor", "perchannel", "group_index"]),
       smooth=st.booleans(), asym=st.booleans(), int4=st.booleans(), dst_max=st.sampled_from([0.0, 1.0, 5.0, 63.0]),
       zero_row=st.booleans(), device=st.sampled_from(["cpu", "qdev"]), seed=st.integers(0, 2**31 - 1))
def test_dynamic_quant_every_isa(isa, lead, h8, dtype, mode, smooth, asym, int4, dst_max, zero_row, device, seed):
    """Every quant_mode, smooth scales and MoE group_index, int8 / int4 outputs, symmetric and
    asymmetric, dst_type_max: bit-exact with the formula (h = 8 * h8 covers every lane tail)."""
    gen = torch.Generator().manual_seed(seed)
    h = 8 * h8
    x = (torch.randn(*lead, h, generator=gen) * 4).to(dtype)
    if zero_row:
        x.view(-1, h)[0] = 0
    rows = x.numel() // h
    dmax = (7.0 if int4 else 127.0) if dst_max == 0.0 or (int4 and dst_max > 7) else dst_max
    kwargs = dict(dst_type=torch.quint4x2 if int4 else None, dst_type_max=0.0 if dmax in (7.0, 127.0) else dmax)
    smooth_t = group_index = None
    if mode == "group_index":
        ends = sorted(torch.randint(0, rows + 1, (2,), generator=gen).tolist()) + [rows]
        group_index = torch.tensor(ends, dtype=torch.int32)
        smooth_t = (torch.rand(3, h, generator=gen) + 0.5).to(dtype)
        kwargs.update(smooth_scales=smooth_t, group_index=group_index)
    else:
        kwargs["quant_mode"] = mode
        if smooth:
            smooth_t = (torch.rand(x.shape[-2] if mode == "perchannel" else h, generator=gen) + 0.5).to(dtype)
            kwargs["smooth_scales"] = smooth_t
    ey, es, eo = ref.dynamic_quant_modes(x, smooth_t, group_index, asym, "pertoken" if mode == "group_index" else mode,
                                         dmax, -dmax - 1.0)
    op = torch_qdev.npu_dynamic_quant_asymmetric if asym else torch_qdev.npu_dynamic_quant
    with cpu_isa(isa):
        got = op(x.to(device), **{key: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                  for key, v in kwargs.items()})
    y = ref.unpack_int4(got[0].cpu()) if int4 else got[0].cpu()
    assert torch.equal(y, ey.to(torch.int8))
    assert torch.equal(got[1].cpu(), es)
    if asym:
        assert torch.equal(got[2].cpu(), eo)


# ---------------------------------------------------------------- weight-only A16W8 / A16W4


@settings(max_examples=25, **SETTINGS)
@given(isa=st.sampled_from(ISAS), m=st.integers(1, 40), k32=st.integers(1, 8), n=st.integers(1, 72),
       bits=st.sampled_from([8, 4]), group=st.sampled_from([0, 32, 64]), layout=st.sampled_from(["kn", "linear"]),
       dtype=st.sampled_from([torch.float16, torch.bfloat16]), with_offset=st.booleans(), with_bias=st.booleans(),
       batch=st.sampled_from([(), (2,)]), seed=st.integers(0, 2**31 - 1))
def test_weight_quant_every_isa(isa, m, k32, n, bits, group, layout, dtype, with_offset, with_bias, batch, seed):
    """Weight (k, n) or nn.Linear layout (the transposed (n, k) weight), int8 or int32-packed int4,
    per-channel / per-group scales and offsets, bias, batched x: within the stated bound of the
    golden (the fp32 summation order of the GEMV / GEMM is free)."""
    from test_weight_quant import golden

    gen = torch.Generator().manual_seed(seed)
    k = 32 * k32 + (32 if group else 0)
    if group and k % group:
        k += group - k % group
    if group and group >= k:
        group = 0
    if bits == 4:
        n = (n + 7) // 8 * 8
    x = torch.randn(*batch, m, k, generator=gen).to(dtype)
    lo, hi = (-128, 128) if bits == 8 else (-8, 8)
    w_kn = torch.randint(lo, hi, (k, n), dtype=torch.int32, generator=gen)
    if bits == 8:
        stored = w_kn.to(torch.int8) if layout == "kn" else w_kn.t().contiguous().to(torch.int8).t()
    else:
        stored = ref.pack_int4(w_kn) if layout == "kn" else ref.pack_int4(w_kn.t().contiguous()).t()
    shape = (k // group, n) if group else (n,)
    scale = (torch.rand(shape, generator=gen) * (0.02 if bits == 8 else 0.3)).to(dtype)
    offset = torch.randn(shape, generator=gen).to(dtype) if with_offset else None
    bias = torch.randn(n, generator=gen).to(dtype if dtype == torch.float16 else torch.float32) if with_bias else None
    with cpu_isa(isa):
        got = torch_qdev.npu_weight_quant_batchmatmul(
            x.qdev(), stored.qdev(), scale.qdev(), offset.qdev() if with_offset else None,
            bias=bias.qdev() if with_bias else None, antiquant_group_size=group)
    expected = golden(x, w_kn.to(torch.int8), scale, offset, bias, group)
    tol = 1e-2 if dtype == torch.bfloat16 else 3e-3
    assert got.shape == expected.shape and got.dtype == dtype
    torch.testing.assert_close(got.cpu(), expected, rtol=tol, atol=tol)


# ---------------------------------------------------------------- W4A8 dynamic


@settings(max_examples=25, **SETTINGS)
@given(isa=st.sampled_from(ISAS), lead=st.sampled_from([(1,), (3,), (2, 4), (17,), (0,)]), kg=st.integers(1, 5),
       n=st.integers(1, 70), grouped=st.booleans(), with_bias=st.booleans(),
       xdtype=st.sampled_from([torch.float32, torch.bfloat16]), device=st.sampled_from(["cpu", "qdev"]),
       seed=st.integers(0, 10_000))
def test_w4a8_every_isa(isa, lead, kg, n, grouped, with_bias, xdtype, device, seed):
    """dyn_quant_matmul_4bit on every variant, batched and bf16 inputs included: bit-exact with
    the emulator of PyTorch's numerics (bf16: the float32 result truncated, as PyTorch)."""
    from torch_qdev.contrib.module.linear_w4a8_dynamic import quantize_int4_symmetric

    K = 32 * kg
    gs = 32 if grouped else K
    gen = torch.Generator().manual_seed(seed)
    w_u8, s = quantize_int4_symmetric(torch.randn(n, K, generator=gen), gs)
    s = s.float() if gs == K else s.bfloat16()  # PyTorch's convention
    bias = torch.randn(n, generator=gen) if with_bias else None
    x = torch.randn(*lead, K, generator=torch.Generator().manual_seed(seed)).to(xdtype)
    with cpu_isa(isa):
        packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8.to(device), s.to(device),
                                                       bias.to(device) if with_bias else None, gs, K, n)
        out = torch_qdev.dyn_quant_matmul_4bit(x.to(device), packed, gs, K, n)
    assert out.shape == (*lead, n) and out.dtype == xdtype
    if x.numel():
        expected = ref.w4a8_emulate(x.reshape(-1, K).float(), w_u8, s, gs, K, n, bias).reshape(*lead, n)
        assert torch.equal(out.cpu(), ref.w4a8_output(expected, xdtype))
