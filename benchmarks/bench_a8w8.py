"""A8W8 benchmark: torch_qdev's npu_quant_matmul beside PyTorch's int8 paths, in one process.

    python3 run.py demo   # not this; run:  .venv/bin/python benchmarks/bench_a8w8.py [--shapes ...]

Rows (all y = x @ W^T with W [N, K], per-output-channel int8 weights):
  qdev A8W8 op        npu_quant_matmul(x_int8, W_nz, scale, pertoken_scale, bf16 out): the op's contract,
                      x already int8 (as after npu_dynamic_quant), weight pre-packed by npu_format_cast(.., 29)
  qdev A8W8 dynamic   npu_dynamic_quant(x) + the op: a full dynamic int8 Linear from float activations
  qdev s8s8->s32      npu_quant_matmul(..., output_dtype=int32) beside torch._int_mm
  fp32 F.linear, torch._int_mm (+ dequant), torch.ao dynamic Linear qint8 [fbgemm], [onednn]
Decode (M=1) rotates weight copies (>= 160 MiB) so weights stream from DRAM; it reports weight GB/s
against the measured read bandwidth. Prefill reports GOP/s against the 939 GOP/s int8 VNNI peak.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings

import torch
import torch.nn.functional as F

import torch_qdev
from _harness import copies_for, measure, read_bandwidth

PEAK_GOPS = 939.0


def quantize_weight(w: torch.Tensor):
    s = w.abs().amax(1) / 127
    return torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8), s


def build_peers(K: int, N: int, M: int, copies: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(M, K, generator=gen)
    peers = {}
    ws = [torch.randn(N, K, generator=gen) * 0.02 for _ in range(copies)]
    ref = F.linear(x, ws[0])
    qws = [quantize_weight(w) for w in ws]

    # ours
    nz = [torch_qdev.npu_format_cast(q.t().contiguous().qdev(), 29) for q, _ in qws]
    scales = [s.float().qdev() for _, s in qws]
    xq_host, xs_host = torch_qdev.npu_dynamic_quant(x.to(torch.bfloat16))
    xq, xs = xq_host.qdev(), xs_host.qdev()
    xb = x.to(torch.bfloat16).qdev()
    peers["qdev A8W8 op (int8 x, bf16 out)"] = (
        lambda i: torch_qdev.npu_quant_matmul(xq, nz[i], scales[i], pertoken_scale=xs,
                                              output_dtype=torch.bfloat16), ref)

    def dynamic(i):
        q, s = torch_qdev.npu_dynamic_quant(xb)
        return torch_qdev.npu_quant_matmul(q, nz[i], scales[i], pertoken_scale=s, output_dtype=torch.bfloat16)

    peers["qdev A8W8 dynamic (bf16 x)"] = (dynamic, ref)
    one = torch.ones(1).qdev()
    peers["qdev s8s8->s32"] = (lambda i: torch_qdev.npu_quant_matmul(xq, nz[i], one, output_dtype=torch.int32), None)

    # PyTorch
    peers["fp32 F.linear"] = (lambda i: F.linear(x, ws[i]), ref)
    xq_cpu = xq_host
    peers["torch._int_mm s8s8->s32"] = (lambda i: torch._int_mm(xq_cpu, qws[i][0].t()), None)

    def int_mm_dyn(i):
        s = x.abs().amax(1, keepdim=True) / 127
        q = torch.round(x / s).clamp(-127, 127).to(torch.int8)
        return torch._int_mm(q, qws[i][0].t()).float() * s * qws[i][1]

    peers["torch._int_mm + dequant (dyn)"] = (int_mm_dyn, ref)
    for engine in ("fbgemm", "onednn"):
        if engine not in torch.backends.quantized.supported_engines:
            continue
        torch.backends.quantized.engine = engine
        mods = []
        for w in ws:
            lin = torch.nn.Linear(K, N, bias=False)
            lin.weight.data = w
            mods.append(torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                               dtype=torch.qint8))

        def ao(i, mods=mods, engine=engine):
            torch.backends.quantized.engine = engine
            return mods[i](x)

        peers[f"torch.ao dynamic Linear [{engine}]"] = (ao, ref)
    return peers


def main() -> int:
    warnings.filterwarnings("ignore")  # torch.ao's deprecation notices
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="4096x4096,4096x11008", help="KxN list")
    p.add_argument("--m", default="1,128,512")
    p.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (medians)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, qdev kernels "
          f"{torch_qdev._C._get_cpu_isa()} (supported: {', '.join(torch_qdev._C._supported_cpu_isas())})")
    bw_stream, bw_sum = read_bandwidth()
    bw = max(bw_stream, bw_sum)
    print(f"measured DRAM read bandwidth: {bw:.1f} GB/s (streaming read {bw_stream:.1f}, torch.sum {bw_sum:.1f}; "
          f"it drifts with host load, see perf_anchors §0); int8 VNNI peak {PEAK_GOPS:.0f} GOP/s\n")
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        for M in (int(v) for v in args.m.split(",")):
            copies = copies_for(K * N) if M == 1 else 1
            peers = build_peers(K, N, M, copies)
            # Peers are measured in interleaved rounds and each keeps its median over the
            # rounds: the host's memory bandwidth drifts within minutes, and interleaving
            # exposes every peer to the same drift.
            times = {name: [] for name in peers}
            foreign_max = {name: 0.0 for name in peers}
            bws = []
            for _ in range(args.rounds):
                if M == 1:
                    bws.append(max(read_bandwidth()))
                for name, (run, _) in peers.items():
                    t, foreign = measure(run, copies, target_s=0.2)
                    times[name].append(t)
                    foreign_max[name] = max(foreign_max[name], foreign)
            rows = []
            for name, (run, ref) in peers.items():
                err = ""
                if ref is not None:
                    y = run(0).float().cpu()
                    err = f"{((y - ref).norm() / ref.norm()).item() * 100:.1f}%"
                rows.append((name, statistics.median(times[name]), foreign_max[name], err))
            base = rows[0][1]
            if M == 1:
                bw = statistics.median(bws)
            title = f"K={K} N={N} M={M}" + (f" (cold: {copies} weight copies; read BW over the rounds "
                                              f"{min(bws):.0f}-{max(bws):.0f}, median {bw:.1f} GB/s)"
                                              if M == 1 else "")
            print(f"### {title}")
            unit = "weight GB/s (% of read BW)" if M == 1 else "GOP/s (% of int8 peak)"
            print(f"| peer | time ms | {unit} | qdev op is x faster | rel. err |")
            print("|---|---|---|---|---|")
            for name, t, foreign, err in rows:
                if M == 1:
                    gbs = K * N / t / 1e9
                    rate = f"{gbs:.1f} ({gbs / bw * 100:.0f}%)"
                else:
                    gops = 2 * M * K * N / t / 1e9
                    rate = f"{gops:.0f} ({gops / PEAK_GOPS * 100:.0f}%)"
                mark = " *" if foreign > 0.15 else ""
                print(f"| {name} | {t * 1e3:.3f}{mark} | {rate} | {t / base:.2f} | {err} |")
            print()
            del peers
    print("* = other processes used > 0.15 CPU during the measurement")
    return 0


if __name__ == "__main__":
    sys.exit(main())
