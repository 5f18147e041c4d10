"""npu_trans_quant_param, npu_quant_matmul and npu_dynamic_quant: numerics,
shapes, layouts, errors, opcheck and torch.compile."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

import torch_qdev
import quant_reference as ref

ISAS = torch_qdev._C._supported_cpu_isas()


@pytest.fixture(params=["cpu", "qdev"])
def device(request):
    return request.param


def rand_i8(*shape, gen=None):
    return torch.randint(-128, 128, shape, dtype=torch.int8, generator=gen)


# ---------------------------------------------------------------- trans_quant_param

def test_trans_quant_param_documented_values():
    packed = torch_qdev.npu_trans_quant_param(torch.tensor([1.0458984]), torch.tensor([1.0]))
    assert packed.dtype == torch.int64 and packed.tolist() == [70507248869376]
    assert ref.decode_offset(torch.tensor([140463653937152])).item() == -2
    s = torch.rand(64) * 3 + 0.01
    o = torch.randn(64) * 300
    for mode in (0, 1):
        got = torch_qdev.npu_trans_quant_param(s, o, mode)
        assert torch.equal(got, ref.trans_quant_param(s, o, mode))
    assert torch.equal(torch_qdev.npu_trans_quant_param(s), ref.trans_quant_param(s))


def test_trans_quant_param_rounding_details():
    # round_mode 1 rounds the 13 dropped mantissa bits to nearest even; 0 truncates.
    x = torch.tensor([1 + 2**-10 + 2**-11])  # exactly half an FP19 ulp above 1 + 2^-10
    t0 = ref.decode_scale(torch_qdev.npu_trans_quant_param(x, round_mode=0)).item()
    t1 = ref.decode_scale(torch_qdev.npu_trans_quant_param(x, round_mode=1)).item()
    assert t0 == 1 + 2**-10 and t1 == 1 + 2**-9
    off = torch_qdev.npu_trans_quant_param(torch.ones(4), torch.tensor([0.5, 1.5, -300.0, 300.0]))
    assert ref.decode_offset(off).tolist() == [0, 2, -256, 255]
    assert ((off >> 46) & 1).eq(1).all()


def test_trans_quant_param_shapes(device):
    s = torch.rand(1, 8, device=device)
    assert torch_qdev.npu_trans_quant_param(s).shape == (1, 8)
    out = torch_qdev.npu_trans_quant_param(torch.rand(1, device=device), torch.randn(5, device=device))
    assert out.shape == (5,) and out.device.type == device
    with pytest.raises(RuntimeError, match=r"the scale shape support only \(1, \) and \(1, n\)"):
        torch_qdev.npu_trans_quant_param(torch.rand(2, 3, device=device))
    with pytest.raises(RuntimeError, match="offset first dim should be equal to scale first dim"):
        torch_qdev.npu_trans_quant_param(torch.rand(3, device=device), torch.rand(4, device=device))
    with pytest.raises(RuntimeError, match="shape of scale and offset should be equal"):
        torch_qdev.npu_trans_quant_param(torch.rand(1, 3, device=device), torch.rand(3, device=device))
    with pytest.raises(RuntimeError, match="round_mode must be 0 or 1. but now is 2"):
        torch_qdev.npu_trans_quant_param(torch.rand(3, device=device), round_mode=2)


# ---------------------------------------------------------------- quant_matmul

CASES = [
    # (output_dtype, scale dtype, with offset, pertoken, bias dtype)
    (None, torch.float32, False, False, None),
    (torch.int8, torch.float32, True, False, torch.int32),
    (torch.int8, torch.int64, True, False, None),
    (torch.float16, torch.float32, False, False, torch.int32),
    (torch.float16, torch.int64, False, False, None),
    (torch.bfloat16, torch.float32, False, False, torch.int32),
    (torch.bfloat16, torch.bfloat16, False, True, torch.bfloat16),
    (torch.bfloat16, torch.float32, False, True, torch.float32),
    (torch.float16, torch.float32, False, True, torch.float16),
    (torch.float16, torch.float32, False, True, torch.float32),
    (torch.int32, torch.float32, False, False, torch.int32),
    (torch.int32, torch.bfloat16, False, False, None),
]


def make_args(m, k, n, case, per_channel=True, gen=None):
    out, sdt, with_offset, pertoken, bdt = case
    x1, x2 = rand_i8(m, k, gen=gen), rand_i8(k, n, gen=gen)
    ns = n if per_channel else 1
    scale_f = torch.rand(ns, generator=gen) * 0.02 + 0.001
    offset = torch.randn(ns, generator=gen) * 20 if with_offset else None
    if sdt == torch.int64:
        scale = torch_qdev.npu_trans_quant_param(scale_f, offset)
        offset = None
    else:
        scale = scale_f.to(sdt)
    pt = torch.rand(m, generator=gen) + 0.5 if pertoken else None
    bias = None
    if bdt == torch.int32:
        bias = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=gen)
    elif bdt is not None:
        bias = (torch.randn(n, generator=gen) * 10).to(bdt)
    return x1, x2, scale, dict(offset=offset, pertoken_scale=pt, bias=bias, output_dtype=out)


def to(device, args, kwargs):
    return ([a.to(device) for a in args],
            {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(x).replace("torch.", "") for x in c))
def test_quant_matmul_matches_golden_exactly(case, device):
    gen = torch.Generator().manual_seed(0)
    x1, x2, scale, kw = make_args(19, 100, 70, case, gen=gen)
    expected = ref.quant_matmul(x1, x2, scale, **kw)
    (a, b, s), kwd = to(device, (x1, x2, scale), kw)
    got = torch_qdev.npu_quant_matmul(a, b, s, **kwd)
    assert got.device.type == device and got.dtype == expected.dtype and got.shape == (19, 70)
    assert torch.equal(got.cpu(), expected)


def test_quant_matmul_close_to_float_math():
    """torch_npu's own tests compare with the untruncated float formula at 1% tolerance."""
    gen = torch.Generator().manual_seed(1)
    x1, x2 = rand_i8(32, 256, gen=gen), rand_i8(256, 48, gen=gen)
    scale = torch.rand(48, generator=gen) * 1e-3 + 1e-4
    got = torch_qdev.npu_quant_matmul(x1, x2, scale, output_dtype=torch.float16)
    exact = (x1.double() @ x2.double()) * scale.double()
    torch.testing.assert_close(got.double(), exact, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(1, 16, 32), (1, 7, 5), (8, 64, 64), (9, 33, 31), (17, 200, 100)])
