"""The qdev:: quantized ops on CUDA tensors (the Triton kernels of torch_qdev/triton, registered by
``import torch_qdev`` with a CUDA torch and the triton package).

Every result is compared with the CPU kernels (same op on CPU copies) and with
the goldens written from the formulas (quant_reference.py, and test_w4a8's
emulation of PyTorch's W4A8 numerics): integer outputs and the int8 requant bit
for bit, float outputs within one rounding of the output dtype (the kernels
use the CPU's operation order, so they are expected to match exactly).
Skipped, with the reason, without a CUDA device or without the CUDA kernels.
"""
from __future__ import annotations

import itertools

import pytest
import torch

import quant_reference as ref
import torch_qdev  # noqa: F401  (registers torch.ops.qdev)
from test_w4a8 import emulate, make


def _cuda_kernels_built() -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("qdev::npu_quant_matmul", "CUDA")
    except RuntimeError:
        return False


pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
    pytest.mark.skipif(torch.cuda.is_available() and not _cuda_kernels_built(),
                       reason="the qdev:: ops have no CUDA kernels (the triton package is missing, or QDEV_TRITON_CUDA=0)"),
]

ops = torch.ops.qdev
CUDA = "cuda"


def rand_i8(*shape, gen, low=-128, high=128):
    return torch.randint(low, high, shape, dtype=torch.int8, generator=gen)


def assert_same(out_cuda, out_cpu):
    out = out_cuda.cpu()
    assert out.dtype == out_cpu.dtype and out.shape == out_cpu.shape
    if out.dtype in (torch.int8, torch.int32, torch.int64):
        assert torch.equal(out, out_cpu)
    else:
        torch.testing.assert_close(out.float(), out_cpu.float(), rtol=2 ** -7 if out.dtype == torch.bfloat16 else 2 ** -10,
                                   atol=1e-6)


# --- npu_trans_quant_param ---------------------------------------------------------

@pytest.mark.parametrize("round_mode", [0, 1])
@pytest.mark.parametrize("with_offset", [False, True])
def test_trans_quant_param_matches_cpu(round_mode, with_offset):
    gen = torch.Generator().manual_seed(1)
    scale = torch.randn(257, generator=gen).abs() * 1e-3
    scale[:4] = torch.tensor([0.0, 1e-40, 3.0, float("inf")])
    offset = (torch.randn(257, generator=gen) * 200) if with_offset else None
    cpu = ops.npu_trans_quant_param(scale, offset, round_mode)
    out = ops.npu_trans_quant_param(scale.to(CUDA), offset.to(CUDA) if with_offset else None, round_mode)
    assert torch.equal(out.cpu(), cpu)
    assert torch.equal(cpu, ref.trans_quant_param(scale, offset, round_mode))


# --- npu_quant_matmul -----------------------------------------------------------------

# (m, k, n): decode-sized m (GEMV kernel) and larger m (tiled kernel), k not a multiple
# of 64 (or 16), n not a multiple of the 128-wide tile (or of 8).
SHAPES = [(1, 64, 32), (1, 100, 40), (3, 33, 7), (16, 4096, 136), (17, 96, 72), (130, 200, 260), (256, 512, 384)]

CASES = {
    "int8_float_scale_offset": dict(output_dtype=None, scale="f32", offset=True),
    "int8_int64_scale": dict(output_dtype=None, scale="i64", offset=True),
    "int8_int32_bias": dict(output_dtype=None, scale="f32", bias=torch.int32),
    "fp16": dict(output_dtype=torch.float16, scale="f32"),
    "fp16_int64_scale_bias": dict(output_dtype=torch.float16, scale="i64", bias=torch.int32),
    "fp16_pertoken_fp16_bias": dict(output_dtype=torch.float16, scale="f32", pertoken=True, bias=torch.float16),
    "fp16_pertoken_fp32_bias": dict(output_dtype=torch.float16, scale="f32", pertoken=True, bias=torch.float32),
    "bf16_bf16_bias": dict(output_dtype=torch.bfloat16, scale="f32", bias=torch.bfloat16),
    "bf16_bf16_scale_pertoken": dict(output_dtype=torch.bfloat16, scale="bf16", pertoken=True),
    "bf16_int32_bias_per_tensor": dict(output_dtype=torch.bfloat16, scale="f32_1", bias=torch.int32),
    "int32": dict(output_dtype=torch.int32, scale="f32", bias=torch.int32),
}


