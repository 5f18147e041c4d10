"""qdev's decode attention kernel (a few queries per head over a KV cache, run in place of CPU's
flash kernel for inference calls): results against float64 math, the layouts and log-sum-exp of
CPU's flash op, GQA (enable_gqa and Hugging Face's query packing), masks and causal, strided caches,
and that it really replaces the widening CPU path (no float32 copies of K and V)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import torch_qdev  # noqa: F401

FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _math(q, k, v, mask=None, causal=False, scale=None):
    """float64 softmax(q k^T s + mask) v with GQA by repetition; fully masked rows give 0."""
    q, k, v = q.double(), k.double(), v.double()
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    s = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask.double()
    lse = torch.logsumexp(s, -1)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return p @ v, lse


def _cache(b, h, s_max, s, d, dtype, gen):
    """The first s positions of a static (b, h, s_max, d) cache: rows strided by s_max * d."""
    return torch.randn(b, h, s_max, d, generator=gen).to(dtype)[:, :, :s]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", ["gqa", "packed_gqa_mask", "float_mask", "causal", "odd_dims", "no_gqa_batch2"])
def test_decode_attention_matches_math(dtype, case):
    gen = torch.Generator().manual_seed(hash(case) % 1000)
    b, hq, hkv, l, s, d, dv = {"gqa": (1, 8, 2, 1, 45, 64, 64), "packed_gqa_mask": (1, 3, 3, 3, 40, 64, 64),
                               "float_mask": (1, 4, 4, 2, 33, 32, 32), "causal": (1, 4, 2, 5, 5, 64, 64),
                               "odd_dims": (1, 2, 1, 1, 70, 80, 24), "no_gqa_batch2": (2, 4, 4, 1, 17, 128, 128)}[case]
    q = torch.randn(b, hq, l, d, generator=gen).to(dtype)
    k = _cache(b, hkv, s + 11, s, d, dtype, gen)
    v = _cache(b, hkv, s + 11, s, dv, dtype, gen)
    mask, causal = None, case == "causal"
    if case == "packed_gqa_mask":  # HF's decode: a head group's queries as rows, the cache's unused tail masked
        mask = torch.ones(b, 1, l, s, dtype=torch.bool)
        mask[..., -7:] = False
    if case == "float_mask":
        mask = torch.randn(1, 1, l, s, generator=gen).to(dtype)
        mask[..., 3] = -math.inf
    kw = dict(attn_mask=mask.qdev() if mask is not None else None, is_causal=causal,
              enable_gqa=hq != hkv)
    y = F.scaled_dot_product_attention(q.qdev(), k.qdev(), v.qdev(), **kw)
    want, _ = _math(q, k, v, mask, causal)
    tol = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2, torch.float16: 2e-3}[dtype]
    assert y.device.type == "qdev" and y.dtype == dtype and y.shape == want.shape
    torch.testing.assert_close(y.cpu().double(), want, rtol=tol, atol=tol)


def test_decode_attention_op_layout_and_lse_match_cpu_flash():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(1, 8, 1, 64, generator=gen).bfloat16()
    k = _cache(1, 2, 50, 30, 64, torch.bfloat16, gen)
    v = _cache(1, 2, 50, 30, 64, torch.bfloat16, gen)
    mask = torch.zeros(1, 1, 1, 30).bfloat16()
    mask[..., 20:] = -math.inf
    out, lse = FLASH(q.qdev(), k.qdev(), v.qdev(), attn_mask=mask.qdev(), scale=0.3)
    ref_out, ref_lse = FLASH(q.float(), k.float(), v.float(), attn_mask=mask.float(), scale=0.3)
    assert out.stride() == ref_out.stride() and lse.stride() == ref_lse.stride() and lse.dtype == torch.float32
    torch.testing.assert_close(out.cpu().float(), ref_out, rtol=1.6e-2, atol=1.6e-2)
    torch.testing.assert_close(lse.cpu(), ref_lse, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.cpu(), _math(q, k, v, mask, scale=0.3)[0].bfloat16())


def test_fully_masked_row_gives_zeros_as_cpu_flash():
    q, k = torch.randn(1, 2, 2, 16), torch.randn(1, 2, 9, 16)
    mask = torch.zeros(2, 9)
    mask[1] = -math.inf
    y = F.scaled_dot_product_attention(q.qdev(), k.qdev(), k.qdev(), attn_mask=mask.qdev())
    assert torch.equal(y.cpu()[:, :, 1], torch.zeros(1, 2, 16))
    torch.testing.assert_close(y.cpu()[:, :, 0], _math(q, k, k)[0].float()[:, :, 0], rtol=1e-5, atol=1e-5)


def _ops(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_decode_calls_read_the_cache_in_place_and_prefill_keeps_cpu_flash():
    """bf16 decode through the kernel makes no float32 copies of q/k/v; 17 queries (prefill) and
    calls that need gradients keep CPU's flash kernel (widened copies)."""
    gen = torch.Generator().manual_seed(4)
    k = torch.randn(1, 2, 64, 64, generator=gen).bfloat16().qdev()
    for l, grad, kernel in [(1, False, True), (16, False, True), (17, False, False), (1, True, False)]:
        q = torch.randn(1, 8, l, 64, generator=gen).bfloat16().qdev().requires_grad_(grad)
        ops = _ops(lambda: F.scaled_dot_product_attention(q, k, k, enable_gqa=True))
        assert ("aten::_to_copy" not in ops) == kernel, (l, grad, sorted(ops))