@pytest.mark.parametrize("out", [torch.int32, torch.int8, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("w_min", [-128, -127], ids=["full-range-w", "symmetric-w"])
def test_every_isa_matches_reference(isa, m, k, n, out, w_min):
    """symmetric-w (no -128 in the weight) takes AVX2's sign-trick path; -128 keeps the int16 path."""
    gen = torch.Generator().manual_seed(m * 1000 + k * 10 + n)
    x1 = rand_i8(m, k, gen=gen)
    x2 = torch.randint(w_min, 128, (k, n), dtype=torch.int8, generator=gen)
    scale = torch.rand(n, generator=gen) * 0.01
    kw = dict(output_dtype=out)
    if out == torch.bfloat16:
        kw.update(pertoken_scale=torch.rand(m, generator=gen) + 0.5, bias=torch.randn(n, generator=gen))
    elif out != torch.int32:
        kw.update(bias=torch.randint(-500, 500, (n,), dtype=torch.int32, generator=gen))
    if out == torch.int8:
        kw.update(offset=torch.randn(n, generator=gen) * 10)
    previous = torch_qdev._C._get_cpu_isa()
    try:
        assert torch_qdev._C._set_cpu_isa("ref")
        expected = torch_qdev.npu_quant_matmul(x1, x2, scale, **kw)
        assert torch_qdev._C._set_cpu_isa(isa)
        got = torch_qdev.npu_quant_matmul(x1, x2, scale, **kw)
    finally:
        torch_qdev._C._set_cpu_isa(previous)
    assert torch.equal(got, expected)
    assert torch.equal(expected, ref.quant_matmul(x1, x2, scale, **kw))


def test_x2_layouts_transposed_and_nz():
    gen = torch.Generator().manual_seed(2)
    x1 = rand_i8(5, 96, gen=gen)
    w = rand_i8(40, 96, gen=gen)  # (n, k), as nn.Linear stores it
    scale = torch.rand(40, generator=gen) * 0.01
    expected = ref.quant_matmul(x1, w.t(), scale, output_dtype=torch.float16)
    got_t = torch_qdev.npu_quant_matmul(x1.qdev(), w.qdev().t(), scale.qdev(), output_dtype=torch.float16)
    nz = torch_qdev.npu_format_cast(w.t().contiguous().qdev(), 29)
    got_nz = torch_qdev.npu_quant_matmul(x1.qdev(), nz, scale.qdev(), output_dtype=torch.float16)
    assert torch.equal(got_t.cpu(), expected) and torch.equal(got_nz.cpu(), expected)


def test_batch_broadcast_and_3d_bias():
    gen = torch.Generator().manual_seed(3)
    x1 = rand_i8(3, 4, 32, gen=gen)
    x2 = rand_i8(32, 24, gen=gen)
    bias = torch.randint(-50, 50, (3, 1, 24), dtype=torch.int32, generator=gen)
    scale = torch.tensor([0.01])
    got = torch_qdev.npu_quant_matmul(x1.qdev(), x2.qdev(), scale.qdev(), bias=bias.qdev(),
                                      output_dtype=torch.bfloat16)
    assert got.shape == (3, 4, 24)
    assert torch.equal(got.cpu(), ref.quant_matmul(x1, x2, scale, bias=bias, output_dtype=torch.bfloat16))
    x1b, x2b = rand_i8(2, 1, 3, 16, gen=gen), rand_i8(5, 16, 8, gen=gen)
    got = torch_qdev.npu_quant_matmul(x1b, x2b, scale, output_dtype=torch.int32)
    assert got.shape == (2, 5, 3, 8)
    assert torch.equal(got, ref.quant_matmul(x1b, x2b, scale, output_dtype=torch.int32))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,k,n", [(6, 64, 48), (13, 200, 72), (1, 8, 8)])
def test_a4w4_both_packings(isa, m, k, n):
    """ref and avx512vnni run the in-register nibble kernel, avx2 the unpack-to-int8 path."""
    gen = torch.Generator().manual_seed(4 + m)
    previous = torch_qdev._C._get_cpu_isa()
    torch_qdev._C._set_cpu_isa(isa)
    try:
        _check_a4w4(gen, m, k, n)
    finally:
        torch_qdev._C._set_cpu_isa(previous)


def _check_a4w4(gen, m, k, n):
    a = torch.randint(-8, 8, (m, k), generator=gen)
    w = torch.randint(-8, 8, (k, n), generator=gen)
    scale = torch.rand(n, generator=gen) * 0.05
    expected = ref.quant_matmul(a.to(torch.int8), w.to(torch.int8), scale, output_dtype=torch.float16)
    x1 = ref.pack_int4(a)
    n_packed = ref.pack_int4(w)                  # (k, n/8)
    k_packed = ref.pack_int4(w.t().contiguous()).t()  # (k/8, n) view of (n, k/8)
    for x2 in (n_packed, k_packed):
        got = torch_qdev.npu_quant_matmul(x1.qdev(), x2.qdev(), scale.qdev(), output_dtype=torch.float16)
        assert got.shape == (m, n) and torch.equal(got.cpu(), expected)
    pt = torch.rand(m, generator=gen) + 0.5
    got = torch_qdev.npu_quant_matmul(x1, n_packed, scale, pertoken_scale=pt, output_dtype=torch.bfloat16)
    assert torch.equal(got, ref.quant_matmul(a.to(torch.int8), w.to(torch.int8), scale, pertoken_scale=pt,
                                             output_dtype=torch.bfloat16))


def test_empty_and_zero_k():
    out = torch_qdev.npu_quant_matmul(rand_i8(0, 16).qdev(), rand_i8(16, 8).qdev(), torch.ones(1).qdev(),
                                      output_dtype=torch.float16)
    assert out.shape == (0, 8)
    z = torch_qdev.npu_quant_matmul(rand_i8(3, 0), rand_i8(0, 5), torch.ones(1), output_dtype=torch.int32)
    assert torch.equal(z, torch.zeros(3, 5, dtype=torch.int32))


ERRORS = [
    (dict(x1=rand_i8(4), x2=rand_i8(4, 4)), "x1 dim num should be 2 ~ 6, please check x1 dim num"),
    (dict(x2=rand_i8(5, 4)), "k dim of x1 and x2 need be same, please check k dim of x1 and x2"),
    (dict(scale=torch.ones(3)), "the scale 1st dim value must be 1 or x2 n dim value"),
    (dict(scale=torch.ones(1, 4)), "the scale dim num must be 1, please check scale dim num"),
    (dict(bias=torch.ones(4, dtype=torch.int64)), "bias's type supported for int32, bfloat16, float16 and float32"),
    (dict(bias=torch.ones(5, dtype=torch.int32)), "bias_first_dim should be equal to x2 n dim"),
    (dict(bias=torch.ones(1, 4, dtype=torch.int32)), "bias_dim_num should be 1 or 3 when x1's dtype is int8"),
    (dict(bias=torch.ones(4, dtype=torch.bfloat16), output_dtype=torch.float16),
     "When bias dtype is bfloat16, output_dtype must be bfloat16"),
    (dict(bias=torch.ones(4, dtype=torch.float16), output_dtype=torch.float16),
     "Bias dtype cannot be float16 when pertoken not given."),
    (dict(scale=torch.ones(4, dtype=torch.bfloat16), output_dtype=torch.float16),
     "When scale's dtype is bfloat16, output_dtype must be bfloat16 or int32"),
    (dict(offset=torch.ones(4, dtype=torch.float16)), "offset's type supported for float32"),
    (dict(offset=torch.ones(3)), "the offset 1st dim value must be 1 or x2 n dim value"),
    (dict(output_dtype=torch.float64), "Not supported output dtype is torch.float64"),
    (dict(pertoken_scale=torch.ones(2, 1), output_dtype=torch.bfloat16),
     "the pertoken_scale dim num must be 1"),
    (dict(group_sizes=[1, 2]), "group_sizes's length must be 3"),
    (dict(x1=rand_i8(2, 3, 4), x2=rand_i8(4, 4, 4)), "cannot be broadcast|must match|size of tensor"),
]


@pytest.mark.parametrize("overrides,message", ERRORS, ids=range(len(ERRORS)))
def test_error_messages(overrides, message, device):
    args = dict(x1=rand_i8(3, 4), x2=rand_i8(4, 4), scale=torch.ones(1))
    args.update(overrides)
    x1, x2, scale = (args.pop(k).to(device) for k in ("x1", "x2", "scale"))
    kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    with pytest.raises(RuntimeError, match=message):
        torch_qdev.npu_quant_matmul(x1, x2, scale, **kw)


def test_ascend950_features_are_refused_clearly():
    x1, x2 = rand_i8(3, 4), rand_i8(4, 4)
    with pytest.raises(NotImplementedError, match="Ascend 950"):
        torch_qdev.npu_quant_matmul(x1, x2, torch.ones(1), output_dtype=290)
    with pytest.raises(NotImplementedError, match="Ascend 950"):
        torch_qdev.npu_quant_matmul(x1, x2, torch.ones(1), x1_dtype=296)
    with pytest.raises(NotImplementedError, match="Ascend 950"):
        torch_qdev.npu_quant_matmul(x1.to(torch.float8_e4m3fn), x2.to(torch.float8_e4m3fn), torch.ones(1))


def test_mixed_devices_rejected():
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.npu_quant_matmul(rand_i8(3, 4).qdev(), rand_i8(4, 4), torch.ones(1).qdev())


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 20), k=st.integers(1, 80), n=st.integers(1, 70), batch=st.integers(0, 2),
       layout=st.sampled_from(["contiguous", "transposed", "nz"]),
       case=st.sampled_from(CASES), seed=st.integers(0, 2**31 - 1))
