"""W4A8 dynamic path: aten::_dyn_quant_* on qdev and qdev::dyn_quant_* on CPU/qdev,
bit-exact against an emulator of PyTorch's reference numerics (w4_dynamic.md §2)."""
from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.testing._internal.common_quantization import _group_quantize_tensor_symmetric

import torch_qdev
from quant_reference import w4a8_emulate as emulate, w4a8_quant_rows as quant_rows  # noqa: F401


def make(K, N, gs, seed=0, with_bias=False):
    gen = torch.Generator().manual_seed(seed)
    b = torch.randn(K, N, generator=gen)
    w_u8, s = _group_quantize_tensor_symmetric(b, 4, gs)
    s = s.float() if gs == K else s.bfloat16()
    bias = torch.randn(N, generator=gen) if with_bias else None
    return b, w_u8, s, bias


@pytest.mark.parametrize("gs,with_bias,xdist", itertools.product([32, 64, 128, "K"], [False, True],
                                                                  ["randn", "rand", "tiny"]))
def test_bit_exact_with_emulator_and_torch(isa, gs, with_bias, xdist):
    M, K, N = 9, 256, 80
    gs = K if gs == "K" else gs
    _, w_u8, s, bias = make(K, N, gs, seed=gs, with_bias=with_bias)
    gen = torch.Generator().manual_seed(1)
    x = {"randn": torch.randn(M, K, generator=gen), "rand": torch.rand(M, K, generator=gen),
         "tiny": torch.randn(M, K, generator=gen) * 1e-3}[xdist]
    expected = emulate(x, w_u8, s, gs, K, N, bias)
    packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, K, N)
    assert packed.dtype == torch.uint8
    assert packed.numel() == torch_qdev.ops.w4_packed_bytes(K, N, gs, bias is not None, s.dtype == torch.bfloat16)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x, packed, gs, K, N), expected)
    # PyTorch's own CPU path gives the same bits
    ref = torch._dyn_quant_matmul_4bit(x, torch._dyn_quant_pack_4bit_weight(w_u8, s, bias, gs, K, N), gs, K, N)
    assert torch.equal(ref, expected)
    # aten ops on qdev tensors
    pq = torch._dyn_quant_pack_4bit_weight(w_u8.qdev(), s.qdev(), bias.qdev() if bias is not None else None, gs, K, N)
    assert pq.device.type == "qdev"
    assert torch.equal(torch._dyn_quant_matmul_4bit(x.qdev(), pq, gs, K, N).cpu(), expected)


def test_bf16_inputs_truncate_like_torch(isa):
    M, K, N = 5, 128, 64
    for gs in (K, 32):
        _, w_u8, s, _ = make(K, N, gs)
        x = torch.randn(M, K).bfloat16()
        packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8.qdev(), s.qdev(), None, gs, K, N)
        out = torch_qdev.dyn_quant_matmul_4bit(x.qdev(), packed, gs, K, N)
        fp = emulate(x.float(), w_u8, s, gs, K, N)
        trunc = (fp.view(torch.int32) >> 16 << 16).view(torch.float32).bfloat16()
        assert out.dtype == torch.bfloat16 and torch.equal(out.cpu(), trunc)
    # torch itself accepts bf16 only channelwise; qdev also runs groupwise (checked above)
    ref = torch._dyn_quant_matmul_4bit(x, torch._dyn_quant_pack_4bit_weight(*make(K, N, K)[1:3], None, K, K, N), K, K, N)
    assert ref.dtype == torch.bfloat16


