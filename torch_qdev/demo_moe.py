"""The MoE demo (``python3 run.py demo --model moe``): a Qwen3-MoE-style decoder (Hugging Face
``Qwen3MoeForCausalLM``, random weights, nothing downloaded) quantized with
``quantize_(model, A8W8DynamicConfig(), device="qdev")``: its expert blocks run torch_npu's fused
MoE path (npu_moe_init_routing_v2 -> npu_grouped_matmul -> npu_dequant_swiglu_quant ->
npu_grouped_matmul -> npu_moe_token_unpermute). Beside it: fp32 eager on the CPU, and the same
int8 experts as one dense LinearA8W8Dynamic pair per expert called in a Python loop.

Prints prefill / decode tokens/s, agreement with fp32 (logit cosine, top-1), and the MoE layer's
decode time against its bandwidth roofline (the bytes of the experts one token activates).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Optional

import torch

import torch_qdev
from torch_qdev.quantization import A8W8DynamicConfig, PerExpertLoopA8W8, quantize_


def build_moe_model(hidden: int, moe_inter: int, experts: int, top_k: int, layers: int, vocab: int, seed: int = 0):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    cfg = Qwen3MoeConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden,
                         moe_intermediate_size=moe_inter, num_hidden_layers=layers, num_attention_heads=16,
                         num_key_value_heads=4, head_dim=hidden // 16, num_experts=experts,
                         num_experts_per_tok=top_k, norm_topk_prob=True, decoder_sparse_step=1,
                         max_position_embeddings=1024, tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        model = Qwen3MoeForCausalLM(cfg).eval()
    return model


@torch.no_grad()
def run_generate(model, ids: torch.Tensor, new_tokens: int):
    """Greedy prefill + decode with the KV cache; returns (prefill s, decode s per token, first logits, tokens)."""
    t0 = time.perf_counter()
    out = model(ids, use_cache=True)
    logits = out.logits[:, -1].float().cpu()
    t_prefill = time.perf_counter() - t0
    past, nxt, toks, steps = out.past_key_values, logits.argmax(-1, keepdim=True), [], []
    for _ in range(new_tokens):
        t = time.perf_counter()
        out = model(nxt.to(ids.device), past_key_values=past, use_cache=True)
        nxt = out.logits[:, -1].float().cpu().argmax(-1, keepdim=True)
        steps.append(time.perf_counter() - t)
        past = out.past_key_values
        toks.append(int(nxt))
    return t_prefill, statistics.median(steps), logits, toks


@torch.no_grad()
def moe_layer_roofline(experts_mod, hidden: int, top_k: int, n_experts: int, device, reps: int = 48):
    """One decode token through a quantized expert block beside the roofline of its active experts'
    int8 weights: each call is paired with a streaming read (torch_qdev._C._read_seconds, the benchmarks'
    probe) of as many bytes from a 256 MiB buffer, so both see the same DRAM contention on this shared
    machine. Returns (median call s, median probe s, probe GB/s)."""
    x = torch.randn(1, hidden).to(device)
    # Round-robin over all experts: between two uses of an expert the whole layer (> L3) streams by.
    routes = [((torch.arange(top_k) + i * top_k) % n_experts).reshape(1, top_k).to(device) for i in range(reps)]
    w = torch.full((1, top_k), 1.0 / top_k).to(device)
    active_bytes = top_k * 3 * hidden * experts_mod.intermediate_dim
    chunk = -(-active_bytes // 64) * 64
    probe = torch.ones(max(256 << 20, 8 * chunk) // 4)  # well beyond the 32 MiB L3
    slots = probe.numel() * 4 // chunk
    for r in routes[:3]:
        experts_mod(x, r, w)
    ts, ps = [], []
    for i, r in enumerate(routes):
        t = time.perf_counter()
        experts_mod(x, r, w)
        ts.append(time.perf_counter() - t)
        off = (i * 7 % slots) * chunk // 4
        ps.append(torch_qdev._C._read_seconds(probe[off:off + chunk // 4])[0])
    t, p = statistics.median(ts), statistics.median(ps)
    return t, p, chunk / p


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="moe", choices=["moe"], help="(the MoE demo)")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--moe-inter", type=int, default=512)
    p.add_argument("--experts", type=int, default=64)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="qdev")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, torch_qdev {torch_qdev.__version__}, {torch.get_num_threads()} threads, "
          f"qdev kernels: {torch_qdev._C._get_cpu_isa()}")
    fp32 = build_moe_model(args.hidden, args.moe_inter, args.experts, args.top_k, args.layers, args.vocab)
    n_params = sum(q.numel() for q in fp32.parameters())
    print(f"Qwen3-MoE-style decoder: {args.layers} layers, hidden {args.hidden}, {args.experts} experts "
          f"(moe_intermediate {args.moe_inter}), top-{args.top_k}: {n_params / 1e6:.0f} M parameters, random weights")

    grouped = quantize_(copy.deepcopy(fp32), A8W8DynamicConfig(), device=device)
    loop = copy.deepcopy(fp32)
    for layer in loop.model.layers:
        layer.mlp.experts = PerExpertLoopA8W8(layer.mlp.experts)
    quantize_(loop, A8W8DynamicConfig(), device=device)

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (1, args.prompt_len), generator=gen)
    rows = []
    ref_logits = ref_toks = None
    for name, model, dev in (("fp32 eager (CPU)", fp32, torch.device("cpu")),
                             ("qdev A8W8, grouped MoE (fused path)", grouped, device),
                             ("qdev A8W8, per-expert loop of dense layers", loop, device)):
        run_generate(model, ids.to(dev)[:, :8], 2)  # warm-up
        tp, td, logits, toks = run_generate(model, ids.to(dev), args.new_tokens)
        if ref_logits is None:
            ref_logits, ref_toks, cos, agree = logits, toks, 1.0, 1.0
        else:
            cos = torch.nn.functional.cosine_similarity(logits, ref_logits).item()
            agree = sum(a == b for a, b in zip(toks, ref_toks)) / max(1, len(toks))
        rows.append((name, args.prompt_len / tp, 1.0 / td, cos, agree))
    print(f"\n{'model':<44} {'prefill tok/s':>13} {'decode tok/s':>12} {'logit cos':>9} {'top-1 agree':>11}")
    for name, pf, dc, cos, agree in rows:
        print(f"{name:<44} {pf:>13.1f} {dc:>12.1f} {cos:>9.4f} {agree:>10.0%}")
    base = rows[0]
    print(f"grouped vs fp32: prefill {rows[1][1] / base[1]:.2f}x, decode {rows[1][2] / base[2]:.2f}x; "
          f"grouped vs per-expert loop: prefill {rows[1][1] / rows[2][1]:.2f}x, decode {rows[1][2] / rows[2][2]:.2f}x")

    t, t_roof, bw = moe_layer_roofline(grouped.model.layers[0].mlp.experts, args.hidden, args.top_k,
                                       args.experts, device)
    print(f"MoE layer, one decode token: {t * 1e3:.3f} ms for {args.top_k} active experts "
          f"({args.top_k * 3 * args.hidden * args.moe_inter / 2**20:.1f} MiB int8); roofline at {bw / 1e9:.1f} GB/s "
          f"{t_roof * 1e3:.3f} ms = {t_roof / t:.0%} of roofline ({args.top_k * 3 * args.hidden * args.moe_inter / t / 1e9:.1f} "
          f"GB/s achieved)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
