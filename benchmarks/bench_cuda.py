"""CUDA benchmark (GPU only): torch_qdev's CUDA kernels beside PyTorch's CUDA paths, in one process.

    python benchmarks/bench_cuda.py [--skip-a8w8] [--skip-w4a8] [--rounds 7]

A8W8, M=4096, K=N=8192 (int8 x int8 -> scaled bf16 / fp16 output):
  qdev npu_quant_matmul bf16+pertoken   fused epilogue: per-channel scale, per-token scale, bf16 out
  qdev npu_quant_matmul fp16 (int64)    int64 (npu_trans_quant_param) scale, fp16 out
  qdev ... [wgmma]                      the opt-in Hopper wgmma kernel (H100/H200 only)
  torch._int_mm                         cuBLASLt int8 -> int32 only (no output stage)
  torch._int_mm + dequant               the same, then a separate scale/pertoken/bf16 pass
  fp16 F.linear                         cuBLAS fp16 (the unquantized peer)
W4A8 decode, M=1..16, K=N=8192 (gs=32 bf16 scales, and channelwise), fp32 activations:
  qdev dyn_quant_matmul_4bit            activation quantization + in-register int4 decode kernel
  torch._weight_int4pack_mm (tinygemm)  weight-only int4 g32, bf16 activations, if this torch has it
  bf16 F.linear                         the unquantized peer
Decode reports the bytes each kernel must read (nibbles + scales) per second and that as a
percentage of the nominal HBM bandwidth and of a measured device-to-device copy. Weights rotate
over copies larger than L2, so they come from HBM. Peers run in interleaved rounds (the clock and
the neighbours drift), each keeping its median; CUDA events time batches of calls.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

NOMINAL_HBM_GBS = {"H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100 NVL": 3900.0, "H200": 4800.0, "A100": 2039.0}


def fail(msg: str) -> None:
    sys.exit(f"bench_cuda: {msg}")


def nominal_bandwidth(name: str) -> float | None:
    for key, gbs in NOMINAL_HBM_GBS.items():
        parts = key.split()
        if all(p in name for p in parts):
            return gbs
    return None


def copy_bandwidth() -> float:
    """Device-to-device copy GB/s (read + write bytes), median of 9."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    ts = []
    for _ in range(9):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    return 2 * n / statistics.median(ts) / 1e9


def time_batch(fn, copies: int, calls: int) -> float:
    """Seconds per call over `calls` calls rotating the weight copies."""
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for i in range(calls):
        fn(i % copies)
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / 1e3 / calls


def run_rounds(peers: dict, copies: int, rounds: int, target_s: float = 0.05) -> dict:
    calls = {}
    for name, fn in peers.items():  # warm-up, touch every copy, size the batch
        for i in range(copies):
            fn(i)
        torch.cuda.synchronize()
        one = time_batch(fn, copies, 3)
        calls[name] = max(3, min(2000, int(target_s / max(one, 1e-7))))
    times = {name: [] for name in peers}
    for _ in range(rounds):
        for name, fn in peers.items():
            times[name].append(time_batch(fn, copies, calls[name]))
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_a8w8(rounds: int) -> None:
    ops = torch.ops.qdev
    M, K, N = 4096, 8192, 8192
    gen = torch.Generator(device="cuda").manual_seed(0)
    x1 = torch.randint(-128, 128, (M, K), dtype=torch.int8, device="cuda", generator=gen)
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, device="cuda", generator=gen)  # (n, k): Linear layout
    scale = torch.rand(N, device="cuda", generator=gen) * 1e-3
    pertoken = torch.rand(M, device="cuda", generator=gen) + 0.5
    scale_i64 = ops.npu_trans_quant_param(scale)
    xh = torch.randn(M, K, device="cuda", dtype=torch.float16, generator=gen)
    wh = torch.randn(N, K, device="cuda", dtype=torch.float16, generator=gen)

    def int_mm_dequant(_):
        acc = torch._int_mm(x1, w.t())
        return (acc.float() * scale * pertoken[:, None]).to(torch.bfloat16)

    def with_wgmma(_):  # the opt-in Hopper kernel (QDEV_CUDA_WGMMA is read per call)
        os.environ["QDEV_CUDA_WGMMA"] = "1"
        try:
            return ops.npu_quant_matmul(x1, w.t(), scale, pertoken_scale=pertoken, output_dtype=torch.bfloat16)
        finally:
            os.environ.pop("QDEV_CUDA_WGMMA", None)

    peers = {
        "qdev npu_quant_matmul bf16+pertoken": lambda _: ops.npu_quant_matmul(
            x1, w.t(), scale, pertoken_scale=pertoken, output_dtype=torch.bfloat16),
        "qdev npu_quant_matmul fp16 (int64 scale)": lambda _: ops.npu_quant_matmul(
            x1, w.t(), scale_i64, output_dtype=torch.float16),
        "torch._int_mm (int32 out, no scaling)": lambda _: torch._int_mm(x1, w.t()),
        "torch._int_mm + dequant pass (bf16)": int_mm_dequant,
        "fp16 F.linear": lambda _: F.linear(xh, wh),
    }
    if torch.cuda.get_device_capability()[0] == 9:
        peers["qdev npu_quant_matmul bf16+pertoken [wgmma]"] = with_wgmma
    ours = ops.npu_quant_matmul(x1, w.t(), scale, pertoken_scale=pertoken, output_dtype=torch.bfloat16)
    err = (ours.float() - int_mm_dequant(0).float()).abs().max().item()
    if torch.cuda.get_device_capability()[0] == 9:
        wg_diff = (with_wgmma(0).float() - ours.float()).abs().max().item()
        print(f"  wgmma vs mma.sync kernel: max |diff| = {wg_diff:.3g} (0 expected)")
    med = run_rounds(peers, 1, rounds)
    ops_count = 2.0 * M * N * K
    base = med["torch._int_mm (int32 out, no scaling)"]
    print(f"\nA8W8 M={M} K={K} N={N}  (max |qdev - int_mm+dequant| = {err:.3g})")
    print(f"{'peer':44s} {'ms':>9s} {'TOPS':>8s} {'vs _int_mm':>11s}")
    for name, t in med.items():
        print(f"{name:44s} {t * 1e3:9.3f} {ops_count / t / 1e12:8.1f} {base / t:10.2f}x")


