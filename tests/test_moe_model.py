"""Model level: quantize_ turns transformers MoE expert blocks (Qwen3-MoE, Mixtral) into grouped
quantized experts on torch_npu's fused path; results agree with the float model and with the
same int8 weights run as a per-expert loop of dense layers."""
from __future__ import annotations

import copy

import pytest
import torch

import torch_qdev
from torch_qdev.quantization import (A8W8DynamicConfig, A16W8Config, GroupedExpertsA8W8, GroupedExpertsA16W8,
                                     PerExpertLoopA8W8, quantize_)


def _qwen3_moe(experts=8, top_k=2, layers=1):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    cfg = Qwen3MoeConfig(vocab_size=128, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=experts, num_experts_per_tok=top_k, norm_topk_prob=True)
    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(cfg).eval()


def _mixtral(experts=4, top_k=2):
    from transformers import MixtralConfig, MixtralForCausalLM

    cfg = MixtralConfig(vocab_size=128, hidden_size=64, intermediate_size=32, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=experts,
                        num_experts_per_tok=top_k)
    torch.manual_seed(0)
    return MixtralForCausalLM(cfg).eval()


@pytest.mark.parametrize("build", [_qwen3_moe, _mixtral])
@pytest.mark.parametrize("device", ["qdev", "cpu"])
def test_quantize_moe_a8w8_matches_float_and_loop(build, device):
    fp = build()
    ids = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = fp(ids).logits.float()
    q = quantize_(copy.deepcopy(fp), A8W8DynamicConfig(), device=device)
    blocks = [m for m in q.modules() if isinstance(m, GroupedExpertsA8W8)]
    assert len(blocks) == len(fp.model.layers)
    if device == "qdev":
        assert all(int(torch_qdev.get_npu_format(b.w13)) == 29 for b in blocks)   # pre-packed
    with torch.no_grad():
        got = q(ids.to(device)).logits.float().cpu()
    cos = torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0)
    assert cos > 0.995, cos
    # the same int8 experts as a per-expert loop of dense LinearA8W8Dynamic layers
    loop = copy.deepcopy(fp)
    for layer in loop.model.layers:
        mlp = layer.mlp if hasattr(layer, "mlp") else layer.block_sparse_moe
        mlp.experts = PerExpertLoopA8W8(mlp.experts)
    quantize_(loop, A8W8DynamicConfig(), device=device)
    with torch.no_grad():
        got_loop = loop(ids.to(device)).logits.float().cpu()
    torch.testing.assert_close(got, got_loop, rtol=2e-2, atol=2e-2)


def test_grouped_experts_block_equals_formula():
    """One expert block against the formula with the module's own int8 weights (decode and prefill)."""
    fp = _qwen3_moe(experts=6, top_k=3)
    experts = fp.model.layers[0].mlp.experts
    mod = GroupedExpertsA8W8.from_float(experts).to("qdev")
    g = torch.Generator().manual_seed(2)
    for tokens in (1, 9):
        x = torch.randn(tokens, 64, generator=g)
        idx = torch.stack([torch.randperm(6, generator=g)[:3] for _ in range(tokens)])
        w = torch.rand(tokens, 3, generator=g)
        with torch.no_grad():
            got = mod(x.qdev(), idx.qdev(), w.qdev()).cpu()
        w13 = mod.w13.cpu().float() * mod.w13_scale.cpu()[:, None, :]     # (E, H, 2I) dequantized
        w2 = mod.w2.cpu().float() * mod.w2_scale.cpu()[:, None, :]
        want = torch.zeros(tokens, 64)
        for t in range(tokens):
            for k in range(3):
                e = int(idx[t, k])
                gate, up = (x[t] @ w13[e]).chunk(2)
                want[t] += w[t, k] * ((torch.nn.functional.silu(gate) * up) @ w2[e])
        # activations are quantized to int8 per token twice: ~1 % error
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.05 * want.abs().max().item())


def test_quantize_moe_a16w8_bf16():
    fp = _qwen3_moe()
    ids = torch.randint(0, 128, (1, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = fp(ids).logits.float()
    q = quantize_(copy.deepcopy(fp).to(torch.bfloat16), A16W8Config(), device="qdev")
    assert any(isinstance(m, GroupedExpertsA16W8) for m in q.modules())
    with torch.no_grad():
        got = q(ids.qdev()).logits.float().cpu()
    assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.99


def test_moe_demo_smoke(capsys):
    from torch_qdev.demo_moe import main

    assert main(["--model", "moe", "--hidden", "128", "--moe-inter", "64", "--experts", "8", "--top-k", "2",
                 "--layers", "1", "--vocab", "256", "--prompt-len", "8", "--new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "grouped MoE (fused path)" in out and "of roofline" in out


def test_quantize_moe_w4a8():
    from torch_qdev.quantization import GroupedExpertsW4A8, W4A8DynamicConfig

    fp = _qwen3_moe()
    ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = fp(ids).logits.float()
    q = quantize_(copy.deepcopy(fp), W4A8DynamicConfig(group_size=32), device="qdev")
    blocks = [m for m in q.modules() if isinstance(m, GroupedExpertsW4A8)]
    assert len(blocks) == 1 and int(torch_qdev.get_npu_format(blocks[0].w13)) == 29
    with torch.no_grad():
        got = q(ids.qdev()).logits.float().cpu()
    assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.97


def test_quantize_moe_respects_filter_fn():
    fp = _qwen3_moe()
    q = quantize_(copy.deepcopy(fp), A8W8DynamicConfig(), filter_fn=lambda m, fqn: "experts" not in fqn)
    assert not any(isinstance(m, GroupedExpertsA8W8) for m in q.modules())
    assert q.model.layers[0].mlp.experts.gate_up_proj.dtype == torch.float32


@pytest.mark.parametrize("cls", ["GroupedExpertsA8W8", "GroupedExpertsW4A8"])
def test_grouped_experts_compile_fullgraph(cls):
    """The whole fused block (routing, two grouped GEMMs, SwiGLU-quant, unpermute) traces as one graph."""
    import torch_qdev.quantization as tq

    class Experts(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(5)
            self.gate_up_proj = torch.nn.Parameter(torch.randn(6, 64, 64, generator=g) * 0.05)
            self.down_proj = torch.nn.Parameter(torch.randn(6, 64, 32, generator=g) * 0.05)

    m = getattr(tq, cls).from_float(Experts()).to("qdev")
    g = torch.Generator().manual_seed(6)
    x, idx, w = torch.randn(5, 64, generator=g), torch.randint(0, 6, (5, 2), generator=g), torch.rand(5, 2, generator=g)
    args = (x.qdev(), idx.qdev(), w.qdev())
    got = torch.compile(m, fullgraph=True, backend="aot_eager")(*args)
    assert torch.equal(got.cpu(), m(*args).cpu())