def test_fuzz_quant_matmul(m, k, n, batch, layout, case, seed):
    gen = torch.Generator().manual_seed(seed)
    x1, x2, scale, kw = make_args(m, k, n, case, per_channel=bool(seed % 2), gen=gen)
    if batch:
        x1 = torch.stack([x1] + [rand_i8(m, k, gen=gen) for _ in range(batch)])
    expected = ref.quant_matmul(x1, x2, scale, **kw)
    qx2 = x2.qdev()
    if layout == "transposed":
        qx2 = x2.t().contiguous().qdev().t()
    elif layout == "nz":
        qx2 = torch_qdev.npu_format_cast(qx2, 29)
    (a, s), kwd = to("qdev", (x1, scale), kw)
    got = torch_qdev.npu_quant_matmul(a, qx2, s, **kwd)
    assert torch.equal(got.cpu(), expected)


def test_opcheck():
    x1, x2 = rand_i8(4, 32), rand_i8(32, 16)
    for device in ("cpu", "qdev"):
        torch.library.opcheck(torch.ops.qdev.npu_quant_matmul.default,
                              (x1.to(device), x2.to(device), torch.rand(16).to(device)),
                              {"output_dtype": 15, "pertoken_scale": torch.rand(4).to(device)})
        torch.library.opcheck(torch.ops.qdev.npu_trans_quant_param.default, (torch.rand(8).to(device),))
        torch.library.opcheck(torch.ops.qdev.npu_dynamic_quant.default, (torch.randn(4, 16).half().to(device),))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend):
    torch._dynamo.reset()
    x = torch.randn(4, 64, dtype=torch.float16, device="qdev")
    w = rand_i8(64, 32).qdev()
    scale = (torch.rand(32) * 0.01).qdev()

    def fn(x, w, scale):
        q, s = torch.ops.qdev.npu_dynamic_quant(x)
        y = torch.ops.qdev.npu_quant_matmul(q, w, scale, pertoken_scale=s, output_dtype=torch.bfloat16)
        return torch.relu(y)

    expected = fn(x, w, scale)
    got = torch.compile(fn, backend=backend, fullgraph=True)(x, w, scale)
    assert torch.equal(got.cpu(), expected.cpu())
    torch._dynamo.reset()


