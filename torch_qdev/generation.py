"""Greedy generation with timings for Hugging Face causal LMs on qdev, eager or compiled.

``generate(model, ids, new_tokens, compile=True)`` runs the prompt once (prefill, eager: one graph
per prompt length is not worth compiling) into Hugging Face's static KV cache, then one decode step
per token. With ``compile=True`` the decode step (model forward + greedy pick) runs under
``torch.compile(fullgraph=True)``: the quantized ``torch.ops.qdev`` ops are extern kernels in the
Inductor graph, the norms, RoPE and residual adds around them become generated C++ loops, and the
static cache keeps every shape fixed, so the step compiles once and is reused for every token
(the token and position are tensors, never Python ints).

Attention runs through ``torch.ops.qdev.decode_attention`` (``torch_qdev.attention``; selected on
the model by ``use_decode_attention``): the decode kernel reads the static cache in place with
grouped-query heads and skips its unused tail, and stays one extern call under compile (Hugging
Face's SDPA path would copy the cache per step with ``repeat_kv`` and trace attention into math).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import List, Optional

import torch
from torch import nn


@dataclass
class GenerationResult:
    tokens: List[int]                 # the new tokens (greedy), the first one from the prefill
    prompt_len: int
    prefill_s: float                  # prompt forward (incl. the first token's pick)
    step_s: List[float] = field(default_factory=list)  # each timed decode step
    compile_s: float = 0.0            # the first compiled decode step (tracing + Inductor), untimed for decode
    compiled: bool = False

    @property
    def prefill_tps(self) -> float:
        return self.prompt_len / self.prefill_s

    @property
    def decode_tps(self) -> float:
        """Tokens/s from the median decode step (robust against a shared machine's hiccups)."""
        return 1.0 / statistics.median(self.step_s) if self.step_s else float("nan")

    @property
    def decode_tps_mean(self) -> float:
        return len(self.step_s) / sum(self.step_s) if self.step_s else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "qdev":
        torch.qdev.synchronize()


def static_cache(model: nn.Module, max_len: int):
    from transformers import StaticCache

    return StaticCache(config=model.config, max_cache_len=max_len)


class DecodeStep:
    """One decode step of ``model`` over a static cache: (token (1, 1), position (1,)) -> next token
    (1, 1). ``compile=True`` wraps it in ``torch.compile(fullgraph=True, dynamic=False)``; reuse one
    DecodeStep (and one cache length) across calls to reuse its compiled code."""

    def __init__(self, model: nn.Module, compile: bool = False, backend: str = "inductor") -> None:
        from .attention import use_decode_attention

        self.model = model
        self.cache = None
        self.compiled = compile
        use_decode_attention(model)

        def step(tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            out = self.model(input_ids=tok, past_key_values=self.cache, cache_position=pos,
                             position_ids=pos.unsqueeze(0), use_cache=True, logits_to_keep=1)
            return out.logits[:, -1].argmax(-1, keepdim=True)

        self._eager = step
        # One thread for Inductor's generated loops: at one token they are tiny (norms, RoPE, the
        # greedy argmax), and an OpenMP region there cost ~60 ms per step on a busy 2-core machine
        # (the quantized matmuls and attention are extern ops with their own work-based threading).
        self._fn = (torch.compile(step, fullgraph=True, dynamic=False, backend=backend,
                                  options={"cpp.threads": 1}) if compile else step)

    def __call__(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # always inference mode: grad-mode guards then match for every caller (no recompile)
        with torch.inference_mode():
            return self._fn(tok, pos)


@torch.inference_mode()
def generate(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, *, compile: bool = False,
             step: Optional[DecodeStep] = None, max_cache_len: Optional[int] = None) -> GenerationResult:
    """Greedy ``new_tokens`` tokens after ``input_ids`` (1, P) with a static cache; times the prefill
    and every decode step (synchronized). Pass the same ``step`` (a :class:`DecodeStep`) again to reuse
    a compiled step; the cache length must then stay the same (``max_cache_len``)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"generate: input_ids must have shape (1, prompt_len), got {tuple(input_ids.shape)}")
    if new_tokens < 1:
        raise ValueError(f"generate: new_tokens must be >= 1, got {new_tokens}")
    device = input_ids.device
    prompt_len = input_ids.shape[1]
    cache_len = max_cache_len or prompt_len + new_tokens
    if cache_len < prompt_len + new_tokens:
        raise ValueError(f"generate: max_cache_len {cache_len} < prompt + new tokens {prompt_len + new_tokens}")
    if step is None:
        step = DecodeStep(model, compile=compile)
    step.cache = static_cache(model, cache_len)
    res = GenerationResult(tokens=[], prompt_len=prompt_len, prefill_s=0.0, compiled=step.compiled)
    _sync(device)
    t0 = time.perf_counter()
    out = model(input_ids=input_ids, past_key_values=step.cache, use_cache=True,
                cache_position=torch.arange(prompt_len, device=device), logits_to_keep=1)
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    res.tokens.append(int(tok.item()))
    res.prefill_s = time.perf_counter() - t0
    del out
    for i in range(new_tokens - 1):
        pos = torch.tensor([prompt_len + i], device=device)
        _sync(device)
        t0 = time.perf_counter()
        tok = step(tok, pos)
        res.tokens.append(int(tok.item()))  # .item() synchronizes
        dt = time.perf_counter() - t0
        if step.compiled and i == 0 and not getattr(step, "_warm", False):
            res.compile_s = dt
            step._warm = True
        else:
            res.step_s.append(dt)
    return res


# --- demo hooks (torch_qdev.demo) ---------------------------------------------------------------

def add_demo_arguments(parser) -> None:
    import argparse

    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="decode the qdev configs under torch.compile with a static KV cache (default; the "
                             "first step compiles, minutes on 2 cores); --no-compile: eager Hugging Face decode")
    parser.add_argument("--profile", action="store_true",
                        help="print where a decode step's time goes (per-op table) for each qdev config")


def strip_hooks(model: nn.Module) -> None:
    """Removes forward (pre-)hooks from every submodule: Python timing hooks break fullgraph compile."""
    for mod in model.modules():
        mod._forward_pre_hooks.clear()
        mod._forward_hooks.clear()


def demo_profile(args, runs) -> None:
    """``--profile``: the per-op decode table of each (name, model, prompt ids, DecodeStep or None),
    compiled (reusing the run's compiled step and cache length) or eager, as the run decoded."""
    if not getattr(args, "profile", False):
        return
    from .profiling import format_profile, profile_decode

    for name, model, ids, step in runs:
        print(f"\n## decode profile: {name} ({'compiled' if step is not None else 'eager'})")
        print(format_profile(profile_decode(model, ids, steps=4, step=step,
                                            max_cache_len=ids.shape[1] + args.new_tokens)))
