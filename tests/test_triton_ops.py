"""The Triton CUDA target (torch_qdev.triton) checked on CPU tensors through Triton's interpreter.

Every function is compared with the CPU op (torch.ops.qdev.* on the same CPU tensors): bit for
bit where the CPU op is exact (every A8W8 output stage incl. the int8 requant, A4W4, dynamic
quant, W4A8), within fp32 rounding plus one rounding of the output dtype for the weight-only
matmul (its fp32 sums run in another order). Shapes are small (the interpreter is slow) and
have tails in every dimension against the interpreter's 16x32x32 tiles.

TRITON_INTERPRET must be set before triton is first imported (torch.compile imports it too);
conftest.py sets it for the whole test process when there is no GPU. Where the kernels were
imported compiled (a GPU machine), the module skips: tools/gpu_check.sh runs it in its own
process with TRITON_INTERPRET=1.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="the triton package is not installed (pip install -r requirements-dev.txt)")

import torch_qdev  # noqa: E402,F401
import torch_qdev.triton as tq  # noqa: E402

if not tq.INTERPRET:
    pytest.skip("torch_qdev.triton was imported with compiled kernels in this process; run this file alone "
                "with TRITON_INTERPRET=1 (tools/gpu_check.sh does)", allow_module_level=True)

ops = torch.ops.qdev


def i8(*shape, gen, low=-128, high=128):
    return torch.randint(low, high, shape, dtype=torch.int8, generator=gen)


def assert_bits(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert out.dtype == ref.dtype and out.shape == ref.shape, (out.dtype, ref.dtype, out.shape, ref.shape)
    if out.dtype.is_floating_point:
        a, b = out.contiguous().view(torch.int16 if out.element_size() == 2 else torch.int32), \
            ref.contiguous().view(torch.int16 if ref.element_size() == 2 else torch.int32)
        bad = (a != b).sum().item()
        assert bad == 0, f"{bad} of {out.numel()} values differ; max |diff| {(out.float() - ref.float()).abs().max()}"
    else:
        assert torch.equal(out, ref), f"{(out != ref).sum().item()} of {out.numel()} values differ"


# --- npu_quant_matmul (A8W8) -----------------------------------------------------------------
# (m, k, n): tails against 16 x 32 x 32 tiles in every dimension; k = 520 with m <= 16 takes the
# split-K decode schedule (atomic int32 partial sums, then the output stage kernel).
SHAPES = [(3, 33, 7), (17, 70, 40), (1, 520, 40), (20, 64, 65)]


def _scale(kind: str, n: int, gen):
    s = torch.rand(n, generator=gen) * 2e-2 + 1e-3
    if kind == "f32":
        return s
    if kind == "f32_1":
        return s[:1]
    if kind == "bf16":
        return s.bfloat16()
    off = torch.randint(-20, 20, (n,), generator=gen).float()
    return ops.npu_trans_quant_param(s, off)  # int64 with a packed offset


CASES = {
    # name: (output dtype, scale kind, offset, pertoken, bias dtype)
    "int8_f32_scale_offset": (None, "f32", "col", False, None),
    "int8_i64_scale_int32_bias": (None, "i64", None, False, torch.int32),
    "int8_tensor_scale_offset": (None, "f32_1", "one", False, None),
    "int32_int32_bias": (torch.int32, "f32", None, False, torch.int32),
    "fp16_f32_scale": (torch.float16, "f32", None, False, None),
    "fp16_i64_scale_int32_bias": (torch.float16, "i64", None, False, torch.int32),
    "fp16_pertoken_fp16_bias": (torch.float16, "f32", None, True, torch.float16),
    "fp16_pertoken_f32_bias": (torch.float16, "f32", None, True, torch.float32),
    "bf16_bf16_scale_bias": (torch.bfloat16, "bf16", None, False, torch.bfloat16),
    "bf16_pertoken_f32_bias": (torch.bfloat16, "f32", None, True, torch.float32),
    "bf16_f32_scale_int32_bias": (torch.bfloat16, "f32_1", None, False, torch.int32),
}


def _args(case, m, n, gen):
    out_dt, skind, off, pt, bias_dt = CASES[case]
    kw = dict(output_dtype=out_dt)
    scale = _scale(skind, n, gen)
    if off == "col":
        kw["offset"] = (torch.randn(n, generator=gen) * 30).round() + 0.5 * (torch.rand(n, generator=gen) > 0.5)
    elif off == "one":
        kw["offset"] = torch.tensor([-7.0])
    if pt:
        kw["pertoken_scale"] = torch.rand(m, generator=gen) + 0.5
    if bias_dt is torch.int32:
        kw["bias"] = torch.randint(-5000, 5000, (n,), dtype=torch.int32, generator=gen)
    elif bias_dt is not None:
        kw["bias"] = (torch.randn(n, generator=gen) * 100).to(bias_dt)
    return scale, kw


def _dtype_int(kw):
    kw = dict(kw)
    if kw.get("output_dtype") is not None:
        kw["output_dtype"] = {torch.int8: 1, torch.int32: 3, torch.float16: 5, torch.bfloat16: 15}[kw["output_dtype"]]
    return kw


@pytest.mark.parametrize("case", list(CASES))
def test_quant_matmul_output_stages_bit_exact(case):
    gen = torch.Generator().manual_seed(list(CASES).index(case))
    m, k, n = SHAPES[list(CASES).index(case) % len(SHAPES)]
    x1, x2 = i8(m, k, gen=gen), i8(k, n, gen=gen)
    scale, kw = _args(case, m, n, gen)
    ref = ops.npu_quant_matmul(x1, x2, scale, **_dtype_int(kw))
    assert_bits(tq.npu_quant_matmul(x1, x2, scale, **kw), ref)


def test_quant_matmul_requant_saturates_and_rounds_ties():
    """Accumulators on both sides of the 9-bit intermediate and exact .5 ties (scale 0.5)."""
    gen = torch.Generator().manual_seed(3)
    x1 = torch.tensor([[127] * 32, [-128] * 32, [1] + [0] * 31, [3] + [0] * 31, [-5] + [0] * 31], dtype=torch.int8)
    x2 = i8(32, 20, gen=gen)
    x2[:, 0] = 127
    x2[0, 1], x2[0, 2] = 1, -1
    scale = torch.full((20,), 0.5)
    offset = torch.linspace(-300, 300, 20)
    ref = ops.npu_quant_matmul(x1, x2, scale, offset=offset)
    assert_bits(tq.npu_quant_matmul(x1, x2, scale, offset=offset), ref)
    assert ref.min() == -128 and ref.max() == 127  # the saturation was exercised


@pytest.mark.parametrize("layout", ["x1_batch_x2_shared", "broadcast_both", "bias_per_batch", "six_dims",
                                    "x2_transposed"])
def test_quant_matmul_batches_and_layouts(layout):
    gen = torch.Generator().manual_seed(7)
    m, k, n = 5, 40, 24
    kw = dict(output_dtype=torch.bfloat16)
    scale = torch.rand(n, generator=gen) * 1e-2
    if layout == "x1_batch_x2_shared":
        x1, x2 = i8(2, 3, m, k, gen=gen), i8(k, n, gen=gen)
        kw["pertoken_scale"] = torch.rand(m, generator=gen)
    elif layout == "broadcast_both":
        x1, x2 = i8(2, 1, m, k, gen=gen), i8(1, 3, k, n, gen=gen)
        kw = dict(output_dtype=None)
        scale = ops.npu_trans_quant_param(scale, torch.full((n,), 3.0))
    elif layout == "bias_per_batch":
        x1, x2 = i8(3, m, k, gen=gen), i8(3, k, n, gen=gen)
        kw["bias"] = torch.randn(3, 1, n, generator=gen).bfloat16()
    elif layout == "six_dims":
        x1, x2 = i8(2, 1, 1, 2, m, k, gen=gen), i8(1, 2, 1, 1, k, n, gen=gen)
    else:
        x1, x2 = i8(m, k, gen=gen), i8(n, k, gen=gen).t()  # LinearQuant's (n, k) weight
        kw["bias"] = torch.randint(-100, 100, (n,), dtype=torch.int32, generator=gen)
    ref = ops.npu_quant_matmul(x1, x2, scale, **_dtype_int(kw))
    assert_bits(tq.npu_quant_matmul(x1, x2, scale, **kw), ref)


def test_quant_matmul_split_k_decode_int8():
    """m <= 16 and k >= 512: programs split k and add int32 partial sums atomically."""
    from torch_qdev.triton import quant_matmul as qm
    gen = torch.Generator().manual_seed(11)
    m, k, n = 2, 600, 36
    assert qm.use_split_k(m, n, k, 1, qm._sm_count(torch.empty(0)))
    x1, x2 = i8(m, k, gen=gen), i8(k, n, gen=gen)
    scale = ops.npu_trans_quant_param(torch.rand(n, generator=gen) * 1e-3, torch.full((n,), -2.0))
    assert_bits(tq.npu_quant_matmul(x1, x2, scale), ops.npu_quant_matmul(x1, x2, scale))


@pytest.mark.parametrize("k_packed", [False, True])
def test_quant_matmul_a4w4(k_packed):
    gen = torch.Generator().manual_seed(5)
    m, k, n = 6, 64, 40
    x1 = torch.randint(-2 ** 31, 2 ** 31 - 1, (m, k // 8), dtype=torch.int32, generator=gen)
    if k_packed:
        x2 = torch.randint(-2 ** 31, 2 ** 31 - 1, (n, k // 8), dtype=torch.int32, generator=gen).t()
    else:
        x2 = torch.randint(-2 ** 31, 2 ** 31 - 1, (k, n // 8), dtype=torch.int32, generator=gen)
    scale = torch.rand(n, generator=gen) * 1e-2
    ref = ops.npu_quant_matmul(x1, x2, scale, output_dtype=5)
    assert_bits(tq.npu_quant_matmul(x1, x2, scale, output_dtype=torch.float16), ref)


def test_quant_matmul_a4w4_per_group():
    gen = torch.Generator().manual_seed(6)
    m, k, n, g = 4, 64, 16, 32
    x1 = torch.randint(-2 ** 31, 2 ** 31 - 1, (m, k // 8), dtype=torch.int32, generator=gen)
    x2 = torch.randint(-2 ** 31, 2 ** 31 - 1, (k, n // 8), dtype=torch.int32, generator=gen)
    scale = torch.rand(k // g, n, generator=gen)
    offset = torch.randn(k // g, n, generator=gen).half()
    pt = torch.rand(m, 1, generator=gen)
    ref = ops.npu_quant_matmul(x1, x2, scale, offset=offset, pertoken_scale=pt, output_dtype=15, group_sizes=[1, 1, g])
    out = tq.npu_quant_matmul(x1, x2, scale, offset=offset, pertoken_scale=pt, output_dtype=torch.bfloat16,
                              group_sizes=[1, 1, g])
    torch.testing.assert_close(out.float(), ref.float(), rtol=2 ** -8, atol=1e-3)


@pytest.mark.parametrize("bad", ["k_mismatch", "bf16_scale_int8_out", "pertoken_int8", "offset_fp16_out",
                                 "bias_2d", "x1_1d", "int64_scale_pertoken"])
def test_quant_matmul_errors_match_cpu(bad):
    gen = torch.Generator().manual_seed(1)
    x1, x2, scale, kw = i8(4, 32, gen=gen), i8(32, 16, gen=gen), torch.rand(16, generator=gen), {}
    if bad == "k_mismatch":
        x2 = i8(31, 16, gen=gen)
    elif bad == "bf16_scale_int8_out":
        scale = scale.bfloat16()
    elif bad == "pertoken_int8":
        kw["pertoken_scale"] = torch.rand(4)
    elif bad == "offset_fp16_out":
        kw = dict(offset=torch.rand(16), output_dtype=torch.float16)
    elif bad == "bias_2d":
        kw["bias"] = torch.zeros(1, 16, dtype=torch.int32)
    elif bad == "x1_1d":
        x1 = i8(32, gen=gen)
    else:
        scale = ops.npu_trans_quant_param(scale)
        kw = dict(pertoken_scale=torch.rand(4), output_dtype=torch.float16)
    with pytest.raises(RuntimeError) as cpu:
        ops.npu_quant_matmul(x1, x2, scale, **_dtype_int(kw))
    with pytest.raises(RuntimeError) as tri:
        tq.npu_quant_matmul(x1, x2, scale, **kw)
    assert str(tri.value) == str(cpu.value).split("\n")[0].strip() or str(tri.value) in str(cpu.value)


@pytest.mark.parametrize("round_mode", [0, 1])
@pytest.mark.parametrize("offset_shape", [None, (1,), (37,)])
def test_trans_quant_param_bit_exact(round_mode, offset_shape):
    gen = torch.Generator().manual_seed(2)
    scale = torch.randn(37, generator=gen).abs() * 1e-3
    scale[:4] = torch.tensor([0.0, 1e-40, 3.0, float("inf")])
    offset = None if offset_shape is None else torch.randn(offset_shape, generator=gen) * 300
    assert torch.equal(tq.npu_trans_quant_param(scale, offset, round_mode),
                       ops.npu_trans_quant_param(scale, offset, round_mode))


# --- npu_dynamic_quant -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("asym", [False, True])
def test_dynamic_quant_pertoken_bit_exact(dtype, asym):
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn(2, 3, 72, generator=gen) * 3).to(dtype)  # 72 = one 64-wide block + a tail
    x[0, 1] = 0  # a zero row: scale 0, q 0
    smooth = (torch.rand(72, generator=gen) + 0.5).to(dtype)
    fn, ref_fn = (tq.npu_dynamic_quant_asymmetric, ops.npu_dynamic_quant_asymmetric) if asym else \
        (tq.npu_dynamic_quant, ops.npu_dynamic_quant)
    for kw in (dict(), dict(smooth_scales=smooth)):
        for o, r in zip(fn(x, **kw), ref_fn(x, **kw)):
            assert_bits(o, r)


@pytest.mark.parametrize("asym", [False, True])
def test_dynamic_quant_int4_and_dst_type_max(asym):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(5, 48, generator=gen).half()
    fn, ref_fn = (tq.npu_dynamic_quant_asymmetric, ops.npu_dynamic_quant_asymmetric) if asym else \
        (tq.npu_dynamic_quant, ops.npu_dynamic_quant)
    for o, r in zip(fn(x, dst_type=torch.quint4x2), ref_fn(x, dst_type=16)):
        assert_bits(o, r)
    for o, r in zip(fn(x, dst_type_max=100.0), ref_fn(x, dst_type_max=100.0)):
        assert_bits(o, r)


def test_dynamic_quant_moe_group_index():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(7, 40, generator=gen).bfloat16()
    smooth = (torch.rand(3, 40, generator=gen) + 0.5).bfloat16()
    gi = torch.tensor([2, 2, 7], dtype=torch.int32)
    for o, r in zip(tq.npu_dynamic_quant(x, smooth_scales=smooth, group_index=gi),
                    ops.npu_dynamic_quant(x, smooth_scales=smooth, group_index=gi)):
        assert_bits(o, r)
    with pytest.raises(RuntimeError, match="the last group_index entry must equal the number of rows"):
        tq.npu_dynamic_quant(x, smooth_scales=smooth, group_index=torch.tensor([2, 2, 6], dtype=torch.int32))


@pytest.mark.parametrize("mode", ["pertensor", "perchannel"])
def test_dynamic_quant_tensor_and_channel_modes(mode):
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(2, 6, 16, generator=gen).half()
    smooth = (torch.rand(6 if mode == "perchannel" else 16, generator=gen) + 0.5).half()
    for asym in (False, True):
        fn, ref_fn = (tq.npu_dynamic_quant_asymmetric, ops.npu_dynamic_quant_asymmetric) if asym else \
            (tq.npu_dynamic_quant, ops.npu_dynamic_quant)
        for o, r in zip(fn(x, smooth_scales=smooth, quant_mode=mode), ref_fn(x, smooth_scales=smooth, quant_mode=mode)):
            assert_bits(o, r)


def test_dynamic_quant_errors_match_cpu():
    x = torch.randn(4, 12)
    for kw in (dict(quant_mode="perrow"), dict(smooth_scales=torch.ones(5)), dict(dst_type=16)):
        with pytest.raises(RuntimeError) as cpu:
            ops.npu_dynamic_quant(x, **kw)
        with pytest.raises(RuntimeError) as tri:
            tq.npu_dynamic_quant(x, **kw)
        assert str(tri.value) in str(cpu.value)


# --- W4A8 -------------------------------------------------------------------------------------
def _w4_weights(k, n, gs, gen, bf16_scales):
    w = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    s = torch.rand(n, k // gs, generator=gen) * 0.1 + 0.01
    return w, (s.bfloat16() if bf16_scales else s)


@pytest.mark.parametrize("m,k,n,gs,dtype,bias,bf16_scales", [
    (1, 128, 40, 32, torch.float32, True, True),        # group 32: two groups per 64-k step
    (5, 192, 36, 64, torch.bfloat16, False, True),      # output bf16 (truncated), k tail of 64
    (17, 256, 50, 128, torch.float32, True, False),     # two row tiles
    (3, 100, 33, 100, torch.bfloat16, True, False),     # channelwise, k not a multiple of 64
])
def test_w4a8_bit_exact(m, k, n, gs, dtype, bias, bf16_scales):
    gen = torch.Generator().manual_seed(m * 7 + k)
    w, s = _w4_weights(k, n, gs, gen, bf16_scales)
    b = torch.randn(n, generator=gen) if bias else None
    x = (torch.randn(m, k, generator=gen) * 2).to(dtype)
    x[0, :7] = 0  # a zero prefix; the row still has range
    packed = tq.dyn_quant_pack_4bit_weight(w, s, b, gs, k, n)
    ref = ops.dyn_quant_matmul_4bit(x, ops.dyn_quant_pack_4bit_weight(w, s, b, gs, k, n), gs, k, n)
    assert_bits(tq.dyn_quant_matmul_4bit(x, packed, gs, k, n), ref)


def test_w4a8_buffers_name_their_family():
    gen = torch.Generator().manual_seed(12)
    w, s = _w4_weights(64, 32, 32, gen, False)
    x = torch.randn(2, 64, generator=gen)
    cpu_packed = ops.dyn_quant_pack_4bit_weight(w, s, None, 32, 64, 32)
    with pytest.raises(RuntimeError, match="packed for the CPU kernel family"):
        tq.dyn_quant_matmul_4bit(x, cpu_packed, 32, 64, 32)
    tri_packed = tq.dyn_quant_pack_4bit_weight(w, s, None, 32, 64, 32)
    with pytest.raises(RuntimeError, match="packed for the CUDA kernel family"):
        ops.dyn_quant_matmul_4bit(x, tri_packed, 32, 64, 32)
    with pytest.raises(RuntimeError, match="packed for in_features=64, out_features=32, block_size=32"):
        tq.dyn_quant_matmul_4bit(x, tri_packed, 64, 64, 32)
    broken = tri_packed.clone()
    broken[0] ^= 1
    with pytest.raises(RuntimeError, match="bad magic"):
        tq.dyn_quant_matmul_4bit(x, broken, 32, 64, 32)
    with pytest.raises(RuntimeError, match="truncated"):
        tq.dyn_quant_matmul_4bit(x, tri_packed[:-256].clone(), 32, 64, 32)


# --- npu_weight_quant_batchmatmul (A16W8 / A16W4) -------------------------------------------------
def _close(out, ref):
    assert out.dtype == ref.dtype and out.shape == ref.shape
    if out.dtype == torch.int8:  # requant: a value next to a rounding boundary may move by one
        d = (out.int() - ref.int()).abs()
        assert d.max() <= 1 and (d == 0).float().mean() > 0.97
        return
    eps = 2 ** -7 if out.dtype == torch.bfloat16 else 2 ** -10
    torch.testing.assert_close(out.float(), ref.float(), rtol=eps, atol=eps * ref.float().abs().max().item())


@pytest.mark.parametrize("case", ["int8_channel_offset_fp16", "int8_nk_group_bias_bf16", "int4_n_words_tensor_fp16",
                                  "int4_k_words_group_requant_bf16", "int8_int64_scale_fp16", "batched_x",
                                  "batched_weight", "int4_requant_int64"])
def test_weight_quant_matches_cpu(case):
    gen = torch.Generator().manual_seed(len(case))
    m, k, n = 5, 96, 40
    dt = torch.bfloat16 if case.endswith("bf16") else torch.float16
    x = torch.randn(m, k, generator=gen).to(dt)
    kw = {}
    scale = (torch.rand(n, generator=gen) * 0.05 + 0.01).to(dt)
    if case.startswith("int8_channel"):
        w = i8(k, n, gen=gen)
        kw["antiquant_offset"] = torch.randn(n, generator=gen).to(dt)
    elif case.startswith("int8_nk_group"):
        w = i8(n, k, gen=gen).t()
        scale = (torch.rand(3, n, generator=gen) * 0.05).to(dt)
        kw.update(antiquant_offset=torch.randn(3, n, generator=gen).to(dt), antiquant_group_size=32,
                  bias=torch.randn(n, generator=gen).to(dt))
    elif case.startswith("int4_n_words"):
        w = torch.randint(-2 ** 31, 2 ** 31 - 1, (k, n // 8), dtype=torch.int32, generator=gen)
        scale = scale[:1]
    elif case.startswith("int4_k_words"):
        w = torch.randint(-2 ** 31, 2 ** 31 - 1, (n, k // 8), dtype=torch.int32, generator=gen).t()
        scale = (torch.rand(2, n, generator=gen) * 0.05).to(dt)
        kw.update(antiquant_group_size=64, quant_scale=torch.rand(n, generator=gen) * 2,
                  quant_offset=torch.randn(n, generator=gen) * 5)
    elif case.startswith("int8_int64"):
        w = i8(k, n, gen=gen)
        scale = ops.npu_trans_quant_param(torch.rand(n, generator=gen) * 0.05)
        kw["antiquant_offset"] = torch.randn(n, generator=gen).to(dt)
    elif case == "batched_x":
        x = torch.randn(2, m, k, generator=gen).to(dt)
        w = i8(k, n, gen=gen)
    elif case == "batched_weight":
        x = torch.randn(2, m, k, generator=gen).to(dt)
        w = i8(2, k, n, gen=gen)
    else:
        w = torch.randint(-2 ** 31, 2 ** 31 - 1, (n, k // 8), dtype=torch.int32, generator=gen).t()
        kw["quant_scale"] = ops.npu_trans_quant_param(torch.rand(n, generator=gen), torch.full((n,), 4.0))
    ref = ops.npu_weight_quant_batchmatmul(x, w, scale, **kw)
    _close(tq.npu_weight_quant_batchmatmul(x, w, scale, **kw), ref)


def test_convert_weight_to_int4pack_bit_exact():
    gen = torch.Generator().manual_seed(13)
    w = torch.randint(-8, 8, (6, 32), dtype=torch.int32, generator=gen)
    assert torch.equal(tq.npu_convert_weight_to_int4pack(w), ops.npu_convert_weight_to_int4pack(w))


# --- registration -----------------------------------------------------------------------------
def test_triton_ops_and_cuda_registration():
    """The qdev_triton:: triton_ops run the same functions, and register_cuda_kernels installs
    them as the qdev:: ops' CUDA kernels (a CPU-only torch still has the CUDA dispatch key)."""
    gen = torch.Generator().manual_seed(14)
    x1, x2 = i8(3, 40, gen=gen), i8(40, 24, gen=gen)
    scale = torch.rand(24, generator=gen)
    out = torch.ops.qdev_triton.npu_quant_matmul(x1, x2, scale, None, None, None, 15)
    assert_bits(out, ops.npu_quant_matmul(x1, x2, scale, output_dtype=15))
    tq.register_cuda_kernels("CUDA")
    for name in ("npu_quant_matmul", "npu_dynamic_quant", "npu_dynamic_quant_asymmetric", "npu_trans_quant_param",
                 "dyn_quant_pack_4bit_weight", "dyn_quant_matmul_4bit", "npu_weight_quant_batchmatmul",
                 "npu_convert_weight_to_int4pack"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"qdev::{name}", "CUDA"), name
    for name in ("npu_quant_matmul", "npu_dynamic_quant", "dyn_quant_matmul_4bit", "npu_weight_quant_batchmatmul"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"qdev::{name}", "AutogradCUDA"), name


def test_cpu_compile_unaffected_by_cuda_registration():
    """register_cuda_kernels touches the CUDA keys only: a compiled CPU graph keeps the CPU op."""
    tq.register_cuda_kernels("CUDA")
    gen = torch.Generator().manual_seed(15)
    x1, x2 = i8(4, 32, gen=gen), i8(32, 16, gen=gen)
    scale = torch.rand(16, generator=gen)

    def f(a, b, s):
        return torch_qdev.npu_quant_matmul(a, b, s, output_dtype=torch.bfloat16) * 2

    assert_bits(torch.compile(f, fullgraph=True)(x1, x2, scale), f(x1, x2, scale))