@pytest.mark.parametrize("m,k,n", [(1, 64, 4096), (32, 64, 4096), (1, 128, 11008), (32, 128, 11008)])
def test_torch_test_tolerances(m, k, n):
    """torch's test__dyn_quant_matmul_4bit: unquantized fp32 reference, mean < 5%, max < 6%."""
    torch.manual_seed(1)
    a, b = torch.rand(m, k), torch.rand(k, n)
    w_u8, s = _group_quantize_tensor_symmetric(b, 4, 32)
    packed = torch._dyn_quant_pack_4bit_weight(w_u8.qdev(), s.bfloat16().qdev(), None, 32, k, n)
    res = torch._dyn_quant_matmul_4bit(a.qdev(), packed, 32, k, n).cpu()
    ref = torch.mm(a, b)
    rel = (res - ref).abs() / ref.abs().clamp(min=torch.finfo(torch.float32).eps)
    assert rel.mean() < 0.05 and rel.max() < 0.06


def test_where_torch_x86_goes_wrong():
    K, N = 64, 48
    _, w_u8, s, _ = make(K, N, 32)
    packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, None, 32, K, N)
    x = torch.randn(K, 3).t()  # non-contiguous
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x, packed, 32, K, N), emulate(x.contiguous(), w_u8, s, 32, K, N))
    x3 = torch.randn(2, 3, K)  # 3-D: computed row by row
    out3 = torch_qdev.dyn_quant_matmul_4bit(x3, packed, 32, K, N)
    assert out3.shape == (2, 3, N) and torch.equal(out3.reshape(6, N), emulate(x3.reshape(6, K), w_u8, s, 32, K, N))
    with pytest.raises(RuntimeError, match=r"the input has 32 features \(last dimension\) but in_features is 64"):
        torch_qdev.dyn_quant_matmul_4bit(torch.randn(4, 32), packed, 32, K, N)


def test_buffers_are_self_describing_and_portable():
    K, N = 128, 40
    _, w_u8, s, bias = make(K, N, 64, with_bias=True)
    x = torch.randn(3, K)
    expected = emulate(x, w_u8, s, 64, K, N, bias)
    on_qdev = torch_qdev.dyn_quant_pack_4bit_weight(w_u8.qdev(), s.qdev(), bias.qdev(), 64, K, N)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x, on_qdev.cpu(), 64, K, N), expected)
    on_cpu = torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, bias, 64, K, N)
    assert torch.equal(torch_qdev.dyn_quant_matmul_4bit(x.qdev(), on_cpu.qdev(), 64, K, N).cpu(), expected)
    with pytest.raises(RuntimeError, match="bad magic"):
        torch_qdev.dyn_quant_matmul_4bit(x, torch.randint(0, 255, (on_cpu.numel(),), dtype=torch.uint8), 64, K, N)
    with pytest.raises(RuntimeError, match="truncated"):
        torch_qdev.dyn_quant_matmul_4bit(x, on_cpu[: on_cpu.numel() // 2].clone(), 64, K, N)
    with pytest.raises(RuntimeError, match="bad magic"):  # torch's own float32 buffer
        torch_qdev.dyn_quant_matmul_4bit(x, torch._dyn_quant_pack_4bit_weight(w_u8, s, bias, 64, K, N), 64, K, N)
    with pytest.raises(RuntimeError, match="were packed for in_features=128, out_features=40, block_size=64"):
        torch_qdev.dyn_quant_matmul_4bit(x, on_cpu, 32, K, N)


def test_pack_errors():
    K, N = 64, 32
    _, w_u8, s, _ = make(K, N, 32)
    with pytest.raises(RuntimeError, match=r"Group size should be multiple of 32, in_features \[64\]. Provided 16"):
        torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, None, 16, K, N)
    with pytest.raises(RuntimeError, match="weights must be uint8"):
        torch_qdev.dyn_quant_pack_4bit_weight(w_u8.to(torch.int8), s, None, 32, K, N)
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.dyn_quant_pack_4bit_weight(w_u8.qdev(), s.qdev(), torch.ones(N), 32, K, N)
    with pytest.raises(RuntimeError, match="Expected bias length to match output dimension"):
        torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, torch.ones(5), 32, K, N)
    with pytest.raises(RuntimeError, match="expect input to be float32 or bfloat16"):
        torch_qdev.dyn_quant_matmul_4bit(torch.randn(2, K).half(), torch_qdev.dyn_quant_pack_4bit_weight(w_u8, s, None, 32, K, N), 32, K, N)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 12), kg=st.integers(1, 6), n=st.integers(1, 80), grouped=st.booleans(),
       with_bias=st.booleans(), seed=st.integers(0, 10_000))
