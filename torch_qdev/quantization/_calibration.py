"""Calibration for quantize_: per-layer input statistics and activation-aware scaling (AWQ).

One pass of the float model over the calibration batches records, for every target Linear, the
mean square and mean magnitude of its input per channel, and keeps a sample of input rows.
Then per layer:
  * importance = mean x^2 per input channel weights the scale/zero search (llama.cpp's imatrix);
  * with ``config.awq``: the input scale s = mean|x|^alpha (normalised), alpha from a grid, that
    minimises || X W^T - (X / s) Q(W * s)^T || on the sampled rows (AWQ: salient input channels get
    finer weight steps). The layer keeps 1 / s as its input_scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .int4_search import quantize_groups_asym

_SAMPLE_ROWS = 256
_ALPHAS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75)


@dataclass
class LayerStats:
    sumsq: torch.Tensor
    sumabs: torch.Tensor
    count: int
    sample: Optional[torch.Tensor]


def _run(model: nn.Module, batch) -> None:
    if isinstance(batch, dict):
        model(**batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    else:
        model(batch)


def collect(model: nn.Module, targets: List[Tuple[str, nn.Linear]], batches: Iterable) -> Dict[str, LayerStats]:
    stats: Dict[str, LayerStats] = {}
    gen = torch.Generator().manual_seed(0)

    def hook_for(fqn: str, linear: nn.Linear):
        def hook(mod, args):
            x = args[0].detach().reshape(-1, linear.in_features).float()
            st = stats.get(fqn)
            if st is None:
                z = torch.zeros(linear.in_features)
                st = stats[fqn] = LayerStats(z.clone(), z.clone(), 0, None)
            st.sumsq += x.square().sum(0).cpu()
            st.sumabs += x.abs().sum(0).cpu()
            st.count += x.shape[0]
            take = x[torch.randperm(x.shape[0], generator=gen)[:_SAMPLE_ROWS]].cpu()
            st.sample = take if st.sample is None else torch.cat([st.sample, take])[-4 * _SAMPLE_ROWS:]
        return hook

    handles = [m.register_forward_pre_hook(hook_for(f, m)) for f, m in targets]
    try:
        with torch.no_grad():
            for batch in batches:
                _run(model, batch)
    finally:
        for h in handles:
            h.remove()
    return stats


def _fake_quant(config, w: torch.Tensor, importance: Optional[torch.Tensor]) -> torch.Tensor:
    """The weight as the config's layer would dequantize it (kernel rounding of scales aside)."""
    n, k = w.shape
    gs = getattr(config, "group_size", None) or k
    u, scale, minimum = quantize_groups_asym(w, gs, importance=importance, search=config.search)
    return (u.reshape(n, k // gs, gs) * scale[..., None] + minimum[..., None]).reshape(n, k)


def convert_calibrated(config, linear: nn.Linear, st: LayerStats) -> nn.Module:
    importance = st.sumsq / max(st.count, 1)
    if not (getattr(config, "awq", False) and config.supports_input_scale and getattr(config, "asymmetric", False)):
        return config.convert(linear, importance=importance)
    x = st.sample
    w = linear.weight.detach().float()
    ref = x @ w.t()
    act = (st.sumabs / max(st.count, 1)).clamp_min(1e-6)
    best = (None, float("inf"))
    for alpha in _ALPHAS:
        if alpha == 0:
            s = torch.ones_like(act)
        else:
            s = act.pow(alpha)
            s = s / (s.max() * s.min()).sqrt()
            s = 1.0 / (1.0 / s.clamp_min(1e-4)).to(torch.bfloat16).float()  # 1 / s stored exactly in bf16
        wq = _fake_quant(config, w * s[None, :], importance / (s * s))
        err = (ref - (x / s[None, :]) @ wq.t()).square().sum().item()
        if err < best[1]:
            best = (None if alpha == 0 else s, err)
    s = best[0]
    if s is None:
        return config.convert(linear, importance=importance)
    return config.convert(linear, importance=importance / (s * s), input_scale=1.0 / s)
