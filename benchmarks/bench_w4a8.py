"""W4A8-dynamic benchmark: torch_qdev's dyn_quant_matmul_4bit beside PyTorch's low-bit paths, in one process.

    .venv/bin/python benchmarks/bench_w4a8.py [--shapes 4096x4096,4096x11008] [--m 1,128]

Rows (y = x @ W^T, W [N, K], fp32 activations unless noted):
  qdev W4A8 gs=32 / channelwise   torch_qdev.dyn_quant_matmul_4bit (qdev tensors, packed once)
  torch _dyn_quant_matmul_4bit    PyTorch's own op on the CPU (x86: the scalar reference)
  torch.ao dynamic Linear [fbgemm] int8 per-channel weights (twice the weight bytes)
  _weight_int4pack_mm_for_cpu     tinygemm int4 g32 with bf16 activations
  onnxruntime MatMulNBits          4-bit, block 32, accuracy_level 4 (int8 activations), if installed
Decode (M=1) rotates weight copies (>= 160 MiB) and reports weight GB/s against the streaming read
bandwidth measured in the same rounds; prefill reports GOP/s. Peers are measured in interleaved
rounds, each keeping its median.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import warnings

import torch
from torch.testing._internal.common_quantization import _group_quantize_tensor_symmetric

import torch_qdev
from _harness import copies_for, measure, read_bandwidth
from _peers import ort_matmul_nbits


def build(K, N, M, copies, slow_ok):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(M, K, generator=gen)
    ws = [torch.randn(K, N, generator=gen) * 0.02 for _ in range(copies)]  # [K, N] as the helpers expect
    ref = x @ ws[0]
    peers = {}
    for gs, label in ((32, "gs=32"), (K, "channelwise")):
        qs = [_group_quantize_tensor_symmetric(w, 4, gs) for w in ws]
        packs = [torch_qdev.dyn_quant_pack_4bit_weight(u.qdev(), (s.float() if gs == K else s.bfloat16()).qdev(),
                                                       None, gs, K, N) for u, s in qs]
        xq = x.qdev()
        # weight bytes as in perf_anchors' rooflines: nibbles + scales (what decode must read)
        info_bytes = K * N // 2 + (4 * N if gs == K else (K // gs) * N * 2)
        peers[f"qdev W4A8 {label}"] = (lambda i, p=packs, gs=gs: torch_qdev.dyn_quant_matmul_4bit(xq, p[i], gs, K, N),
                                       ref, info_bytes)
        if slow_ok and gs == 32:
            tp = torch._dyn_quant_pack_4bit_weight(qs[0][0], qs[0][1].bfloat16(), None, gs, K, N)
            peers["torch _dyn_quant_matmul_4bit gs=32"] = (
                lambda i, tp=tp: torch._dyn_quant_matmul_4bit(x, tp, 32, K, N), ref, None)
    torch.backends.quantized.engine = "fbgemm"
    mods = []
    for w in ws:
        lin = torch.nn.Linear(K, N, bias=False)
        lin.weight.data = w.t().contiguous()
        mods.append(torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                           dtype=torch.qint8))
    peers["torch.ao dynamic Linear [fbgemm] (int8 weights)"] = (lambda i: mods[i](x), ref, K * N)
    xb = x.bfloat16()
    i4 = []
    for w in ws:  # tinygemm format: value = (u4 - 8) * scale + zero, here zero = 0 (symmetric)
        wt = w.t().contiguous().reshape(N, K // 32, 32)
        sc = wt.abs().amax(-1).clamp_min(1e-12) / 7
        q = torch.round(wt / sc[..., None]).clamp(-8, 7).reshape(N, K).to(torch.int32)
        packed = torch._convert_weight_to_int4pack_for_cpu((q + 8).contiguous(), 1)
        sz = torch.zeros(K // 32, N, 2, dtype=torch.bfloat16)
        sz[:, :, 0] = sc.t().bfloat16()
        i4.append((packed, sz))
    peers["_weight_int4pack_mm_for_cpu g32 (bf16 x)"] = (
        lambda i: torch._weight_int4pack_mm_for_cpu(xb, i4[i][0], 32, i4[i][1]), ref, K * N // 2)
    runs = [ort_matmul_nbits(w.t().contiguous(), M, 32) for w in ws]
    if runs[0] is not None:
        peers["onnxruntime MatMulNBits b32 acc4"] = (lambda i: runs[i](x), ref, K * N // 2)
    return peers


def main() -> int:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="4096x4096,4096x11008")
    p.add_argument("--m", default="1,128")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, qdev kernels {torch_qdev._C._get_cpu_isa()}")
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        for M in (int(v) for v in args.m.split(",")):
            copies = copies_for(K * N // 2) if M == 1 else 1
            peers = build(K, N, M, copies, slow_ok=True)
            times = {name: [] for name in peers}
            bws = []
            for r in range(args.rounds):
                if M == 1:
                    bws.append(max(read_bandwidth()))
                for name, (run, _, _) in peers.items():
                    slow = name.startswith("torch _dyn")
                    if slow and r > 0:
                        continue
                    t, _ = measure(run, 1 if slow else copies, target_s=0.0 if slow else 0.2, min_iter=1 if slow else 5,
                                   max_iter=2 if slow else 200)
                    times[name].append(t)
            base = statistics.median(times[next(iter(peers))])
            bw = statistics.median(bws) if bws else 0.0
            print(f"### K={K} N={N} M={M}" + (f" (cold: {copies} copies; read BW median {bw:.1f} GB/s)" if M == 1 else ""))
            print("| peer | time ms | " + ("weight GB/s (% of read BW)" if M == 1 else "GOP/s") + " | peer time / qdev W4A8 gs=32 time | rel. err |")
            print("|---|---|---|---|---|")
            for name, (run, ref, nbytes) in peers.items():
                t = statistics.median(times[name])
                y = run(0).float().cpu()
                err = f"{((y - ref).norm() / ref.norm()).item() * 100:.1f}%"
                if M == 1:
                    rate = f"{nbytes / t / 1e9:.1f} ({nbytes / t / 1e9 / bw * 100:.0f}%)" if nbytes else "-"
                else:
                    rate = f"{2 * M * K * N / t / 1e9:.0f}"
                print(f"| {name} | {t * 1e3:.3f} | {rate} | {t / base:.2f}x | {err} |")
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
