"""The demo on a real model (``python3 run.py demo``, ``--model smollm2|gemma3`` or ``--gguf PATH``).

The model is read from a GGUF file (the pinned PyPI wheels, or any local file of an architecture
transformers reads) in float32; fp32 eager on CPU is the reference. Each torch_qdev config (and
each PyTorch peer asked for) is built from it, measured and freed in turn, so memory stays near one
model plus one variant. For every run: the text it generates for a chat prompt (greedy), perplexity
over token windows of a real English text (the shipped public-domain ``web_genesis.txt`` or
``--ppl-text``), logit cosine and top-1 agreement with fp32 on the first window, prefill and decode
tokens/s, weight bytes and qdev memory. Printed as a table, written as CSV, a PNG plot and
(``--json``) every figure machine-readably.
"""
from __future__ import annotations

import csv
import json
import platform
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import torch

import torch_qdev
from . import gguf_models, llm_eval
from .demo import OURS, PEERS, peak_rss_bytes, peer_variant, qdev_variant, release_memory, tensor_bytes

DEFAULT_CHAT_PROMPT = "What is the capital of France? Answer in one sentence."
DEFAULT_BASE_PROMPT = "The capital of France is"


def _qdev_peak(device: torch.device) -> int:
    return torch.qdev.max_memory_allocated() if device.type == "qdev" else 0


def measure_run(name: str, kind: str, model, tok, args, windows, prompt_ids, device, ref_logits,
                build_s: float) -> tuple[dict, Optional[torch.Tensor]]:
    speed = llm_eval.time_generation(model, windows[0][: args.prompt_len], args.decode_steps, device)
    text, gen_tokens = llm_eval.generate_text(model, tok, prompt_ids, args.new_tokens, device)
    ppl, logits = llm_eval.perplexity(model, windows, device, keep_first_logits=True)
    cos, top1 = (1.0, 1.0) if ref_logits is None else llm_eval.agreement(logits, ref_logits)
    row = dict(run=name, kind=kind, perplexity=ppl.ppl, nll=ppl.nll, ppl_tokens=ppl.tokens, ppl_seconds=ppl.seconds,
               logit_cos=cos, top1_agree=top1, prefill_tok_s=speed.prefill_tps, decode_tok_s=speed.decode_tps,
               prompt_len=speed.prompt_len, decode_steps=speed.decode_steps, weight_bytes=tensor_bytes(model),
               qdev_peak_bytes=_qdev_peak(device) if kind == "qdev" else 0, build_s=build_s,
               generated_text=text, generated_tokens=gen_tokens)
    return row, logits


def fmt_table(rows: list[dict]) -> str:
    base = rows[0]
    lines = ["| run | perplexity | vs fp32 | logit cos | top-1 agree | prefill tok/s | decode tok/s | weights MiB |"
             " qdev peak MiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['perplexity']:.3f} | {(r['perplexity'] / base['perplexity'] - 1) * 100:+.1f} % | "
                     f"{r['logit_cos']:.4f} | {r['top1_agree'] * 100:.1f}% | {r['prefill_tok_s']:.1f} | "
                     f"{r['decode_tok_s']:.1f} | {r['weight_bytes'] / 2**20:.0f} | "
                     f"{r['qdev_peak_bytes'] / 2**20:.0f} |")
    return "\n".join(lines)


