"""Accuracy beside llama.cpp: the same float32 weights quantized by torch_qdev's configs and by
llama.cpp's own quantizer, perplexity over the same token windows in both engines.

    .venv/bin/python benchmarks/bench_accuracy.py [--model smollm2] [--variants plain,rotated] [--quick]

For each model variant (``plain``: the weights as the GGUF wheel holds them, already on a 4-bit
grid; ``rotated``: RMSNorm gains folded and the residual stream rotated by a random orthogonal
matrix, the same function with no weight left on that grid, torch_qdev.quantization.rotate):

* ours: fp32 eager, then each torch_qdev config (``--configs``) built with ``quantize_`` on qdev;
* llama.cpp: the fp32 weights written as an F32 GGUF (``gguf.GGUFWriter``, arch ``llama``, q/k rows
  permuted to llama.cpp's RoPE layout, a synthetic vocabulary: token ids are fed directly), scored
  as F32 (which must match our fp32) and after ``llama_model_quantize`` to each of ``--llama-types``.

Perplexity: ``--windows`` non-overlapping windows of ``--window`` tokens of the shipped
public-domain text (or ``--ppl-text``), each from an empty cache, every position but the first
predicted. Bits per weight count the decoder blocks' Linear weights with their scales/minimums
(llama.cpp: the GGUF tensors' bytes; ours: the quantized layers' tensors); the output head's format
is listed separately.

llama-cpp-python is a benchmark-only dependency, kept in its own venv (``--llama-venv``, created
and built from PyPI source with CMAKE_ARGS=-DGGML_NATIVE=ON when missing: ~10 min on 2 cores).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch_qdev import gguf_models, llm_eval  # noqa: E402
from torch_qdev.demo import OURS, qdev_variant, release_memory, tensor_bytes  # noqa: E402
from torch_qdev.quantization.rotate import remove_weight_grid  # noqa: E402

LLAMA_CPP_VERSION = "0.3.36"
WORKER = Path(__file__).resolve().parent / "_llama_cpp_worker.py"


# ---------------------------------------------------------------------------------------------- llama.cpp side
def ensure_llama_venv(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import llama_cpp, numpy"], capture_output=True).returncode == 0:
        return py
    print(f"setting up llama-cpp-python {LLAMA_CPP_VERSION} in {venv} (built from source, ~10 min) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF", FORCE_CMAKE="1")
    subprocess.run([py, "-m", "pip", "install", "-q", "numpy", "--no-binary", "llama-cpp-python",
                    f"llama-cpp-python=={LLAMA_CPP_VERSION}"], check=True, env=env)
    return py


def llama_permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Hugging Face's q/k row order (RoPE on two halves of each head) -> llama.cpp's (on adjacent pairs)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_theta(cfg) -> float:
    rp = getattr(cfg, "rope_parameters", None) or {}
    return float(rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def write_f32_gguf(model: nn.Module, path: Path, bos: int, eos: int) -> None:
    """A Llama-architecture model as an all-F32 GGUF in llama.cpp's tensor names and layout."""
    import gguf

    cfg = model.config
    if cfg.model_type not in ("llama", "mistral") or getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise SystemExit(f"only bias-free Llama-architecture models are written to GGUF here, not {cfg.model_type}")
    inner = model.model
    hidden, heads, kv_heads = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    vocab = inner.embed_tokens.weight.shape[0]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("torch_qdev bench_accuracy")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(hidden)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(getattr(cfg, "head_dim", None) or hidden // heads)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(_rope_theta(cfg))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(vocab)
    # token ids are fed directly: a synthetic SentencePiece vocabulary of the right size suffices
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>".encode() for i in range(vocab)])
    w.add_token_scores([0.0] * vocab)
    types = [gguf.TokenType.NORMAL] * vocab
    for t in {bos, eos}:
        types[t] = gguf.TokenType.CONTROL
    w.add_token_types(types)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)

    def put(name: str, t: torch.Tensor) -> None:
        w.add_tensor(name, t.detach().float().contiguous().numpy())

    put("token_embd.weight", inner.embed_tokens.weight)
    put("output_norm.weight", inner.norm.weight)
    if model.lm_head.weight.data_ptr() != inner.embed_tokens.weight.data_ptr():
        put("output.weight", model.lm_head.weight)
    for i, layer in enumerate(inner.layers):
        a, m = layer.self_attn, layer.mlp
        put(f"blk.{i}.attn_norm.weight", layer.input_layernorm.weight)
        put(f"blk.{i}.attn_q.weight", llama_permute(a.q_proj.weight, heads))
        put(f"blk.{i}.attn_k.weight", llama_permute(a.k_proj.weight, kv_heads))
        put(f"blk.{i}.attn_v.weight", a.v_proj.weight)
        put(f"blk.{i}.attn_output.weight", a.o_proj.weight)
        put(f"blk.{i}.ffn_norm.weight", layer.post_attention_layernorm.weight)
        put(f"blk.{i}.ffn_gate.weight", m.gate_proj.weight)
        put(f"blk.{i}.ffn_up.weight", m.up_proj.weight)
        put(f"blk.{i}.ffn_down.weight", m.down_proj.weight)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gguf_formats(path: Path) -> tuple[float, str]:
    """(bits per weight of the blocks' matrices, the output head's type) of a GGUF file."""
    import gguf

    r = gguf.GGUFReader(str(path))
    nbytes = nelem = 0
    head = None
    for t in r.tensors:
        if t.name.startswith("blk.") and len(t.shape) == 2:
            nbytes += int(t.n_bytes)
            nelem += int(t.n_elements)
        if t.name == "output.weight" or (t.name == "token_embd.weight" and head is None):
            head = t.tensor_type.name
    return 8 * nbytes / nelem, head


