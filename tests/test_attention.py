"""scaled_dot_product_attention on qdev chooses its backend by CPU's rules (the fused CPU flash
kernel where CPU would use it) and matches CPU results."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import torch_qdev  # noqa: F401


def _ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("case", ["causal", "mask", "decode_gqa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_uses_cpu_flash_kernel_and_matches_cpu(case, dtype):
    gen = torch.Generator().manual_seed(0)
    hq, hk, lq, lk = (8, 8, 16, 16) if case != "decode_gqa" else (8, 2, 1, 40)
    q = torch.randn(2, hq, lq, 64, generator=gen).to(dtype)
    k = torch.randn(2, hk, lk, 64, generator=gen).to(dtype)
    v = torch.randn(2, hk, lk, 64, generator=gen).to(dtype)
    kw = {"is_causal": True} if case == "causal" else {}
    if case == "mask":
        kw["attn_mask"] = torch.rand(lq, lk, generator=gen) > 0.3
    if case == "decode_gqa":
        kw["enable_gqa"] = True
    ref = F.scaled_dot_product_attention(q, k, v, **kw)
    qd = {key: (val.qdev() if isinstance(val, torch.Tensor) else val) for key, val in kw.items()}
    out = {}
    cpu_ops = _ops_run(lambda: F.scaled_dot_product_attention(q, k, v, **kw))
    qdev_ops = _ops_run(lambda: out.setdefault("y", F.scaled_dot_product_attention(q.qdev(), k.qdev(), v.qdev(),
                                                                                   **qd)))
    y = out["y"]
    assert y.device.type == "qdev"
    # the same backend as CPU: flash where CPU uses flash, the math path where CPU uses math
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert (flash in qdev_ops) == (flash in cpu_ops)
    if case == "causal":
        assert flash in qdev_ops
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(y.cpu(), ref, rtol=tol, atol=tol)


def test_sdpa_bf16_on_qdev_is_computed_in_fp32_and_differentiable():
    """qdev's flash kernel widens 16-bit inputs to fp32: its result is the fp32 result rounded once,
    and gradients flow back to qdev leaves."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 4, 9, 32, generator=gen).bfloat16() for _ in range(3))
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).bfloat16()
    leaves = [t.qdev().requires_grad_() for t in (q, k, v)]
    y = F.scaled_dot_product_attention(*leaves, is_causal=True)
    assert y.dtype == torch.bfloat16 and torch.equal(y.cpu(), exact)
    y.float().square().sum().backward()
    cpu_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    F.scaled_dot_product_attention(*cpu_leaves, is_causal=True).float().square().sum().backward()
    for a, b in zip(leaves, cpu_leaves):
        assert a.grad.device.type == "qdev"
        torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=5e-2, atol=5e-2)