# ---------------------------------------------------------------- dynamic_quant

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dynamic_quant_pertoken(dtype, device):
    x = (torch.randn(3, 5, 64) * 4).to(dtype)
    smooth = (torch.rand(64) + 0.5).to(dtype)
    y, scale = torch_qdev.npu_dynamic_quant(x.to(device), smooth_scales=smooth.to(device))
    ey, es = ref.dynamic_quant(x, smooth)
    assert y.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (3, 5)
    assert torch.equal(scale.cpu(), es) and torch.equal(y.cpu(), ey.to(torch.int8))


def test_dynamic_quant_documented_example():
    y, s = torch_qdev.npu_dynamic_quant(torch.tensor([[0.7261, 0.3726, 0.9126]], dtype=torch.float16))
    assert y.tolist() == [[101, 52, 127]]
    assert abs(s.item() - 0.9126 / 127) < 1e-5


def test_dynamic_quant_asymmetric_and_int4():
    x = torch.randn(6, 32).half()
    y, s, o = torch_qdev.npu_dynamic_quant_asymmetric(x)
    ey, es, eo = ref.dynamic_quant(x, asymmetric=True)
    assert torch.equal(y, ey.to(torch.int8)) and torch.equal(s, es) and torch.equal(o, eo)
    y4, s4 = torch_qdev.npu_dynamic_quant(x.qdev(), dst_type=torch.quint4x2)
    assert y4.dtype == torch.int32 and y4.shape == (6, 4)
    ey4, es4 = ref.dynamic_quant(x, dst_max=7.0, dst_min=-8.0)
    assert torch.equal(ref.unpack_int4(y4.cpu()), ey4.to(torch.int8)) and torch.equal(s4.cpu(), es4)