def make_args(case, m, n, gen, batch_bias=None):
    c = CASES[case]
    raw = torch.rand(n, generator=gen) * 2e-3 + 1e-4
    kw = {}
    if c["scale"] == "i64":
        scale = ref.trans_quant_param(raw, torch.randn(n, generator=gen) * 20 if c.get("offset") else None)
    elif c["scale"] == "bf16":
        scale = raw.bfloat16()
    elif c["scale"] == "f32_1":
        scale = raw[:1].clone()
    else:
        scale = raw
        if c.get("offset"):
            kw["offset"] = torch.randn(n, generator=gen) * 20
    if c.get("pertoken"):
        kw["pertoken_scale"] = torch.rand(m, generator=gen) + 0.5
    bias_t = c.get("bias")
    if bias_t is not None:
        shape = (batch_bias, 1, n) if batch_bias else (n,)
        kw["bias"] = (torch.randint(-3000, 3000, shape, dtype=torch.int32, generator=gen) if bias_t == torch.int32
                      else torch.randn(shape, generator=gen).to(bias_t))
    if c["output_dtype"] is not None:
        kw["output_dtype"] = c["output_dtype"]
    return scale, kw


def to_cuda(kw):
    return {k: (v.to(CUDA) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_quant_matmul_matches_cpu_and_golden(case, m, k, n):
    gen = torch.Generator().manual_seed(m * 7 + k * 3 + n)
    x1 = rand_i8(m, k, gen=gen)
    w = rand_i8(n, k, gen=gen)           # (n, k): nn.Linear / LinearQuant layout
    x2 = w.t()                           # the transposed view the kernels read directly
    scale, kw = make_args(case, m, n, gen)
    cpu = ops.npu_quant_matmul(x1, x2, scale, **kw)
    out = ops.npu_quant_matmul(x1.to(CUDA), w.to(CUDA).t(), scale.to(CUDA), **to_cuda(kw))
    assert_same(out, cpu)
    golden = ref.quant_matmul(x1, x2, scale, **{k_: v for k_, v in kw.items()})
    assert_same(out, golden)


@pytest.mark.parametrize("m", [1, 40])
def test_quant_matmul_contiguous_x2_and_strided_x1(m):
    gen = torch.Generator().manual_seed(3)
    x1_full = rand_i8(m, 300, gen=gen)
    x1 = x1_full[:, 10:210]              # row stride 300: not a multiple of 16
    x2 = rand_i8(200, 96, gen=gen)       # contiguous (k, n): transposed by a copy
    scale = torch.rand(96, generator=gen) * 1e-2
    cpu = ops.npu_quant_matmul(x1, x2, scale, output_dtype=torch.float16)
    out = ops.npu_quant_matmul(x1_full.to(CUDA)[:, 10:210], x2.to(CUDA), scale.to(CUDA), output_dtype=torch.float16)
    assert_same(out, cpu)


@pytest.mark.parametrize("x1_shape,x2_shape,bias3", [
    ((2, 3, 5, 64), (64, 48), False),          # one weight: flattened into one tall GEMM
    ((2, 3, 20, 64), (3, 64, 48), False),      # per-batch weights, broadcast x1 batch
    ((2, 1, 4, 80), (1, 3, 80, 24), False),    # both broadcast
    ((4, 33, 64), (64, 40), True),             # 3-D bias: per-batch epilogue
])
def test_quant_matmul_batches(x1_shape, x2_shape, bias3):
    gen = torch.Generator().manual_seed(5)
    x1 = rand_i8(*x1_shape, gen=gen)
    x2 = rand_i8(*x2_shape, gen=gen)
    n = x2_shape[-1]
    scale = torch.rand(n, generator=gen) * 1e-3
    kw = dict(output_dtype=torch.bfloat16, pertoken_scale=torch.rand(x1_shape[-2], generator=gen) + 0.5)
    if bias3:
        kw["bias"] = torch.randn(x1_shape[0], 1, n, generator=gen)
    cpu = ops.npu_quant_matmul(x1, x2, scale, **kw)
    out = ops.npu_quant_matmul(x1.to(CUDA), x2.to(CUDA), scale.to(CUDA), **to_cuda(kw))
    assert_same(out, cpu)


def test_quant_matmul_a4w4():
    gen = torch.Generator().manual_seed(9)
    m, k, n = 9, 64, 48
    a = torch.randint(-8, 8, (m, k), generator=gen)
    b = torch.randint(-8, 8, (n, k), generator=gen)
    x1 = ref.pack_int4(a)
    x2_n_packed = ref.pack_int4(b.t().contiguous())      # (k, n/8)
    x2_k_packed = ref.pack_int4(b).t()                   # (k/8, n) view of (n, k/8)
    scale = torch.rand(n, generator=gen) * 1e-2
    for x2 in (x2_n_packed, x2_k_packed):
        cpu = ops.npu_quant_matmul(x1, x2, scale, output_dtype=torch.float16)
        out = ops.npu_quant_matmul(x1.to(CUDA), x2.to(CUDA), scale.to(CUDA), output_dtype=torch.float16)
        assert_same(out, cpu)


def test_quant_matmul_zero_k_and_empty():
    scale = torch.ones(8, device=CUDA)
    out = ops.npu_quant_matmul(torch.empty(3, 0, dtype=torch.int8, device=CUDA),
                               torch.empty(0, 8, dtype=torch.int8, device=CUDA), scale, output_dtype=torch.int32)
    assert torch.equal(out.cpu(), torch.zeros(3, 8, dtype=torch.int32))
    out = ops.npu_quant_matmul(torch.empty(0, 16, dtype=torch.int8, device=CUDA),
                               torch.empty(16, 8, dtype=torch.int8, device=CUDA), scale, output_dtype=torch.float16)
    assert out.shape == (0, 8) and out.is_cuda


def test_quant_matmul_bad_input():
    x1 = torch.zeros(4, 32, dtype=torch.int8, device=CUDA)
    x2 = torch.zeros(32, 16, dtype=torch.int8, device=CUDA)
    scale = torch.ones(16, device=CUDA)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.npu_quant_matmul(x1, x2.cpu(), scale)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.npu_quant_matmul(x1, x2, scale.cpu())
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.npu_quant_matmul(x1.cpu(), x2, scale)
    with pytest.raises(RuntimeError, match="supports int8 x int8"):
        ops.npu_quant_matmul(x1.float(), x2, scale)
    with pytest.raises(RuntimeError, match="scale's dtype must be int64, float32 or bfloat16"):
        ops.npu_quant_matmul(x1, x2, scale.half())
    with pytest.raises(RuntimeError, match="k dim of x1 and x2 need be same"):
        ops.npu_quant_matmul(x1, x2[:16], scale)


# --- npu_dynamic_quant ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("asymmetric,int4,smooth", [(False, False, False), (False, False, True),
                                                    (True, False, True), (False, True, False), (True, True, True)])
