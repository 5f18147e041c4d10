"""Layer-level suite over Llama shapes: every torch_qdev path beside every peer, one process.

    .venv/bin/python benchmarks/bench_llama_layers.py [--shapes 4096x4096,...] [--m 1,16,128,512]

Each row is one y = x @ W^T layer (W [N, K], float activations in, float out), as a model calls it:
  qdev A8W8-dynamic      LinearA8W8Dynamic: npu_dynamic_quant + npu_quant_matmul (NZ weight), bf16 x
  qdev W4A8-dynamic      LinearW4A8Dynamic (g32 and channelwise): dyn_quant_matmul_4bit, fp32 x
  qdev A16W8 / A16W4     LinearWeightQuant (int8 per channel / int4 g128): npu_weight_quant_batchmatmul, bf16 x
  fp32 / bf16 F.linear   PyTorch dense (MKL / oneDNN)
  torch._int_mm          s8s8->s32 only (no quantization, no scaling): the raw int8 GEMM
  torch.ao dynamic int8  fbgemm and onednn dynamic Linear (fp32 in/out)
  torch int4 wo g32      _weight_int4pack_mm_for_cpu (bf16 x)
  torch W4A8 g32         _dyn_quant_matmul_4bit (x86: scalar; run only for M <= 16, one call)
  ort MatMulNBits        onnxruntime 4-bit block 32, accuracy_level 4, when onnxruntime is installed

Decode-sized M (<= 16) rotates weight copies (>= 160 MiB per row) so that weights stream from DRAM
and reports weight GB/s as % of the streaming read bandwidth measured in the same process (the
roofline); larger M reports GOP/s as % of the int8 VNNI peak (perf_anchors §2.1: 470 GOP/s per
core). Writes benchmarks/results/llama_layers.csv and .png.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import torch_qdev
from _harness import copies_for, measure, read_bandwidth
from _peers import ort_matmul_nbits
from torch_qdev.contrib.module import LinearA8W8Dynamic, LinearW4A8Dynamic, LinearWeightQuant
from torch_qdev.quantization.torch_peers import TorchDynQuant4bitLinear, TorchInt4WeightOnlyLinear

PEAK_GOPS_PER_CORE = 470.0  # int8 VNNI, measured (perf_anchors §2.1)
SHAPES = "4096x4096,4096x11008,11008x4096,4096x14336"


def weight_bytes(k: int, n: int, bits: int, group: int = 0) -> int:
    """Bytes a layer must read per call: weights plus their scales (what decode streams)."""
    scales = n * (k // group) * 2 if group else n * 4
    return k * n * bits // 8 + (scales if bits <= 8 else 0)


def build(K: int, N: int, M: int, copies: int, slow: bool):
    """{row: (kind, run(copy) -> y, weight bytes)} for one shape."""
    gen = torch.Generator().manual_seed(0)
    linears = []
    for _ in range(copies):
        lin = nn.Linear(K, N, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(N, K, generator=gen) * 0.02)
        linears.append(lin)
    x = torch.randn(M, K, generator=gen)
    xb, xq, xbq = x.bfloat16(), x.qdev(), x.bfloat16().qdev()
    rows = {}

    def ours(name, make, inp, nbytes):
        mods = [make(lin).qdev() for lin in linears]
        rows[name] = ("qdev", lambda i: mods[i](inp), nbytes)

    ours("qdev A8W8-dynamic (bf16 x)", LinearA8W8Dynamic.from_float, xbq, weight_bytes(K, N, 8))
    ours("qdev W4A8-dynamic g32", lambda l: LinearW4A8Dynamic.from_float(l, 32), xq, weight_bytes(K, N, 4, 32))
    ours("qdev W4A8-dynamic channelwise", lambda l: LinearW4A8Dynamic.from_float(l, None), xq,
         weight_bytes(K, N, 4))
    ours("qdev A16W8 (bf16 x)", lambda l: LinearWeightQuant.from_float(l, bits=8), xbq, weight_bytes(K, N, 8))
    ours("qdev A16W4 g128 (bf16 x)", lambda l: LinearWeightQuant.from_float(l, bits=4, group_size=128), xbq,
         weight_bytes(K, N, 4, 128))

    ws = [lin.weight.detach() for lin in linears]
    rows["fp32 F.linear"] = ("torch", lambda i: F.linear(x, ws[i]), 4 * K * N)
    wbs = [w.bfloat16() for w in ws]
    rows["bf16 F.linear"] = ("torch", lambda i: F.linear(xb, wbs[i]), 2 * K * N)
    w8 = [torch.round(w / (w.abs().amax(1, keepdim=True) / 127)).to(torch.int8).t() for w in ws]
    x8 = torch.round(x / (x.abs().amax(1, keepdim=True) / 127)).to(torch.int8)
    rows["torch._int_mm s8s8->s32 (raw)"] = ("torch", lambda i: torch._int_mm(x8, w8[i]), K * N)
    for engine in ("fbgemm", "onednn"):
        if engine not in torch.backends.quantized.supported_engines:
            continue
        torch.backends.quantized.engine = engine
        mods = [torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear}, dtype=torch.qint8)
                for lin in linears]

        def ao(i, mods=mods, engine=engine):
            torch.backends.quantized.engine = engine
            return mods[i](x)

        rows[f"torch.ao dynamic int8 [{engine}]"] = ("torch", ao, K * N)
    i4 = [TorchInt4WeightOnlyLinear(lin, 32) for lin in linears]
    rows["torch int4 weight-only g32 (bf16 x)"] = ("torch", lambda i: i4[i](xb), weight_bytes(K, N, 4, 32))
    if slow:
        d4 = TorchDynQuant4bitLinear(linears[0], 32)
        rows["torch _dyn_quant_matmul_4bit g32"] = ("torch-slow", lambda i: d4(x), weight_bytes(K, N, 4, 32))
    ort = [ort_matmul_nbits(w, M, 32) for w in ws]
    if ort[0] is not None:
        rows["onnxruntime MatMulNBits b32 acc4"] = ("torch", lambda i: ort[i](x), weight_bytes(K, N, 4, 32))
    return rows, F.linear(x, ws[0])


def main() -> int:
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notices
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=SHAPES, help="KxN list (K = in_features)")
    p.add_argument("--m", default="1,16,128,512")
    p.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    threads = torch.get_num_threads()
    peak = PEAK_GOPS_PER_CORE * threads
    print(f"torch {torch.__version__}, {threads} threads, qdev kernels {torch_qdev._C._get_cpu_isa()}; "
          f"int8 peak {peak:.0f} GOP/s")
    bw = max(read_bandwidth())
    print(f"streaming read bandwidth at start: {bw:.1f} GB/s\n")
    records = []
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        for M in (int(v) for v in args.m.split(",")):
            decode = M <= 16
            copies = copies_for(K * N // 2) if decode else 1
            rows, ref = build(K, N, M, copies, slow=decode)
            if decode:
                bw = max(read_bandwidth())  # the roofline for these rows, measured now
            results = {}
            for name, (kind, run, nbytes) in rows.items():
                if kind == "torch-slow":
                    run(0)
                    t0 = time.perf_counter()
                    run(0)
                    t = time.perf_counter() - t0
                else:
                    t, _ = measure(run, copies, target_s=0.3)
                y = run(0).float().cpu()
                err = ((y - ref).norm() / ref.norm()).item() if "(raw)" not in name else float("nan")
                results[name] = (kind, t, nbytes, err)
            best_qdev = min(t for kind, t, _, _ in results.values() if kind == "qdev")
            print(f"### K={K} N={N} M={M}" + (f" (weights rotated over {copies} copies; read BW {bw:.1f} GB/s)"
                                              if decode else f" (int8 peak {peak:.0f} GOP/s)"))
            print("| path | ms | GOP/s | " + ("weight GB/s | % of read BW" if decode else "% of int8 peak")
                  + " | time vs fastest qdev | rel. err vs fp32 |")
            print("|---|---|---|---|" + ("---|" if decode else "") + "---|---|")
            for name, (kind, t, nbytes, err) in results.items():
                gops = 2 * M * K * N / t / 1e9
                gbs = nbytes / t / 1e9
                cols = f"{gbs:.1f} | {gbs / bw * 100:.0f}%" if decode else f"{gops / peak * 100:.0f}%"
                print(f"| {name} | {t * 1e3:.3f} | {gops:.1f} | {cols} | {t / best_qdev:.2f}x | {'-' if err != err else f'{err * 100:.1f}%'} |")
                records.append(dict(K=K, N=N, M=M, path=name, kind=kind.replace("-slow", ""), ms=t * 1e3, gops=gops,
                                    weight_gbs=gbs, pct_read_bw=gbs / bw * 100 if decode else "",
                                    pct_int8_peak=gops / peak * 100, rel_err=err))
            print(flush=True)
    write(records, Path(args.out_dir))
    return 0


def write(records: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "llama_layers.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    msg = f"wrote {out_dir / 'llama_layers.csv'}"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(msg + " (matplotlib missing: no plot)")
        return
    shapes = sorted({(r["K"], r["N"]) for r in records}, key=lambda s: [(r["K"], r["N"]) for r in records].index(s))
    paths = list(dict.fromkeys(r["path"] for r in records))
    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 5.5), squeeze=False)
    colors = plt.get_cmap("tab20")
    for ax, (K, N) in zip(axes[0], shapes):
        for i, path in enumerate(paths):
            pts = [(r["M"], r["gops"]) for r in records if (r["K"], r["N"], r["path"]) == (K, N, path)]
            if not pts:
                continue
            ours = path.startswith("qdev")
            ax.plot(*zip(*pts), marker="o", lw=2.2 if ours else 1.0, ls="-" if ours else "--", label=path,
                    color=colors(i % 20))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"K={K} N={N}")
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("GOP/s")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "llama_layers.png", dpi=100)
    plt.close(fig)
    print(msg + f" and {out_dir / 'llama_layers.png'}")


if __name__ == "__main__":
    sys.exit(main())