def test_dynamic_quant_modes_and_moe():
    x = torch.randn(2, 4, 8).half()
    y, s = torch_qdev.npu_dynamic_quant(x, quant_mode="pertensor")
    assert s.shape == (1,)
    assert abs(s.item() - x.float().abs().max().item() / 127) < 1e-6
    y, s = torch_qdev.npu_dynamic_quant(x, quant_mode="perchannel")
    assert s.shape == (2, 8)
    torch.testing.assert_close(s, x.float().abs().amax(-2) * (1 / 127))
    rows = x.reshape(-1, 8)
    smooth = (torch.rand(2, 8) + 0.5).half()
    gi = torch.tensor([3, 8], dtype=torch.int32)
    y, s = torch_qdev.npu_dynamic_quant(x, smooth_scales=smooth, group_index=gi)
    expect = torch.cat([ref.dynamic_quant(rows[:3], smooth[0])[1], ref.dynamic_quant(rows[3:], smooth[1])[1]])
    assert torch.equal(s.reshape(-1), expect)
    with pytest.raises(RuntimeError, match="Input shape dim should be greater than 1"):
        torch_qdev.npu_dynamic_quant(torch.randn(8).half())
    with pytest.raises(RuntimeError, match="Input shape last dim must be divded by 8 when int4 quantization"):
        torch_qdev.npu_dynamic_quant(torch.randn(2, 6).half(), dst_type=torch.quint4x2)