def llama_cpp_run(py: Path, *args) -> None:
    subprocess.run([py, WORKER, *map(str, args)], check=True)


# ---------------------------------------------------------------------------------------------- our side
def our_formats(model: nn.Module) -> tuple[float, str]:
    """(bits per weight of the decoder blocks' quantized Linear layers, the head's type)."""
    nbytes = nelem = 0
    for layer in model.model.layers:
        for mod in layer.modules():
            if hasattr(mod, "in_features") and hasattr(mod, "out_features") and not list(mod.children()):
                sd = {k: v for k, v in mod.state_dict().items() if not k.endswith("bias")}
                nbytes += tensor_bytes(_Holder(sd))
                nelem += mod.in_features * mod.out_features
    head = model.lm_head
    kind = type(head).__name__ if type(head) is not nn.Linear else str(head.weight.dtype).replace("torch.", "")
    return 8 * nbytes / nelem, kind


class _Holder(nn.Module):
    def __init__(self, sd: dict) -> None:
        super().__init__()
        self._sd = sd

    def state_dict(self, *a, **k):  # noqa: D401
        return self._sd


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", choices=["smollm2"], help="a pinned Llama-architecture model")
    p.add_argument("--gguf", default=None, help="instead of --model: a local Llama-architecture GGUF file")
    p.add_argument("--variants", default="plain,rotated", help="plain (weights as stored), rotated (grid removed)")
    p.add_argument("--configs", default=None, help=f"torch_qdev configs: {','.join(OURS)} (default: all)")
    p.add_argument("--llama-types", default=None, help="llama.cpp quantization types (default: Q8_0,Q4_0,Q4_K_M)")
    p.add_argument("--windows", type=int, default=None, help="windows scored (default 40)")
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--ppl-text", default=None, help="text file (default: the shipped web_genesis.txt)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llama-venv", default=str(ROOT / "benchmarks" / "results" / "llama_venv"),
                   help="venv with llama-cpp-python (created and built when missing)")
    p.add_argument("--work-dir", default=str(ROOT / "benchmarks" / "results" / "accuracy_work"))
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "accuracy.json"))
    p.add_argument("--quick", action="store_true", help="defaults of 4 windows, Q4_K_M only, configs w4a8,a16w4")
    args = p.parse_args(argv)
    for key, full, quick in (("windows", 40, 4), ("llama_types", "Q8_0,Q4_0,Q4_K_M", "Q4_K_M"),
                             ("configs", ",".join(OURS), "w4a8,a16w4")):
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    py = ensure_llama_venv(Path(args.llama_venv))
    path = Path(args.gguf) if args.gguf else gguf_models.model_path(args.model)
    device = torch.device("qdev")
    rows = []
    for variant in [v for v in args.variants.split(",") if v]:
        model, tok = gguf_models.load(path)
        if variant == "rotated":
            remove_weight_grid(model, seed=0)
        elif variant != "plain":
            raise SystemExit(f"unknown variant {variant!r}")
        ids = llm_eval.text_ids(tok, gguf_models.read_text(args.ppl_text))
        windows = llm_eval.token_windows(ids, args.window, args.windows)
        label = f"{path.stem} ({variant})"
        print(f"== {label}: {windows.shape[0]} x {args.window} tokens", flush=True)

        def add(engine, fmt, bpw, head, nll, ntok, secs):
            rows.append(dict(model=label, engine=engine, format=fmt, bpw=bpw, head=head, ppl=float(np.exp(nll / ntok)),
                             nll=nll, tokens=ntok, seconds=secs))
            r = rows[-1]
            print(f"  {engine:9s} {fmt:34s} {bpw:6.2f} bpw  ppl {r['ppl']:.4f}  ({secs:.0f} s)", flush=True)

        res, _ = llm_eval.perplexity(model, windows, torch.device("cpu"))
        add("torch_qdev", "fp32 eager", 32.0, "fp32", res.nll, res.tokens, res.seconds)
        for key in [c for c in args.configs.split(",") if c]:
            m = qdev_variant(model, OURS[key][1], device)
            bpw, head = our_formats(m)
            res, _ = llm_eval.perplexity(m, windows, device)
            add("torch_qdev", OURS[key][0].replace("qdev ", ""), bpw, head, res.nll, res.tokens, res.seconds)
            del m
            release_memory()

        np.save(work / "windows.npy", windows.numpy().astype(np.int32))
        f32 = work / f"{path.stem}-{variant}-F32.gguf"
        bos = tok.bos_token_id if tok.bos_token_id is not None else 0
        eos = tok.eos_token_id if tok.eos_token_id is not None else bos
        write_f32_gguf(model, f32, bos, eos)
        del model
        gc.collect()
        for fmt in ["F32"] + [t for t in args.llama_types.split(",") if t]:
            q = f32 if fmt == "F32" else work / f"{path.stem}-{variant}-{fmt}.gguf"
            if fmt != "F32":
                llama_cpp_run(py, "quantize", f32, q, fmt, args.threads)
            out = work / "ppl.json"
            llama_cpp_run(py, "ppl", q, work / "windows.npy", args.threads, out)
            r = json.loads(out.read_text())
            bpw, head = gguf_formats(q)
            add("llama.cpp", fmt, bpw, head, r["nll"], r["tokens"], r["seconds"])
            if q != f32:
                q.unlink()
        f32.unlink()

    print("\n| model | engine | format | bits/weight (blocks) | output head | perplexity | vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for label in dict.fromkeys(r["model"] for r in rows):
        group = [r for r in rows if r["model"] == label]
        base = next(r["ppl"] for r in group if r["format"] == "fp32 eager")
        for r in sorted(group, key=lambda r: (-r["bpw"], r["engine"])):
            print(f"| {label} | {r['engine']} | {r['format']} | {r['bpw']:.2f} | {r['head']} | {r['ppl']:.4f} | "
                  f"{(r['ppl'] / base - 1) * 100:+.2f} % |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(dict(windows=args.windows, window=args.window, threads=args.threads,
                                               rows=rows), indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