def test_dynamic_quant_pertoken_matches_cpu(dtype, asymmetric, int4, smooth):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(3, 5, 200, generator=gen) * 4).to(dtype)
    x[0, 0] = 0  # a zero row: scale 0, q 0
    sm = (torch.rand(200, generator=gen) + 0.5).to(dtype) if smooth else None
    kw = dict(dst_type=torch.quint4x2) if int4 else {}
    op = ops.npu_dynamic_quant_asymmetric if asymmetric else ops.npu_dynamic_quant
    cpu = op(x, smooth_scales=sm, **kw)
    out = op(x.to(CUDA), smooth_scales=sm.to(CUDA) if smooth else None, **kw)
    for o, c in zip(out, cpu):
        assert o.is_cuda
        assert torch.equal(o.cpu(), c)
    if not int4:
        golden = ref.dynamic_quant(x, sm, asymmetric=asymmetric)
        assert torch.equal(cpu[0].float(), golden[0]) and torch.equal(cpu[1], golden[1])


@pytest.mark.parametrize("mode", ["pertensor", "perchannel"])
def test_dynamic_quant_other_modes_match_cpu(mode):
    x = torch.randn(4, 16, 64, generator=torch.Generator().manual_seed(2))
    cpu = ops.npu_dynamic_quant(x, quant_mode=mode)
    out = ops.npu_dynamic_quant(x.to(CUDA), quant_mode=mode)
    for o, c in zip(out, cpu):
        assert o.is_cuda and torch.equal(o.cpu(), c)


