"""Decode (M=1) at small-model shapes: the Linear layers of one SmolLM2-135M token, ours beside PyTorch.

    .venv/bin/python benchmarks/bench_small_decode.py [--quick] [--group 32] [--layers 30]

Per token a SmolLM2 layer runs q/o (576x576), k/v (576x192), gate/up (576->1536), down (1536->576);
the figure is the time of all layers' Linears for one token (bf16 activations), each path over the
same weights: qdev A16W4 (LinearWeightQuant, symmetric and with offsets), qdev W4A8 (asymmetric),
PyTorch's int4 weight-only kernel (``_weight_int4pack_mm_for_cpu``) and bf16 ``F.linear``.
Distinct weights per layer, so the caches see the model's footprint (~30 MB of int4 at 30 layers).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import torch_qdev  # noqa: F401
from torch_qdev.quantization import A16W4Config, W4A8DynamicConfig

SHAPES = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]  # (K, N)


def torch_int4(lin: nn.Linear, group: int):
    n, k = lin.weight.shape
    wt = lin.weight.detach().float().reshape(n, k // group, group)
    sc = wt.abs().amax(-1).clamp_min(1e-12) / 7
    q = torch.round(wt / sc[..., None]).clamp(-8, 7).reshape(n, k).to(torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu((q + 8).contiguous(), 1)
    sz = torch.zeros(k // group, n, 2, dtype=torch.bfloat16)
    sz[:, :, 0] = sc.t().bfloat16()
    return lambda x: torch._weight_int4pack_mm_for_cpu(x, packed, group, sz)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--group", type=int, default=32)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="8 layers, fewer rounds")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    layers = 8 if args.quick else args.layers
    rounds = 3 if args.quick else args.rounds
    torch.manual_seed(0)
    lins = [nn.Linear(k, n, bias=False) for _ in range(layers) for k, n in SHAPES]
    g = args.group
    paths = {
        f"qdev A16W4 g{g} (offsets, default)": [A16W4Config(group_size=g).convert(l) for l in lins],
        f"qdev A16W4 g{g} symmetric": [A16W4Config.pytorch_recipe(g).convert(l) for l in lins],
        f"PyTorch int4 g{g} (_weight_int4pack_mm_for_cpu)": [torch_int4(l, g) for l in lins],
        "bf16 F.linear": [(lambda w: (lambda x: nn.functional.linear(x, w)))(l.weight.detach().bfloat16()) for l in lins],
        f"qdev W4A8 g{g} (asym, fp32 x)": [W4A8DynamicConfig(group_size=g).convert(l) for l in lins],
    }
    xs = {k: torch.randn(1, k) for k in (576, 1536)}
    xb = {k: v.bfloat16() for k, v in xs.items()}
    print(f"SmolLM2 decode Linears, {layers} layers x 7, M=1, threads {torch.get_num_threads()}")
    times = {name: [] for name in paths}
    with torch.no_grad():
        for _ in range(rounds):  # interleaved, so drift hits every path alike
            for name, fns in paths.items():
                x = xs if "W4A8" in name else xb
                for f, l in zip(fns, lins):  # warm
                    f(x[l.in_features])
                t0 = time.perf_counter()
                for _ in range(3):
                    for f, l in zip(fns, lins):
                        f(x[l.in_features])
                times[name].append((time.perf_counter() - t0) / 3 * 1e3)
    ref = statistics.median(times[f"PyTorch int4 g{g} (_weight_int4pack_mm_for_cpu)"])
    print(f"{'path':<52} {'ms/token':>9} {'vs torch int4':>14}")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<52} {med:9.2f} {med / ref:13.2f}x")


if __name__ == "__main__":
    main()
