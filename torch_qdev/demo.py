"""The main job (``python3 run.py demo``): a quantized Llama decoder on qdev, beside fp32 and
PyTorch's own quantized CPU paths.

A Llama-architecture model (Hugging Face ``LlamaForCausalLM``) is built from a config with
random weights (no download). Each torch_qdev config quantizes its Linear layers with
``torch_qdev.quantization.quantize_`` and runs on qdev (in bfloat16; W4A8 in float32, as PyTorch's
dynamic 4-bit path); the peers are fp32 eager on
CPU, ``torch.ao`` dynamic int8 (fbgemm), ``_weight_int4pack_mm_for_cpu`` (int4 weight-only,
bf16) and ``_dyn_quant_matmul_4bit`` (PyTorch's W4A8 path; scalar on x86, so it runs a
shorter prompt). All models are built first and then measured interleaved, round by round, so
that the shared machine's drifting memory bandwidth hits every run alike: a timed prefill (logits
of the last position, as generation does; the faster of two rounds when one takes under 4 s),
greedy decode spread over four rounds (the median step), then an untimed pass over the prompt
whose logits are compared with fp32 (cosine similarity, top-1 agreement). The table also goes to
CSV and a PNG plot.

A full-depth time is extrapolated from the measured decoder layers (per-layer time from hooks)
when fewer layers than the real model has are built, and a 7B estimate is compared with the
figure PyTorch reports for its Arm KleidiAI path.
"""
from __future__ import annotations

import argparse
import copy
import csv
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

import torch_qdev  # noqa: F401  (also autoloaded by `import torch`)
from torch_qdev.quantization import A8W8DynamicConfig, A16W4Config, A16W8Config, W4A8DynamicConfig, quantize_
from torch_qdev.generation import DecodeStep, add_demo_arguments, demo_profile, static_cache, strip_hooks
from torch_qdev.quantization.torch_peers import (TorchDynQuant4bitLinear, TorchInt4WeightOnlyLinear,
                                                 fbgemm_dynamic_int8, swap_linears)

# Llama shapes (public configs); `layers` is how many a full model has.
MODELS = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}
DEFAULT_LAYERS = {"tiny": 2, "1b": 16, "7b": 2, "8b": 2}
# PyTorch's KleidiAI W4A8 path (pytorch/pytorch#134124): 7B transformer on an Arm Neoverse server.
KLEIDIAI_7B = {"prefill": 340.0, "decode": 40.0}

OURS = {
    "a8w8": ("qdev A8W8-dynamic", A8W8DynamicConfig()),
    "w4a8": ("qdev W4A8-dynamic g32 (fp32 x)", W4A8DynamicConfig()),  # the default recipe (group 32)
    "w4a8c": ("qdev W4A8-dynamic channelwise (fp32 x)", W4A8DynamicConfig(group_size=None)),
    "a16w8": ("qdev A16W8", A16W8Config()),
    "a16w4": ("qdev A16W4 g32", A16W4Config()),  # the default recipe (group 32)
}
PEERS = {
    "fbgemm": "torch.ao dynamic int8 (fbgemm, fp32)",
    "int4wo": "torch int4 weight-only g32 (bf16)",
    "dynq4": "torch _dyn_quant_matmul_4bit g32 (fp32)",
}


@dataclass
class Result:
    name: str
    kind: str  # "baseline", "qdev" or "torch"
    prompt_len: int
    prefill_s: float
    decode_steps: int
    decode_s: float
    weight_bytes: int
    cos: float
    top1: float
    same_tokens: int
    layer_prefill_s: float
    layer_decode_s: float
    tokens: list = field(default_factory=list)

    @property
    def prefill_tps(self) -> float:
        return self.prompt_len / self.prefill_s

    @property
    def decode_tps(self) -> float:
        return self.decode_steps / self.decode_s if self.decode_steps else float("nan")


def build_model(size: str, layers: int, seed: int = 0):
    return random_llama({**MODELS[size], "num_hidden_layers": layers}, seed)