def test_dynamic_quant_zero_row():
    y, s = torch_qdev.npu_dynamic_quant(torch.zeros(2, 16).half())
    assert torch.equal(s, torch.zeros(2)) and torch.equal(y, torch.zeros(2, 16, dtype=torch.int8))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("asymmetric", [False, True])
def test_dynamic_quant_every_isa_matches_reference(isa, dtype, asymmetric):
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(9, 203, generator=gen) * 3).to(dtype)  # 203: a 16-lane tail
    x[4] = 0  # a constant row
    smooth = (torch.rand(203, generator=gen) + 0.5).to(dtype)
    op = torch_qdev.npu_dynamic_quant_asymmetric if asymmetric else torch_qdev.npu_dynamic_quant
    previous = torch_qdev._C._get_cpu_isa()
    try:
        torch_qdev._C._set_cpu_isa("ref")
        expected = op(x, smooth_scales=smooth)
        torch_qdev._C._set_cpu_isa(isa)
        got = op(x.qdev(), smooth_scales=smooth.qdev())
    finally:
        torch_qdev._C._set_cpu_isa(previous)
    for g, e in zip(got, expected):
        assert torch.equal(g.cpu(), e)
    golden = ref.dynamic_quant(x, smooth, asymmetric=asymmetric)
    assert torch.equal(expected[0], golden[0].to(torch.int8)) and torch.equal(expected[1], golden[1])


def test_a4w4_per_group():
    """The A4W4 per-group row: y = pertoken * sum_g (x1_g @ (x2_g - offset_g)) * scale_g."""
    gen = torch.Generator().manual_seed(11)
    m, k, n, group = 4, 512, 32, 256
    a = torch.randint(-8, 8, (m, k), generator=gen)
    w = torch.randint(-8, 8, (k, n), generator=gen)
    scale = torch.rand(k // group, n, generator=gen) * 0.1
    offset = (torch.rand(k // group, n, generator=gen) - 0.5).half()
    pertoken = torch.rand(m, 1, generator=gen) + 0.5
    got = torch_qdev.npu_quant_matmul(ref.pack_int4(a).qdev(), ref.pack_int4(w).qdev(), scale.qdev(),
                                      offset=offset.qdev(), pertoken_scale=pertoken.qdev(),
                                      output_dtype=torch.bfloat16, group_sizes=[1, 1, group])
    expected = sum((a[:, g * group:(g + 1) * group].double()
                    @ (w[g * group:(g + 1) * group].double() - offset[g].double())) * scale[g].double()
                   for g in range(k // group)) * pertoken.double()
    assert got.dtype == torch.bfloat16 and got.shape == (m, n)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-2, atol=1e-2)
    with pytest.raises(RuntimeError, match="A4W4 per-group scale must be float32 of shape"):
        torch_qdev.npu_quant_matmul(ref.pack_int4(a), ref.pack_int4(w), scale[:1], offset=offset[:1],
                                    pertoken_scale=pertoken, output_dtype=torch.bfloat16)


def test_strided_x1_and_second_device():
    gen = torch.Generator().manual_seed(12)
    x1 = rand_i8(40, 6, gen=gen).t()  # (6, 40), non-contiguous
    x2 = rand_i8(40, 24, gen=gen)
    scale = torch.rand(24, generator=gen) * 0.01
    expected = ref.quant_matmul(x1.contiguous(), x2, scale, output_dtype=torch.bfloat16)
    with torch.qdev.device(1):
        got = torch_qdev.npu_quant_matmul(x1.to("qdev:1"), x2.to("qdev:1"), scale.to("qdev:1"),
                                          output_dtype=torch.bfloat16)
    assert got.device == torch.device("qdev:1") and torch.equal(got.cpu(), expected)
    got0 = torch_qdev.npu_quant_matmul(x1.qdev(), torch_qdev.npu_format_cast(x2.to("qdev:1"), 29).to("qdev:0"),
                                       scale.qdev(), output_dtype=torch.bfloat16)
    assert torch.equal(got0.cpu(), expected)
