"""Grouped MoE GEMMs: npu_grouped_matmul (W8A8, W4A8, W8A16) beside a loop of dense calls and
beside float peers, for decode and prefill token counts, with % of the machine's limits.

The GEMM is one MoE layer's gate_up projection: tokens x top_k rows routed over E experts,
(K, N) = (hidden, 2 x moe_intermediate) per expert. Routing is random and changes every call
(a pool of routings), so that decode reads the active experts' weights from DRAM.

    decode  (tokens <= 8): % of roofline = (active experts' weight bytes / streaming read GB/s of as many
                           bytes, probed just before the row) / time
    prefill (tokens >= 64): GOP/s, % of the int8 peak, and the ratio to ONE dense int8 GEMM
                            (npu_quant_matmul) of the same total rows (the grouped kernel's ceiling)

    .venv/bin/python benchmarks/bench_moe.py            # Qwen3-30B-A3B-like expert (H 2048, I 768), 64 experts
    .venv/bin/python benchmarks/bench_moe.py --quick    # fewer shapes and iterations
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import torch_qdev  # noqa: E402
from _harness import measure, read_bandwidth  # noqa: E402

INT8_PEAK = 939.0  # GOP/s, 2 cores (perf_anchors.md)


def routings(tokens, top_k, experts, pool, gen):
    out = []
    for _ in range(pool):
        idx = torch.stack([torch.randperm(experts, generator=gen)[:top_k] for _ in range(tokens)])
        counts = torch.bincount(idx.reshape(-1), minlength=experts)
        out.append(counts)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--inter", type=int, default=768)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-quiet-wait", action="store_true",
                    help="measure without waiting for a quiet machine (the harness waits up to 60 s per row)")
    args = ap.parse_args()
    if args.no_quiet_wait:
        import _harness

        _harness.wait_quiet = lambda *a, **k: 0.0
    if args.threads:
        torch.set_num_threads(args.threads)
    E, top_k, K, N = args.experts, args.top_k, args.hidden, 2 * args.inter
    tokens_list = [1, 4, 128] if args.quick else [1, 4, 8, 64, 256]
    target = 0.25 if args.quick else 0.6
    gen = torch.Generator().manual_seed(0)
    dev = "qdev"

    bw, _ = read_bandwidth()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, ISA {torch_qdev._C._get_cpu_isa()}, "
          f"DRAM read {bw:.1f} GB/s, int8 peak {INT8_PEAK:.0f} GOP/s (2 cores)")
    print(f"gate_up GEMM of a MoE layer: {E} experts, top-{top_k}, K={K}, N={N} per expert "
          f"({E * K * N / 2**20:.0f} MiB int8 weights)")

    w = torch.randint(-127, 128, (E, K, N), dtype=torch.int8, generator=gen)
    w_q = w.to(dev)
    w_nz = torch_qdev.npu_format_cast(w_q, 29)
    scale = (torch.rand(E, N, generator=gen) * 1e-3).to(dev)
    w_nk = w.transpose(1, 2).contiguous().to(dev).transpose(1, 2)       # W8A16: column streams
    ascale = (torch.rand(E, N, generator=gen) * 1e-2).bfloat16().to(dev)
    wv4 = torch.randint(-8, 8, (E, K, N), dtype=torch.int8, generator=gen)
    w4 = torch_qdev.npu_convert_weight_to_int4pack(wv4.to(torch.int32))  # (E, K, N/8) int32 words
    w4 = torch_qdev.npu_format_cast(w4.to(dev), 29)  # NZ: the repacked experts stay cached
    s4 = (torch.rand(E, K // 128, N, generator=gen) * 1e-2).to(dev)
    dense_nz = [torch_qdev.npu_format_cast(w[e].contiguous().to(dev), 29) for e in range(E)]
    w_f32 = w.float()  # fp32 peer (same shapes, CPU)
    has_grouped_mm = hasattr(torch, "_grouped_mm")
    w_bf16 = w.bfloat16().contiguous() if has_grouped_mm else None
    del wv4

    rows_fmt = "{:>6} {:>5} {:<34} {:>9} {:>9} {:>8} {:>12}"
    print(rows_fmt.format("tokens", "rows", "path", "ms", "GOP/s", "% limit", "vs grouped"))
    for tokens in tokens_list:
        rows = tokens * top_k
        pool = routings(tokens, top_k, E, 16, gen)
        gls = [c.to(dev) for c in pool]
        active = sum(int((c > 0).sum()) for c in pool) / len(pool)
        x8 = torch.randint(-127, 128, (rows, K), dtype=torch.int8, generator=gen).to(dev)
        pts = torch.rand(rows, generator=gen).to(dev)
        xb = torch.randn(rows, K, generator=gen).bfloat16().to(dev)
        decode = tokens <= 8
        ops = 2.0 * rows * K * N

        # Decode roofline: the streaming-read probe over as many bytes as the active experts hold,
        # measured right here (DRAM contention on this shared machine changes from minute to minute).
        probe_bw = bw
        if decode:
            chunk = -(-int(active * K * N) // 64) * 64
            buf = torch.ones(max(256 << 20, 8 * chunk) // 4)
            slots = buf.numel() * 4 // chunk
            ts = sorted(torch_qdev._C._read_seconds(buf[(i * 7 % slots) * chunk // 4:][: chunk // 4])[0]
                        for i in range(15))
            probe_bw = chunk / ts[len(ts) // 2] / 1e9
            del buf
            print(f"   streaming read of {chunk / 2**20:.1f} MiB now: {probe_bw:.1f} GB/s (the decode roofline)")

        def limit(t, wbytes_per_elem=1.0):
            if decode:
                return active * K * N * wbytes_per_elem / (probe_bw * 1e9) / t * 100
            return ops / t / 1e9 / INT8_PEAK * 100

        results = {}

        def run(name, fn, wbytes=1.0, peer=True):
            t, _ = measure(lambda i: fn(i % len(pool)), len(pool), target_s=target)
            results[name] = t
            base = results.get("qdev W8A8 grouped (NZ), bf16 out")
            ratio = f"{t / base:.2f}x" if base and name != "qdev W8A8 grouped (NZ), bf16 out" else ""
            print(rows_fmt.format(tokens, rows, name, f"{t * 1e3:.3f}", f"{ops / t / 1e9:.0f}",
                                  f"{limit(t, wbytes):.0f}%", ratio))

        gmm = torch_qdev.npu_grouped_matmul
        run("qdev W8A8 grouped (NZ), bf16 out", lambda i: gmm(
            [x8], [w_nz], scale=[scale], per_token_scale=[pts], group_list=gls[i], split_item=3, group_type=0,
            group_list_type=1, output_dtype=torch.bfloat16))
        run("qdev W8A8 grouped (NZ), int32 out", lambda i: gmm(
            [x8], [w_nz], group_list=gls[i], split_item=3, group_type=0, group_list_type=1,
            output_dtype=torch.int32))
        if not args.quick:
            run("qdev W8A8 grouped (ND, packs/call)", lambda i: gmm(
                [x8], [w_q], group_list=gls[i], split_item=3, group_type=0, group_list_type=1,
                output_dtype=torch.int32))
        starts = [torch.cat([torch.zeros(1, dtype=torch.long), c.cumsum(0)]).tolist() for c in pool]

        def loop_dense(i):
            st = starts[i]
            for e in range(E):
                if st[e + 1] > st[e]:
                    torch_qdev.npu_quant_matmul(x8[st[e]:st[e + 1]], dense_nz[e], scale[e],
                                                pertoken_scale=pts[st[e]:st[e + 1]], output_dtype=torch.bfloat16)
        run("loop of dense npu_quant_matmul", loop_dense)
        run("qdev W4A8 grouped g128, bf16 out", lambda i: gmm(
            [x8], [w4], scale=[s4], per_token_scale=[pts], group_list=gls[i], split_item=3, group_type=0,
            group_list_type=1, output_dtype=torch.bfloat16), wbytes=0.5)
        run("qdev W8A16 grouped (bf16 x)", lambda i: gmm(
            [xb], [w_nk], antiquant_scale=[ascale], group_list=gls[i], split_item=3, group_type=0,
            group_list_type=1), wbytes=1.0)
        xf = xb.float().cpu()

        def loop_f32(i):
            st = starts[i]
            for e in range(E):
                if st[e + 1] > st[e]:
                    torch.mm(xf[st[e]:st[e + 1]], w_f32[e])
        run("fp32 loop of torch.mm (CPU)", loop_f32, wbytes=4.0)
        if has_grouped_mm:
            xbc = xb.cpu()
            offs = [c.cumsum(0).to(torch.int32) for c in pool]
            try:
                torch._grouped_mm(xbc, w_bf16, offs=offs[0])
                run("bf16 torch._grouped_mm (CPU)", lambda i: torch._grouped_mm(xbc, w_bf16, offs=offs[i]),
                    wbytes=2.0)
            except (RuntimeError, NotImplementedError) as exc:
                print(f"   torch._grouped_mm unavailable on this CPU build: {str(exc).splitlines()[0][:80]}")
        if not decode:
            xd = x8.clone()
            run("dense npu_quant_matmul, all rows", lambda i: torch_qdev.npu_quant_matmul(
                xd, dense_nz[0], scale[0], pertoken_scale=pts, output_dtype=torch.bfloat16))
            g, d = results["qdev W8A8 grouped (NZ), bf16 out"], results["dense npu_quant_matmul, all rows"]
            print(f"   grouped prefill GOP/s = {d / g * 100:.0f}% of one dense GEMM with the same rows")
        else:
            print(f"   active experts per call: {active:.1f} ({active * K * N / 2**20:.1f} MiB int8 read)")


if __name__ == "__main__":
    main()