def test_decode_attention_op_compiles_whole_and_falls_back_beyond_decode():
    """qdev::decode_attention is one extern call under torch.compile(fullgraph) (its fake kernel),
    gives the kernel's result, and takes prefill-sized calls through SDPA (causal)."""
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 8, 1, 64, generator=gen).qdev()
    k = torch.randn(1, 2, 40, 64, generator=gen).qdev()
    mask = (torch.arange(40) < 25).view(1, 1, 1, 40).qdev()
    fn = torch.compile(lambda q, k, m: torch_qdev.attention.decode_attention(q, k, k, m) * 2.0, fullgraph=True)
    y = fn(q, k, mask)
    want = _math(q.cpu(), k.cpu(), k.cpu(), mask.cpu())[0].float() * 2.0
    torch.testing.assert_close(y.cpu(), want, rtol=1e-5, atol=1e-5)
    torch.library.opcheck(torch.ops.qdev.decode_attention, (q, k, k, mask, None, False))
    qp = torch.randn(1, 8, 40, 64, generator=gen).qdev()
    y = torch_qdev.attention.decode_attention(qp, k, k, is_causal=True)  # 40 queries: SDPA
    torch.testing.assert_close(y.cpu(), _math(qp.cpu(), k.cpu(), k.cpu(), causal=True)[0].float(),
                               rtol=1e-5, atol=1e-5)
    yc = torch_qdev.attention.decode_attention(q.cpu(), k.cpu(), k.cpu(), mask.cpu())  # CPU tensors too
    torch.testing.assert_close(yc, want / 2.0, rtol=1e-5, atol=1e-5)


def test_decode_attention_errors():
    q, k = torch.randn(1, 6, 1, 16).qdev(), torch.randn(1, 4, 5, 16).qdev()
    with pytest.raises(RuntimeError, match="multiple of key/value heads"):
        torch_qdev.attention.decode_attention(q, k, k)
    with pytest.raises(RuntimeError, match="must be 4-D"):
        torch_qdev.attention.decode_attention(q[0], k[0], k[0])
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.attention.decode_attention(q, k[:, :2].cpu(), k[:, :2].cpu())


def test_reductions_compile_on_qdev():
    """Inductor's scheduler treats qdev nodes as CPU ones (same C++ codegen): an RMSNorm-style
    reduction fused with pointwise ops compiles and matches eager."""
    x, w = torch.randn(2, 3, 64).qdev(), torch.randn(64).qdev()

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    torch.testing.assert_close(torch.compile(rms, fullgraph=True)(x, w).cpu(), rms(x.cpu(), w.cpu()))