def test_fuzz_against_emulator(m, kg, n, grouped, with_bias, seed):
    K = 32 * kg
    gs = 32 if grouped else K
    _, w_u8, s, bias = make(K, n, gs, seed=seed, with_bias=with_bias)
    x = torch.randn(m, K, generator=torch.Generator().manual_seed(seed))
    out = torch_qdev.dyn_quant_matmul_4bit(x.qdev(), torch_qdev.dyn_quant_pack_4bit_weight(
        w_u8.qdev(), s.qdev(), bias.qdev() if bias is not None else None, gs, K, n), gs, K, n)
    assert out.shape == (m, n)
    if m:
        assert torch.equal(out.cpu(), emulate(x, w_u8, s, gs, K, n, bias))


def test_opcheck_and_compile():
    K, N = 64, 32
    _, w_u8, s, bias = make(K, N, 32, with_bias=True)
    for device in ("cpu", "qdev"):
        args = (w_u8.to(device), s.to(device), bias.to(device), 32, K, N)
        torch.library.opcheck(torch.ops.qdev.dyn_quant_pack_4bit_weight.default, args)
        packed = torch.ops.qdev.dyn_quant_pack_4bit_weight(*args)
        torch.library.opcheck(torch.ops.qdev.dyn_quant_matmul_4bit.default, (torch.randn(3, K).to(device), packed, 32, K, N))
    torch._dynamo.reset()
    packed = torch_qdev.dyn_quant_pack_4bit_weight(w_u8.qdev(), s.qdev(), bias.qdev(), 32, K, N)
    x = torch.randn(4, K, device="qdev")
    fn = lambda x: torch.relu(torch.ops.qdev.dyn_quant_matmul_4bit(x, packed, 32, K, N))
    for backend in ("aot_eager", "inductor"):
        assert torch.equal(torch.compile(fn, backend=backend, fullgraph=True)(x).cpu(), fn(x).cpu())
    torch._dynamo.reset()


def test_quantizer_matches_torch_helper():
    from torch_qdev.contrib.module.linear_w4a8_dynamic import quantize_int4_symmetric

    w = torch.randn(48, 128)
    for gs in (32, 128):
        ours = quantize_int4_symmetric(w, gs)
        theirs = _group_quantize_tensor_symmetric(w.t(), 4, gs)  # the helper takes [K, N]
        assert torch.equal(ours[0].reshape(-1), theirs[0].reshape(-1))
        assert torch.equal(ours[1].reshape(-1), theirs[1].reshape(-1).float())


@pytest.mark.parametrize("group_size", [32, None])
def test_linear_w4a8_dynamic_module(tmp_path, group_size):
    from torch_qdev.contrib.module import LinearW4A8Dynamic

    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 96)
    x = torch.randn(5, 7, 256)
    q = LinearW4A8Dynamic.from_float(lin.qdev(), group_size=group_size)
    y = q(x.qdev())
    assert y.shape == (5, 7, 96) and y.device.type == "qdev" and y.dtype == torch.float32
    rel = (y.cpu() - lin.cpu()(x)).norm() / lin(x).norm()
    assert rel < (0.2 if group_size is None else 0.12), rel
    assert q(x.qdev().bfloat16()).dtype == torch.bfloat16 and q(x.qdev().half()).dtype == torch.float16
    path = tmp_path / "w4.pt"
    torch.save(q.state_dict(), path)
    q2 = LinearW4A8Dynamic(256, 96, group_size=group_size)  # CPU module: the buffer is portable
    q2.load_state_dict(torch.load(path))
    assert torch.equal(q2(x), y.cpu())
    assert "LinearW4A8Dynamic" in repr(q2)