def test_dynamic_quant_bad_input():
    with pytest.raises(RuntimeError, match="Input shape dim should be greater than 1"):
        ops.npu_dynamic_quant(torch.randn(8, device=CUDA))
    with pytest.raises(RuntimeError, match="must be float16, bfloat16 or float32"):
        ops.npu_dynamic_quant(torch.zeros(2, 8, dtype=torch.int32, device=CUDA))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.npu_dynamic_quant(torch.randn(2, 8, device=CUDA), smooth_scales=torch.ones(8))


# --- W4A8 dynamic ---------------------------------------------------------------------------

W4_CASES = [(4096, 96, 32), (256, 40, 128), (512, 72, 512), (200, 24, 200)]  # (K, N, group); group == K: channelwise


@pytest.mark.parametrize("K,N,gs", W4_CASES)
@pytest.mark.parametrize("m", [1, 3, 16, 17, 130])
@pytest.mark.parametrize("with_bias", [False, True])
def test_w4a8_matches_cpu_and_emulation(K, N, gs, m, with_bias):
    _, w_u8, s, bias = make(K, N, gs, seed=K + N + m, with_bias=with_bias)
    x = torch.randn(m, K, generator=torch.Generator().manual_seed(m))
    packed_cpu = ops.dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, K, N)
    expected = ops.dyn_quant_matmul_4bit(x, packed_cpu, gs, K, N)
    packed = ops.dyn_quant_pack_4bit_weight(w_u8.to(CUDA), s.to(CUDA), bias.to(CUDA) if with_bias else None, gs, K, N)
    assert packed.is_cuda and packed.dtype == torch.uint8
    out = ops.dyn_quant_matmul_4bit(x.to(CUDA), packed, gs, K, N)
    assert torch.equal(out.cpu(), expected)  # same int32 group sums, same float order
    assert torch.equal(expected, emulate(x, w_u8, s, gs, K, N, bias))


def test_w4a8_bf16_channelwise_and_batch_dims():
    K, N = 256, 48
    _, w_u8, s, bias = make(K, N, K, seed=4, with_bias=True)
    x = torch.randn(2, 3, K, generator=torch.Generator().manual_seed(4)).bfloat16()
    expected = ops.dyn_quant_matmul_4bit(x, ops.dyn_quant_pack_4bit_weight(w_u8, s, bias, K, K, N), K, K, N)
    packed = ops.dyn_quant_pack_4bit_weight(w_u8.to(CUDA), s.to(CUDA), bias.to(CUDA), K, K, N)
    out = ops.dyn_quant_matmul_4bit(x.to(CUDA), packed, K, K, N)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, N)
    assert torch.equal(out.cpu(), expected)


def test_w4a8_kernel_families_are_not_mixed():
    K, N, gs = 128, 16, 32
    _, w_u8, s, _ = make(K, N, gs)
    packed_cpu = ops.dyn_quant_pack_4bit_weight(w_u8, s, None, gs, K, N)
    packed_cuda = ops.dyn_quant_pack_4bit_weight(w_u8.to(CUDA), s.to(CUDA), None, gs, K, N)
    x = torch.randn(2, K)
    with pytest.raises(RuntimeError, match="packed for the CPU kernel family"):
        ops.dyn_quant_matmul_4bit(x.to(CUDA), packed_cpu.to(CUDA), gs, K, N)
    with pytest.raises(RuntimeError, match="packed for the CUDA kernel family"):
        ops.dyn_quant_matmul_4bit(x, packed_cuda.cpu(), gs, K, N)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.dyn_quant_matmul_4bit(x, packed_cuda, gs, K, N)
    with pytest.raises(RuntimeError, match="packed for in_features=128"):
        ops.dyn_quant_matmul_4bit(torch.randn(2, 256, device=CUDA), packed_cuda, gs, 256, N)
    with pytest.raises(RuntimeError, match="expect input to be float32 or bfloat16"):
        ops.dyn_quant_matmul_4bit(x.to(CUDA).half(), packed_cuda, gs, K, N)


