#!/usr/bin/env python3
"""The Triton kernels on a GPU without the C++ extension: a fallback step of tools/gpu_check.sh.

torch_qdev.triton needs only torch and triton; this script loads it standalone (the package
__init__, which loads torch_qdev's C++ extension, is not run), so it works even where the
extension does not build against the GPU machine's torch. It checks A8W8 (every output stage
kind) and dynamic quant on the GPU bit for bit against goldens computed on the same GPU from the
formulas (tests/quant_reference.py; the int32 accumulator from an exact float64 GEMM), then times
the issue's two targets: A8W8 M=4096 K=N=8192 with the scaled bf16 output fused vs torch._int_mm,
and W4A8 decode M=1 K=N=8192 as % of HBM bandwidth.

    python3 tools/triton_gpu_selfcheck.py [--skip-bench]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")  # a broken torch_qdev build must not stop this
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import quant_reference as ref  # noqa: E402  (plain torch goldens)


def load_standalone():
    pkg = ROOT / "torch_qdev" / "triton"
    spec = importlib.util.spec_from_file_location("qdev_triton_standalone", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["qdev_triton_standalone"] = mod
    spec.loader.exec_module(mod)
    return mod


def check_exact(tq, dev: str) -> int:
    g = torch.Generator(device=dev).manual_seed(0)
    bad = 0
    shapes = [(1, 4096, 4096), (16, 4096, 14336), (17, 1000, 520), (300, 4096, 4096), (2048, 4096, 4096)]
    if dev == "cpu":  # --dry-run: the interpreter, tiny shapes
        shapes = [(1, 600, 40), (17, 70, 36)]
    for m, k, n in shapes:
        x1 = torch.randint(-128, 128, (m, k), dtype=torch.int8, device=dev, generator=g)
        w = torch.randint(-128, 128, (n, k), dtype=torch.int8, device=dev, generator=g)
        s = torch.rand(n, device=dev, generator=g) * 1e-3
        pt = torch.rand(m, device=dev, generator=g) + 0.5
        cases = {
            "int8 f32 scale+offset": (s, dict(offset=torch.randn(n, device=dev, generator=g) * 20)),
            "int8 int64 scale": (ref.trans_quant_param(s.cpu(), torch.full((n,), 3.0)).to(dev), {}),
            "bf16 pertoken+bias": (s, dict(pertoken_scale=pt, bias=torch.randn(n, device=dev, generator=g),
                                           output_dtype=torch.bfloat16)),
            "fp16 f32 scale": (s, dict(output_dtype=torch.float16)),
            "int32": (s, dict(output_dtype=torch.int32)),
        }
        for name, (scale, kw) in cases.items():
            out = tq.npu_quant_matmul(x1, w.t(), scale, **kw)
            gold = ref.quant_matmul_epilogue((x1.double() @ w.t().double()).to(torch.int32), scale, **kw)
            same = torch.equal(out.view(torch.int16) if out.element_size() == 2 else out,
                               gold.view(torch.int16) if gold.element_size() == 2 else gold)
            bad += not same
            print(f"[selfcheck] A8W8 {m}x{k}x{n} {name}: {'bit-exact' if same else 'MISMATCH'}")
    x = torch.randn(64, 4096 if dev == "cuda" else 40, device=dev, generator=g).bfloat16()
    y, sc = tq.npu_dynamic_quant(x)
    gy, gs = ref.dynamic_quant(x)
    same = torch.equal(y, gy.to(torch.int8)) and torch.equal(sc, gs)
    bad += not same
    print(f"[selfcheck] dynamic quant {tuple(x.shape)} bf16: {'bit-exact' if same else 'MISMATCH'}")
    return bad


def bench(tq) -> None:
    def timeit(fn, reps=20):
        fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(5):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(reps):
                fn()
            e.record()
            e.synchronize()
            ts.append(s.elapsed_time(e) / 1e3 / reps)
        return statistics.median(ts)

    dev = "cuda"
    M, K, N = 4096, 8192, 8192
    x1 = torch.randint(-128, 128, (M, K), dtype=torch.int8, device=dev)
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, device=dev)
    s = torch.rand(N, device=dev) * 1e-3
    pt = torch.rand(M, device=dev)
    t_ours = timeit(lambda: tq.npu_quant_matmul(x1, w.t(), s, pertoken_scale=pt, output_dtype=torch.bfloat16))
    t_int = timeit(lambda: torch._int_mm(x1, w.t()))
    ops = 2 * M * N * K
    print(f"[selfcheck] A8W8 {M}x{K}x{N} bf16 fused: {ops / t_ours / 1e12:.0f} TOPS; torch._int_mm "
          f"{ops / t_int / 1e12:.0f} TOPS; ratio {t_int / t_ours:.2f}x (target >= 0.9x)")
    name = torch.cuda.get_device_name(0)
    nominal = 4800.0 if "H200" in name else 3350.0 if "H100" in name else None
    copies = 8
    wu = [torch.randint(0, 256, (N, K // 2), dtype=torch.uint8, device=dev) for _ in range(copies)]
    sc = (torch.rand(N, K // 32, device=dev) * 0.01).bfloat16()
    packs = [tq.dyn_quant_pack_4bit_weight(u, sc, None, 32, K, N) for u in wu]
    x = torch.randn(1, K, device=dev)
    it = iter(range(10 ** 9))
    t_w4 = timeit(lambda: tq.dyn_quant_matmul_4bit(x, packs[next(it) % copies], 32, K, N), reps=40)
    nbytes = K * N // 2 + (K // 32) * N * 2
    gbs = nbytes / t_w4 / 1e9
    pct = f"{100 * gbs / nominal:.0f}% of nominal HBM" if nominal else "nominal HBM unknown"
    print(f"[selfcheck] W4A8 decode M=1 {K}x{N} g32: {t_w4 * 1e6:.1f} us, {gbs:.0f} GB/s, {pct} (target >= 70%)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="CPU tensors through the interpreter, tiny shapes "
                    "(checks this script itself; set TRITON_INTERPRET=1)")
    args = ap.parse_args()
    dev = "cpu" if args.dry_run else "cuda"
    if dev == "cuda" and not torch.cuda.is_available():
        print("[selfcheck] no CUDA device")
        return 1
    tq = load_standalone()
    bad = check_exact(tq, dev)
    if not args.skip_bench and dev == "cuda":
        bench(tq)
    print(f"[selfcheck] {'all exact' if bad == 0 else f'{bad} MISMATCHES'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