def bench_w4a8(rounds: int, ms: list[int]) -> None:
    from torch.testing._internal.common_quantization import _group_quantize_tensor_symmetric

    ops = torch.ops.qdev
    K = N = 8192
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 << 20)
    copies = max(2, -(-3 * l2 // (K * N // 2)))  # weights >= 3x L2: every call reads HBM
    nominal = nominal_bandwidth(props.name)
    measured = copy_bandwidth()
    print(f"\nW4A8 decode K={K} N={N} on {props.name}: nominal HBM "
          f"{f'{nominal:.0f} GB/s' if nominal else 'unknown'}, measured copy {measured:.0f} GB/s, "
          f"{copies} weight copies")
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(K, N, generator=gen) * 0.02 for _ in range(copies)]
    packs = {}
    for gs, label in ((32, "gs=32"), (K, "channelwise")):
        packed = []
        for w in ws:
            u8, s = _group_quantize_tensor_symmetric(w, 4, gs)
            s = s.float() if gs == K else s.bfloat16()
            packed.append(ops.dyn_quant_pack_4bit_weight(u8.cuda(), s.cuda(), None, gs, K, N))
        read_bytes = K * N // 2 + (4 * N if gs == K else (K // gs) * N * 2)
        packs[label] = (gs, packed, read_bytes)
    tiny = None
    try:  # tinygemm: weight-only int4 g32 (uint8 (N, K/2) input in recent torch)
        tiny = []
        for w in ws:
            wt = w.t().contiguous().reshape(N, K // 32, 32)
            sc = wt.abs().amax(-1).clamp(min=1e-6) / 7
            q = (wt / sc[..., None] + 8).round().clamp(0, 15).to(torch.uint8).reshape(N, K)
            u8 = (q[:, ::2] << 4 | q[:, 1::2]).contiguous().cuda()
            packed_w = torch._convert_weight_to_int4pack(u8, 8)
            sz = torch.stack([sc.t(), torch.zeros_like(sc.t())], -1).to(torch.bfloat16).cuda()  # (K/32, N, 2)
            tiny.append((packed_w, sz.contiguous()))
        torch._weight_int4pack_mm(torch.randn(1, K, device="cuda", dtype=torch.bfloat16), tiny[0][0], 32, tiny[0][1])
    except (RuntimeError, AttributeError) as exc:
        print(f"  (tinygemm peer unavailable: {str(exc).splitlines()[0]})")
        tiny = None
    wb = [w.t().contiguous().to(torch.bfloat16).cuda() for w in ws[:2]]

    print(f"{'M':>3s} {'peer':40s} {'us':>9s} {'GB/s':>8s} {'% nominal':>10s} {'% copy':>7s} {'vs bf16':>8s}")
    for m in ms:
        x = torch.randn(m, K, device="cuda")
        xb = x.to(torch.bfloat16)
        peers, bytes_of = {}, {}
        for label, (gs, packed, read_bytes) in packs.items():
            name = f"qdev W4A8 {label}"
            peers[name] = lambda i, gs=gs, packed=packed: ops.dyn_quant_matmul_4bit(x, packed[i], gs, K, N)
            bytes_of[name] = read_bytes
        if tiny:
            peers["torch._weight_int4pack_mm g32 (bf16 x)"] = lambda i: torch._weight_int4pack_mm(
                xb, tiny[i][0], 32, tiny[i][1])
            bytes_of["torch._weight_int4pack_mm g32 (bf16 x)"] = K * N // 2 + (K // 32) * N * 4
        peers["bf16 F.linear"] = lambda i: F.linear(xb, wb[i % len(wb)])
        bytes_of["bf16 F.linear"] = K * N * 2
        med = run_rounds(peers, copies, rounds)
        base = med["bf16 F.linear"]
        for name, t in med.items():
            gbs = bytes_of[name] / t / 1e9
            pct_nom = f"{100 * gbs / nominal:9.1f}%" if nominal else f"{'n/a':>10s}"
            print(f"{m:3d} {name:40s} {t * 1e6:9.1f} {gbs:8.0f} {pct_nom} {100 * gbs / measured:6.1f}% "
                  f"{base / t:7.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--m", default="1,2,4,8,16", help="decode batch sizes for W4A8")
    ap.add_argument("--skip-a8w8", action="store_true")
    ap.add_argument("--skip-w4a8", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        fail("needs a CUDA device (torch.cuda.is_available() is False); nothing was measured")
    import torch_qdev  # noqa: F401

    if not torch._C._dispatch_has_kernel_for_dispatch_key("qdev::npu_quant_matmul", "CUDA"):
        fail("torch_qdev was built without its CUDA kernels (CPU-only torch or no nvcc at build time)")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    if not args.skip_a8w8:
        bench_a8w8(args.rounds)
    if not args.skip_w4a8:
        bench_w4a8(args.rounds, [int(v) for v in args.m.split(",")])


if __name__ == "__main__":
    main()