def test_w4a8_header_cache_sees_rewrites():
    """A buffer rewritten in place (same address, same size, another header) is re-read."""
    K, N = 128, 16
    _, w_a, s_a, _ = make(K, N, 32, seed=1)
    _, w_b, s_b, _ = make(K, N, 64, seed=2)  # bf16 scales too: the same buffer size
    x = torch.randn(1, K, device=CUDA)
    packed = ops.dyn_quant_pack_4bit_weight(w_a.to(CUDA), s_a.to(CUDA), None, 32, K, N)
    ops.dyn_quant_matmul_4bit(x, packed, 32, K, N)
    other = ops.dyn_quant_pack_4bit_weight(w_b.to(CUDA), s_b.to(CUDA), None, 64, K, N)
    assert other.numel() == packed.numel()
    packed.copy_(other)
    with pytest.raises(RuntimeError, match="block_size=64 but the call passes 128, 16, 32"):
        ops.dyn_quant_matmul_4bit(x, packed, 32, K, N)
    out = ops.dyn_quant_matmul_4bit(x, packed, 64, K, N)
    expected = ops.dyn_quant_matmul_4bit(x.cpu(), ops.dyn_quant_pack_4bit_weight(w_b, s_b, None, 64, K, N), 64, K, N)
    assert torch.equal(out.cpu(), expected)


def test_w4a8_bad_pack_input():
    w = torch.zeros(16, 64, dtype=torch.uint8, device=CUDA)
    with pytest.raises(RuntimeError, match="weights must be uint8"):
        ops.dyn_quant_pack_4bit_weight(w.to(torch.int8), torch.ones(16 * 4, device=CUDA), None, 32, 128, 16)
    with pytest.raises(RuntimeError, match="Group size should be multiple of 32"):
        ops.dyn_quant_pack_4bit_weight(w, torch.ones(16 * 8, device=CUDA), None, 16, 128, 16)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        ops.dyn_quant_pack_4bit_weight(w, torch.ones(16 * 4), None, 32, 128, 16)


def test_current_stream_and_device_guard():
    """Work goes to the caller's current stream; results are right after synchronising it."""
    K, N = 256, 64
    _, w_u8, s, _ = make(K, N, 32)
    x = torch.randn(4, K)
    expected = ops.dyn_quant_matmul_4bit(x, ops.dyn_quant_pack_4bit_weight(w_u8, s, None, 32, K, N), 32, K, N)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        packed = ops.dyn_quant_pack_4bit_weight(w_u8.to(CUDA), s.to(CUDA), None, 32, K, N)
        out = ops.dyn_quant_matmul_4bit(x.to(CUDA), packed, 32, K, N)
    stream.synchronize()
    assert torch.equal(out.cpu(), expected)
    if torch.cuda.device_count() > 1:
        out1 = ops.dyn_quant_matmul_4bit(x.to("cuda:1"), packed.to("cuda:1"), 32, K, N)
        assert out1.device == torch.device("cuda:1") and torch.equal(out1.cpu(), expected)


# --- npu_weight_quant_batchmatmul ------------------------------------------------------------------

@pytest.mark.parametrize("int4", [False, True])
@pytest.mark.parametrize("m", [1, 16, 200])
def test_weight_quant_matches_cpu(int4, m):
    gen = torch.Generator().manual_seed(m)
    k, n, G = 512, 384, 128
    x = torch.randn(m, k, generator=gen).bfloat16()
    if int4:
        w = torch.randint(-2 ** 31, 2 ** 31 - 1, (n, k // 8), dtype=torch.int32, generator=gen).t()
    else:
        w = rand_i8(n, k, gen=gen).t()
    scale = (torch.rand(k // G, n, generator=gen) * 0.05).bfloat16()
    offset = torch.randn(k // G, n, generator=gen).bfloat16()
    cpu = ops.npu_weight_quant_batchmatmul(x, w, scale, offset, antiquant_group_size=G)
    out = ops.npu_weight_quant_batchmatmul(x.to(CUDA), w.to(CUDA), scale.to(CUDA), offset.to(CUDA),
                                           antiquant_group_size=G)
    torch.testing.assert_close(out.cpu().float(), cpu.float(), rtol=2 ** -7, atol=2 ** -7 * cpu.float().abs().max().item())
