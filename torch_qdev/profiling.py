"""Where a decode step's time goes: a per-op table from torch.profiler, weight reads beside the rest.

``profile_decode(model, ids, steps=4, compile=False)`` prefills ``ids`` into a static cache, warms
the decode step up, then profiles ``steps`` decode steps and returns rows grouped by op (self time,
so nested ops are not counted twice), plus the step's wall time. What no op accounts for is
Python, Hugging Face and dispatch overhead. ``format_profile`` prints the table; the weight-reading
ops also get their read rate (weight bytes per token / their time).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List

import torch
from torch import nn

from .generation import DecodeStep, _sync, static_cache

# Ops whose time is streaming the quantized (or float) weights of a Linear layer.
WEIGHT_OPS = ("qdev::npu_quant_matmul", "qdev::dyn_quant_matmul_4bit", "qdev::npu_weight_quant_batchmatmul",
              "aten::mm", "aten::addmm", "aten::linear", "aten::_weight_int4pack_mm_for_cpu",
              "quantized::linear_dynamic", "aten::_dyn_quant_matmul_4bit")
CATEGORIES = [
    ("weight matmul", WEIGHT_OPS),
    ("activation quant", ("qdev::npu_dynamic_quant", "qdev::npu_add_rms_norm_dynamic_quant",
                          "qdev::npu_swiglu_quant", "qdev::npu_add_rms_norm_quant")),
    ("attention", ("qdev::decode_attention", "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::scaled_dot_product_attention",
                   "aten::_scaled_dot_product_attention_math")),
    ("kv cache update", ("aten::index_copy_", "aten::index_put_")),
    ("compiled fused kernels", ("graph_", "cpp_fused", "kernel_cpp", "Torch-Compiled Region")),
]


@dataclass
class OpRow:
    name: str
    category: str
    calls_per_step: float
    us_per_step: float


@dataclass
class DecodeProfile:
    rows: List[OpRow]
    step_us: float            # wall time of one decode step (mean over the profiled steps)
    weight_bytes: int         # bytes of Linear weights read per token

    @property
    def op_us(self) -> float:
        return sum(r.us_per_step for r in self.rows)


def category_of(name: str) -> str:
    for cat, keys in CATEGORIES:
        if any(name == k or name.startswith(k) for k in keys):
            return cat
    return "other ops"


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of every Linear-like layer's parameters and buffers (the weights a token streams)."""
    seen, total = set(), 0
    for mod in model.modules():
        if mod is model or any(True for _ in mod.children()):
            continue
        if "Linear" not in type(mod).__name__:
            continue
        for t in list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False)):
            key = (t.device.type, t.data_ptr())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


@torch.inference_mode()
def profile_decode(model: nn.Module, input_ids: torch.Tensor, steps: int = 4, compile: bool = False,
                   step: DecodeStep = None, max_cache_len: int = 0) -> DecodeProfile:
    """Pass a used ``step`` and its cache length to profile its compiled code without recompiling."""
    device = input_ids.device
    prompt_len = input_ids.shape[1]
    step = step or DecodeStep(model, compile=compile)
    step.cache = static_cache(model, max(max_cache_len, prompt_len + steps + 3))
    out = model(input_ids=input_ids, past_key_values=step.cache, use_cache=True,
                cache_position=torch.arange(prompt_len, device=device), logits_to_keep=1)
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    pos = prompt_len
    for _ in range(2):  # warm-up (and compile)
        tok = step(tok, torch.tensor([pos], device=device))
        pos += 1
    _sync(device)
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            tok = step(tok, torch.tensor([pos], device=device))
            tok.item()
            pos += 1
        wall = time.perf_counter() - t0
    rows = []
    for ev in prof.key_averages():
        us = ev.self_cpu_time_total / steps
        if us <= 0:
            continue
        rows.append(OpRow(ev.key, category_of(ev.key), ev.count / steps, us))
    rows.sort(key=lambda r: -r.us_per_step)
    # The profiler's own per-op cost inflates the wall time; report the step's wall time as profiled.
    return DecodeProfile(rows=rows, step_us=wall / steps * 1e6, weight_bytes=linear_weight_bytes(model))


def format_profile(p: DecodeProfile, top: int = 14) -> str:
    lines = [f"decode step: {p.step_us / 1e3:.2f} ms wall under the profiler ({1e6 / p.step_us:.1f} tok/s), "
             f"Linear weights {p.weight_bytes / 2**20:.1f} MiB per token"]
    by_cat = {}
    for r in p.rows:
        by_cat[r.category] = by_cat.get(r.category, 0.0) + r.us_per_step
    overhead = max(0.0, p.step_us - p.op_us)
    lines.append(f"{'where':<34}{'ms/step':>9}{'share':>8}   note")
    for cat, us in sorted(by_cat.items(), key=lambda kv: -kv[1]):
        note = ""
        if cat == "weight matmul" and us > 0:
            note = f"weights read at {p.weight_bytes / (us * 1e-6) / 1e9:.1f} GB/s"
        lines.append(f"{cat:<34}{us / 1e3:>9.3f}{us / p.step_us:>8.1%}   {note}")
    lines.append(f"{'Python / HF / dispatch (no op)':<34}{overhead / 1e3:>9.3f}{overhead / p.step_us:>8.1%}")
    lines.append("")
    lines.append(f"{'op (self time)':<52}{'calls':>7}{'ms/step':>9}{'share':>8}  category")
    for r in p.rows[:top]:
        lines.append(f"{r.name[:51]:<52}{r.calls_per_step:>7.0f}{r.us_per_step / 1e3:>9.3f}"
                     f"{r.us_per_step / p.step_us:>8.1%}  {r.category}")
    return "\n".join(lines)