def write_plot(rows: list[dict], path: Path, title: str) -> Optional[Path]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    colors = {"baseline": "#888888", "torch": "#d08c3c", "qdev": "#2a6fb0"}
    names = [r["run"] for r in rows][::-1]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(rows) + 1.9), sharey=True)
    for ax, (label, key, log) in zip(axes, (("perplexity (lower is better)", "perplexity", False),
                                            ("prefill tokens/s", "prefill_tok_s", True),
                                            ("decode tokens/s", "decode_tok_s", True))):
        vals = [r[key] for r in rows][::-1]
        ax.barh(names, vals, color=[colors[r["kind"]] for r in rows][::-1])
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.4g}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_real(args) -> int:
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    t0 = time.perf_counter()
    if args.gguf:
        path, label = Path(args.gguf), Path(args.gguf).name
    else:
        path, label = gguf_models.model_path(args.model), gguf_models.MODELS[args.model][0]
    model, tok = gguf_models.load(path)
    if args.remove_grid:
        from .quantization.rotate import remove_weight_grid
        remove_weight_grid(model, seed=0)
        label += ", 4-bit grid removed (RMSNorm gains folded, residual stream rotated)"
    n_params = sum(p.numel() for p in model.parameters())
    text_path = Path(args.ppl_text) if args.ppl_text else gguf_models.DEFAULT_TEXT
    ids = llm_eval.text_ids(tok, gguf_models.read_text(text_path))
    windows = llm_eval.token_windows(ids, args.ppl_window, args.ppl_windows)
    if args.prompt_len > args.ppl_window:
        raise SystemExit(f"--prompt-len ({args.prompt_len}) must not exceed --ppl-window ({args.ppl_window})")
    prompt = args.chat_prompt or (DEFAULT_CHAT_PROMPT if getattr(tok, "chat_template", None) else DEFAULT_BASE_PROMPT)
    prompt_ids = llm_eval.chat_prompt_ids(tok, prompt)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, torch_qdev {torch_qdev.__version__}, {torch.get_num_threads()} threads on "
          f"{os.cpu_count()} cores ({cpu}), qdev kernels: {torch_qdev._C._get_cpu_isa()}")
    print(f"{label}: {type(model).__name__}, {n_params / 1e6:.0f}M parameters, loaded in "
          f"{time.perf_counter() - t0:.1f} s ({path})")
    print(f"perplexity text: {text_path.name}, {ids.numel()} tokens; {windows.shape[0]} windows of {args.ppl_window} "
          f"tokens ({windows.numel()} tokens); speed: prefill {args.prompt_len} tokens + {args.decode_steps} "
          f"decode steps, batch 1; chat prompt {prompt!r} ({'chat template' if getattr(tok, 'chat_template', None) else 'no chat template: plain prompt'})",
          flush=True)

    rows = []
    row, ref_logits = measure_run("fp32 eager (CPU)", "baseline", model, tok, args, windows, prompt_ids,
                                  torch.device("cpu"), None, 0.0)
    rows.append(row)
    print(f"  {row['run']:42s} ppl {row['perplexity']:8.3f}  ({row['ppl_seconds']:.0f} s)", flush=True)
    variants = [(OURS[k][0], "qdev", k) for k in args.configs_list] + [(PEERS[k], "torch", k) for k in args.peers_list]
    for name, kind, key in variants:
        if kind == "qdev" and device.type != "qdev":
            name = name.replace("qdev ", "qdev kernels on CPU: ")
        if device.type == "qdev":
            torch.qdev.reset_peak_memory_stats()
        t0 = time.perf_counter()
        m = qdev_variant(model, OURS[key][1], device) if kind == "qdev" else peer_variant(model, key)
        build_s = time.perf_counter() - t0
        row, logits = measure_run(name, kind, m, tok, args, windows, prompt_ids,
                                  device if kind == "qdev" else torch.device("cpu"), ref_logits, build_s)
        rows.append(row)
        del m, logits
        release_memory()
        print(f"  {row['run']:42s} ppl {row['perplexity']:8.3f}  built in {build_s:.1f} s, measured in "
              f"{time.perf_counter() - t0 - build_s:.0f} s", flush=True)

    title = (f"{label}: perplexity on {text_path.name} ({windows.shape[0]} x {args.ppl_window} tokens), prefill "
             f"{args.prompt_len} + decode {args.decode_steps} tokens, batch 1, {torch.get_num_threads()} threads ({cpu})")
    print(f"\n## {title}")
    print(fmt_table(rows))
    rss = peak_rss_bytes()
    print(f"host memory: {rss / 2**30:.2f} GiB resident at the peak (the fp32 model plus one variant at a time)")
    print("logit cos / top-1: the first perplexity window's logits against fp32's; qdev peak: device memory "
          "allocated at the peak while that config ran")
    print(f"\nGenerated (greedy, up to {args.new_tokens} tokens) for {prompt!r}:")
    for r in rows:
        print(f"  [{r['run']}] {r['generated_text'].strip()!r}")

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"llm_demo_{Path(path).stem if args.gguf else args.model}" + ("_rotated" if args.remove_grid else "")
    csv_path = out_dir / f"{stem}.csv"
    keys = [k for k in rows[0] if k != "generated_tokens"]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    png = write_plot(rows, out_dir / f"{stem}.png", title)
    print(f"wrote {csv_path}" + (f" and {png}" if png else " (matplotlib missing: no plot)"))
    if args.json:
        doc = dict(model=label, gguf=str(path), architecture=type(model).__name__, parameters=n_params,
                   remove_grid=bool(args.remove_grid), text=str(text_path), text_tokens=ids.numel(),
                   ppl_windows=int(windows.shape[0]), ppl_window=args.ppl_window, chat_prompt=prompt,
                   threads=torch.get_num_threads(), cpu=cpu, qdev_isa=torch_qdev._C._get_cpu_isa(),
                   host_peak_rss_bytes=rss, runs=rows)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0