def random_llama(dims: dict, seed: int = 0, std: Optional[float] = None):
    """A LlamaForCausalLM of ``dims`` with seeded N(0, std) weights (default: Llama's
    initializer_range) and unit norms; the same on every call with the same seed."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    cfg = LlamaConfig(**dims, max_position_embeddings=4096)
    # Built on the meta device and filled once: Hugging Face's own init writes every weight twice
    # (nn.Linear's, then its normal_), ~3x slower at 1B.
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    model = model.to_empty(device="cpu").eval()
    model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg)  # its buffers are computed, not learned
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(False)
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, cfg.initializer_range if std is None else std, generator=gen)
    return model


def shallow_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every tensor with ``model``. Variants change it only by
    replacing modules and parameters (never in place), so the fp32 model stays intact."""
    memo = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def cast_float_params(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Casts the parameters of every module except Linear layers (they are quantized from the fp32
    weights) by replacing them. Buffers (RoPE frequencies) stay float32, as Hugging Face intends."""
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            continue
        for name, p in list(mod.named_parameters(recurse=False)):
            if p.is_floating_point() and p.dtype != dtype:
                setattr(mod, name, nn.Parameter(p.detach().to(dtype), requires_grad=False))
    return model


def tensor_bytes(model: nn.Module) -> int:
    """Bytes of the distinct tensors in ``state_dict`` (covers fbgemm's packed params too)."""
    seen, total = set(), 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor):
            key = (t.device.type, t.data_ptr())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
        elif isinstance(t, (tuple, list)):
            for v in t:
                add(v)

    for v in model.state_dict().values():
        add(v)
    return total


class LayerTimer:
    """Wall time spent inside the decoder layers (hooks on the first and the last)."""

    def __init__(self, layers: nn.ModuleList, device: torch.device) -> None:
        self.total = 0.0
        self._t0 = 0.0
        sync = torch.qdev.synchronize if device.type == "qdev" else (lambda: None)

        def start(*_):
            sync()
            self._t0 = time.perf_counter()

        def stop(*_):
            sync()
            self.total += time.perf_counter() - self._t0

        self._handles = [layers[0].register_forward_pre_hook(start), layers[-1].register_forward_hook(stop)]

    def take(self) -> float:
        t, self.total = self.total, 0.0
        return t

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class Run:
    """One model under test. The runs of a demo are measured interleaved (``measure``): each round
    times every model in turn, so that a drift of the shared machine's memory bandwidth or load hits
    all of them alike instead of whichever ran during it."""

    def __init__(self, name: str, kind: str, model: nn.Module, prompt: torch.Tensor, new_tokens: int,
                 device: torch.device, slow: bool = False, compile: bool = False) -> None:
        self.name, self.kind, self.model, self.device, self.slow = name, kind, model, device, slow
        # compiled decode over a static cache (torch_qdev.generation); None: eager with HF's dynamic cache
        self.step = DecodeStep(model, compile=True) if compile else None
        self.ids = prompt.to(device)
        self.new_tokens = new_tokens
        self.sync = torch.qdev.synchronize if device.type == "qdev" else (lambda: None)
        self.timer = LayerTimer(model.model.layers, device)
        self.weight_bytes = tensor_bytes(model)
        self.prefill_s = self.layer_prefill = float("inf")
        self.steps: list[float] = []
        self.layer_steps: list[float] = []
        self.tokens: list[int] = []
        self.prompt_logits: Optional[torch.Tensor] = None
        self._past = self._tok = None

    @torch.inference_mode()
    def warm_up(self) -> None:
        self.model(self.ids[:, : 1 if self.slow else 8], use_cache=False, logits_to_keep=1)  # first-call costs
        self.sync()
        self.timer.take()

    @torch.inference_mode()
    def prefill(self) -> float:
        """A timed prefill (logits of the last position, as generation does; all positions for a slow
        run, whose logits then serve the agreement columns); keeps the fastest. Restarts decoding."""
        self.sync()
        t0 = time.perf_counter()
        cache = static_cache(self.model, self.ids.shape[1] + self.new_tokens) if self.step else None
        if self.step:
            self.step.cache = cache
        out = self.model(self.ids, use_cache=True, logits_to_keep=0 if self.slow else 1, past_key_values=cache)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        self.sync()
        t = time.perf_counter() - t0
        layer_t = self.timer.take()
        if t < self.prefill_s:
            self.prefill_s, self.layer_prefill = t, layer_t
        if self.slow:
            self.prompt_logits = out.logits[0].float().cpu()
        self._past, self._tok, self.tokens = out.past_key_values, tok, [int(tok)]
        self.steps, self.layer_steps = [], []
        return t

    @torch.inference_mode()
    def decode(self, n: int) -> None:
        """Up to n more timed greedy steps (each timed alone; the result is the median step)."""
        for _ in range(min(n, self.new_tokens - len(self.tokens))):
            t0 = time.perf_counter()
            if self.step:
                strip_hooks(self.model)  # timer hooks (sync, clock; also ones deep-copied from the fp32
                # model) cannot be compiled: layer times stay eager-only
                self._tok = self.step(self._tok, torch.tensor([self.ids.shape[1] + len(self.tokens) - 1],
                                                              device=self.device))
            else:
                out = self.model(self._tok, past_key_values=self._past, use_cache=True)
                self._tok = out.logits[:, -1].argmax(-1, keepdim=True)
            self.tokens.append(int(self._tok))
            self.steps.append(time.perf_counter() - t0)
            self.layer_steps.append(self.timer.take())

    @torch.inference_mode()
    def result(self, ref_logits: Optional[torch.Tensor], ref_tokens: Optional[list]) -> tuple[Result, torch.Tensor]:
        """The row of the table; the untimed pass over the prompt gives the agreement with fp32."""
        self.timer.remove()
        self._past = self._tok = None
        logits = self.prompt_logits if self.slow else self.model(self.ids, use_cache=False).logits[0].float().cpu()
        if ref_logits is None:
            cos, top1 = 1.0, 1.0
        else:
            ref = ref_logits[: logits.shape[0]]
            cos = torch.nn.functional.cosine_similarity(logits, ref, dim=-1).mean().item()
            top1 = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
        if ref_tokens is None:  # the reference itself (all equal), or a shorter prompt (not comparable)
            same = len(self.tokens) if ref_logits is None else -1
        else:
            same = next((i for i, (a, b) in enumerate(zip(self.tokens, ref_tokens)) if a != b),
                        min(len(self.tokens), len(ref_tokens)))
        steps = len(self.steps)
        decode_s = statistics.median(self.steps) * steps if steps else 0.0
        layer_decode = statistics.median(self.layer_steps) * steps if steps else 0.0
        return Result(self.name, self.kind, self.ids.shape[1], self.prefill_s, steps, decode_s, self.weight_bytes,
                      cos, top1, same, self.layer_prefill, layer_decode, self.tokens), logits


def measure(runs: list[Run], decode_rounds: int = 4) -> None:
    """Interleaved timing: every run warms up, then two prefill rounds (one for runs slower than
    4 s), then the decode steps spread over rounds, each round visiting every run."""
    for r in runs:
        r.warm_up()
    for rnd in range(2):
        for r in runs:
            if rnd == 0 or (not r.slow and r.prefill_s < 4.0):
                r.prefill()
    for rnd in range(decode_rounds):
        for r in runs:
            left = r.new_tokens - len(r.tokens)
            r.decode(-(-left // (decode_rounds - rnd)))


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def release_memory() -> None:
    """Frees a finished variant now (Hugging Face modules hold reference cycles) and returns qdev's
    cached blocks, so that variants never stack up in memory."""
    gc.collect()
    if torch.qdev.is_initialized():
        torch.qdev.empty_cache()


def activation_dtype(config) -> torch.dtype:
    """W4A8 reads float32 activations directly, as PyTorch's dynamic 4-bit path does (bf16 runs a
    1B decode step ~25 % slower here); the others run the model in bfloat16, as on an NPU."""
    return torch.float32 if isinstance(config, W4A8DynamicConfig) else torch.bfloat16


def qdev_variant(model_fp32: nn.Module, config, device: torch.device) -> nn.Module:
    m = cast_float_params(shallow_copy(model_fp32), activation_dtype(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        quantize_(m, config, device=device)
    return m


def peer_variant(model_fp32: nn.Module, key: str) -> nn.Module:
    m = shallow_copy(model_fp32)
    if key == "fbgemm":
        return fbgemm_dynamic_int8(m)
    if key == "int4wo":
        return swap_linears(cast_float_params(m, torch.bfloat16), lambda lin: TorchInt4WeightOnlyLinear(lin, 32))
    if key == "dynq4":
        return swap_linears(m, lambda lin: TorchDynQuant4bitLinear(lin, 32))
    raise ValueError(key)


def fmt_table(results: list[Result], baseline: Result) -> str:
    best_torch = {
        "prefill": max((r.prefill_tps for r in results if r.kind == "torch"), default=float("nan")),
        "decode": max((r.decode_tps for r in results if r.kind == "torch"), default=float("nan")),
    }
    lines = ["| run | prefill tok/s | decode tok/s | vs fp32 (prefill / decode) | vs best torch quantized "
             "(prefill / decode) | weights MiB | logit cos | top-1 agree | same greedy tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        vs_torch = (f"{r.prefill_tps / best_torch['prefill']:.2f}x / {r.decode_tps / best_torch['decode']:.2f}x"
                    if r.kind == "qdev" else "")
        note = f" ({r.prompt_len}-token prompt)" if r.prompt_len != baseline.prompt_len else ""
        lines.append(
            f"| {r.name}{note} | {r.prefill_tps:.1f} | {r.decode_tps:.2f} | "
            f"{r.prefill_tps / baseline.prefill_tps:.2f}x / {r.decode_tps / baseline.decode_tps:.2f}x | {vs_torch} | "
            f"{r.weight_bytes / 2**20:.0f} | "
            f"{r.cos:.4f} | {r.top1 * 100:.0f}% | {f'{r.same_tokens}/{len(r.tokens)}' if r.same_tokens >= 0 else 'n/a'} |")
    return "\n".join(lines)


def extrapolate(r: Result, layers: int, full_layers: int) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) of the full-depth model: measured time plus the missing layers
    at the measured per-layer time."""
    extra = (full_layers - layers) / layers
    pre = r.prefill_s + extra * r.layer_prefill_s
    dec = r.decode_s + extra * r.layer_decode_s
    return r.prompt_len / pre, (r.decode_steps / dec if r.decode_steps else float("nan"))


def write_outputs(results: list[Result], out_dir: Path, title: str) -> tuple[Path, Optional[Path]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "llm_demo.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "kind", "prompt_len", "prefill_tok_s", "decode_tok_s", "weights_mib",
                    "logit_cos", "top1_agree", "same_greedy_tokens"])
        for r in results:
            w.writerow([r.name, r.kind, r.prompt_len, f"{r.prefill_tps:.3f}", f"{r.decode_tps:.4f}",
                        f"{r.weight_bytes / 2**20:.1f}", f"{r.cos:.5f}",
                        f"{r.top1:.4f}", r.same_tokens])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return csv_path, None
    colors = {"baseline": "#888888", "torch": "#d08c3c", "qdev": "#2a6fb0"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(results) + 1.8), sharey=True)
    names = [r.name for r in results][::-1]
    for ax, (label, attr) in zip(axes, (("prefill tokens/s", "prefill_tps"), ("decode tokens/s", "decode_tps"))):
        vals = [getattr(r, attr) for r in results][::-1]
        ax.barh(names, vals, color=[colors[r.kind] for r in results][::-1])
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log scale)")
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.3g}", va="center", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    png_path = out_dir / "llm_demo.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return csv_path, png_path


def main(argv: Optional[list[str]] = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--tp" or a.startswith("--tp=") for a in raw):  # tensor parallel: torch_qdev.demo_tp
        from .demo_tp import main as tp_main

        return tp_main(raw)
    if "--model=moe" in raw or any(a == "--model" and b == "moe" for a, b in zip(raw, raw[1:])):
        from .demo_moe import main as moe_main  # the MoE demo lives in its own module

        return moe_main(raw)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["smollm2", "gemma3"] + sorted(MODELS), default="smollm2",
                   help="a real model (smollm2: SmolLM2-135M-Instruct, the default; gemma3: Gemma-3-270M), or "
                        "random-weight Llama dimensions for speed runs (tiny, 1b: Llama-3.2-1B, 7b, 8b)")
    p.add_argument("--gguf", default=None, help="a local GGUF file of a supported architecture (real-model demo)")
    p.add_argument("--ppl-text", default=None, help="real models: perplexity on this UTF-8 text file "
                                                     "(default: the shipped public-domain web_genesis.txt)")
    p.add_argument("--ppl-windows", type=int, default=6, help="real models: windows of the text scored (0: all)")
    p.add_argument("--ppl-window", type=int, default=512, help="real models: tokens per perplexity window")
    p.add_argument("--decode-steps", type=int, default=32, help="real models: timed greedy decode steps")
    p.add_argument("--chat-prompt", default=None, help="real models: the prompt generated from (chat template)")
    p.add_argument("--remove-grid", action="store_true",
                   help="real Llama models: fold RMSNorm gains and rotate the residual stream first (same function, "
                        "no weight on the file's 4-bit grid)")
    p.add_argument("--json", default=None, help="real models: write every figure to this JSON file")
    p.add_argument("--layers", type=int, default=None, help="decoder layers to build (default: all for 1b, 2 for 7b/8b)")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated (real models: for the chat prompt)")
    p.add_argument("--configs", default="a8w8,w4a8,a16w8,a16w4", help=f"torch_qdev configs: {','.join(OURS)}")
    p.add_argument("--peers", default=None, help=f"PyTorch CPU peers: {','.join(PEERS)} or none (default: all for "
                                                  f"random weights, int4wo for real models)")
    p.add_argument("--slow-prompt-len", type=int, default=4, help="prompt length for the scalar x86 dynq4 peer")
    p.add_argument("--slow-new-tokens", type=int, default=2, help="tokens the dynq4 peer generates")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="qdev", help="where the torch_qdev configs run: qdev (default) or cpu")
    p.add_argument("--extrapolate-7b", action=argparse.BooleanOptionalAction, default=None,
                   help="also measure 2 layers of Llama-2-7B and estimate the full model (default: on for 1b)")
    p.add_argument("--out-dir", default="demo_out", help="where the CSV and PNG go")
    add_demo_arguments(p)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    real = bool(args.gguf) or args.model not in MODELS
    if args.peers is None:
        args.peers = "int4wo" if real else "fbgemm,int4wo,dynq4"
    args.configs_list = [c for c in args.configs.split(",") if c]
    args.peers_list = [c for c in args.peers.split(",") if c and c != "none"]
    for c in args.configs_list:
        if c not in OURS:
            p.error(f"unknown config {c!r}; choose from {', '.join(OURS)}")
    for c in args.peers_list:
        if c not in PEERS:
            p.error(f"unknown peer {c!r}; choose from {', '.join(PEERS)}")
    if real:
        from .demo_real import run_real
        return run_real(args)
    device = torch.device(args.device)
    layers = args.layers or DEFAULT_LAYERS[args.model]
    full_layers = MODELS[args.model]["num_hidden_layers"]
    configs = [c for c in args.configs.split(",") if c]
    peers = [c for c in args.peers.split(",") if c and c != "none"]
    for c in configs:
        if c not in OURS:
            p.error(f"unknown config {c!r}; choose from {', '.join(OURS)}")
    for c in peers:
        if c not in PEERS:
            p.error(f"unknown peer {c!r}; choose from {', '.join(PEERS)}")

    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, torch_qdev {torch_qdev.__version__}, {torch.get_num_threads()} threads on "
          f"{os.cpu_count()} cores ({cpu}), qdev kernels: {torch_qdev._C._get_cpu_isa()}")
    t_build = time.perf_counter()
    model = build_model(args.model, layers)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"Llama {args.model} dimensions, {layers}/{full_layers} layers, {n_params / 1e9:.2f}B parameters, random "
          f"weights (built in {time.perf_counter() - t_build:.1f} s); prompt {args.prompt_len} tokens, "
          f"greedy decode {args.new_tokens} tokens, batch 1")
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_len), generator=gen)

    runs = [Run("fp32 eager (CPU)", "baseline", model, prompt, args.new_tokens, torch.device("cpu"))]
    for key in configs:
        name, config = OURS[key]
        if device.type != "qdev":
            name = name.replace("qdev ", "qdev kernels on CPU: ")
        t0 = time.perf_counter()
        runs.append(Run(name, "qdev", qdev_variant(model, config, device), prompt, args.new_tokens, device,
                        compile=args.compile and device.type == "qdev"))
        release_memory()  # the quantization's temporaries, before the next model is built
        print(f"  quantized {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    for key in [k for k in peers if k != "dynq4"]:
        t0 = time.perf_counter()
        runs.append(Run(PEERS[key], "torch", peer_variant(model, key), prompt, args.new_tokens, torch.device("cpu")))
        gc.collect()
        print(f"  built {PEERS[key]} in {time.perf_counter() - t0:.1f} s", flush=True)
    qdev_peak = torch.qdev.max_memory_allocated() if device.type == "qdev" else 0
    print("measuring, interleaved: warm-up, 2 prefill rounds, decode in 4 rounds ...", flush=True)
    measure(runs)
    demo_profile(args, [(r.name, r.model, r.ids, r.step) for r in runs if r.kind == "qdev"])
    base, ref_logits = runs[0].result(None, None)
    results = [base]
    for r in runs[1:]:
        results.append(r.result(ref_logits, base.tokens)[0])
        r.model = None
    del runs
    release_memory()
    if "dynq4" in peers:  # PyTorch's scalar x86 path: a short prompt, measured alone after the others are freed
        t0 = time.perf_counter()
        slow = Run(PEERS["dynq4"], "torch", peer_variant(model, "dynq4"), prompt[:, : args.slow_prompt_len],
                   args.slow_new_tokens, torch.device("cpu"), slow=True)
        measure([slow])
        results.append(slow.result(ref_logits, None)[0])
        del slow
        release_memory()
        print(f"  measured {PEERS['dynq4']} in {time.perf_counter() - t0:.1f} s", flush=True)
    for r in results:
        print(f"  {r.name:44s} prefill {r.prefill_tps:8.1f} tok/s  decode {r.decode_tps:7.2f} tok/s  "
              f"cos {r.cos:.4f}  top-1 {r.top1 * 100:3.0f}%", flush=True)

    title = (f"Llama {args.model} dims, {layers} layers, random weights: prefill {args.prompt_len} + decode "
             f"{args.new_tokens} tokens, batch 1, {torch.get_num_threads()} threads ({cpu})")
    print()
    print(f"## {title}")
    print(fmt_table(results, base))
    if qdev_peak:
        print(f"qdev memory: {qdev_peak / 2**30:.2f} GiB allocated at the peak, all qdev configs resident together")
    print(f"host memory: {peak_rss_bytes() / 2**30:.1f} GiB resident at the peak (the models measured together "
          f"live at once, fp32 included, so that they can be timed interleaved)")
    print("logit cos / top-1: the untimed pass over the prompt against fp32; same greedy tokens: how many "
          "generated tokens match fp32's before the first difference (random weights give flat logits, so "
          "greedy paths part early)")
    csv_path, png_path = write_outputs(results, Path(args.out_dir), title)
    print(f"wrote {csv_path}" + (f" and {png_path}" if png_path else " (matplotlib missing: no plot)"))

    if layers < full_layers:
        print(f"\nFull {args.model} depth ({full_layers} layers), extrapolated from the measured per-layer time:")
        for r in results:
            pre, dec = extrapolate(r, layers, full_layers)
            print(f"  {r.name:44s} prefill {pre:8.1f} tok/s  decode {dec:7.2f} tok/s")

    do_7b = args.extrapolate_7b if args.extrapolate_7b is not None else args.model == "1b"
    if do_7b:
        del model
        release_memory()
        estimate_7b(args, device, configs)
    return 0


def estimate_7b(args, device: torch.device, configs: list[str]) -> None:
    """Two Llama-2-7B layers measured; the 32-layer model estimated and set beside KleidiAI's figure."""
    layers = 2
    model = build_model("7b", layers)
    gen = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_len), generator=gen)
    print(f"\n## Llama-2-7B estimate: {layers} of 32 layers measured, the rest at the measured per-layer time")
    print("| run | prefill tok/s (est.) | decode tok/s (est.) | vs KleidiAI 7B (prefill / decode) |")
    print("|---|---|---|---|")
    runs = []
    for key in [k for k in configs if k in ("w4a8", "a8w8")]:
        name, config = OURS[key]
        runs.append(Run(name, "qdev", qdev_variant(model, config, device), prompt, args.new_tokens, device))
    measure(runs)
    for r in runs:
        res, _ = r.result(None, None)
        pre, dec = extrapolate(res, layers, 32)
        print(f"| {res.name} | {pre:.1f} | {dec:.2f} | {pre / KLEIDIAI_7B['prefill']:.2f}x / "
              f"{dec / KLEIDIAI_7B['decode']:.2f}x |")
        r.model = None
    release_memory()
    print(f"KleidiAI reference (pytorch/pytorch#134124): 7B prefill {KLEIDIAI_7B['prefill']:.0f} tok/s, decode "
          f"{KLEIDIAI_7B['decode']:.0f} tok/s with _dyn_quant_matmul_4bit on an Arm Neoverse server CPU (many "
          f"cores; the PR does not state the count); here {torch.get_num_threads()} x86 threads.")


if __name__ == "__main__":
    raise SystemExit(main())
