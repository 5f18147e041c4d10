#!/usr/bin/env python3
"""Ahead-of-time check of the Triton kernels (torch_qdev/triton) for sm_80 and sm_90, no GPU needed.

Every kernel is compiled with triton.compile(ASTSource(...), target=GPUTarget("cuda", 80|90, 32)),
the way a launch would compile it (same constexprs, launch options, 16-divisible pointers and
sizes). The check fails when
  * a GEMM's PTX lacks its tensor-core instruction: int8 GEMMs need mma.sync ... s8 (sm_80) and,
    for 64+-row tiles on sm_90, wgmma ... s8; the weight-only GEMM the same with f16/bf16 operands;
  * ptxas (Triton's own, run with -v on the PTX) reports spill stores + loads above SPILL_LIMIT
    (128) bytes per thread for any kernel;
  * a kernel whose results must match the CPU bit for bit contains an approximate division
    (div.approx / div.full) or a fused multiply-add (fma.rn.f32 from contraction).

    .venv/bin/python tools/check_triton_kernels.py          (CI: the largest tile of every schedule)
    .venv/bin/python tools/check_triton_kernels.py --all    (every autotune configuration)
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")  # the kernels need no qdev device
os.environ.pop("TRITON_INTERPRET", None)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A launch specializes integer arguments equal to 1 as constants: the unit strides of the layouts
# the ops are used with (row-major activations, the transpose of an nn.Linear (n, k) weight).
UNIT_STRIDES_QMM = dict(stride_ak=1, stride_bk=1)

# Stated limit: at most 128 bytes of spill stores + loads per thread, which only the fused output
# stage of a 128x128 GEMM tile reaches (after the k loop); larger spills mean a slower tile, which
# belongs out of the autotune list.
SPILL_LIMIT = 128


def _specs(all_configs: bool):
    """(label, module, kernel name, pointer types, scalar types, constexprs, options, kind) per compile."""
    from torch_qdev.triton import quant_matmul as qm, w4a8, weight_quant as wq
    out = []
    qmm_ptrs = dict(a_ptr="*i8", b_ptr="*i8", scale_ptr="*i64", offset_ptr="*fp32", pertoken_ptr="*fp32",
                    bias_ptr="*fp32")
    # int8 output with the packed int64 scale: the longest output stage (bit-exact requant)
    ep_i8 = dict(OUT=qm.OUT_I8, SCALE=qm.SC_I64, SCALE_PER_COL=True, OFFSET=qm.OFF_PACKED, OFFSET_PER_COL=True,
                 HAS_PERTOKEN=False, BIAS=qm.BIAS_I32)
    ep_bf16 = dict(OUT=qm.OUT_BF16, SCALE=qm.SC_F32, SCALE_PER_COL=True, OFFSET=qm.OFF_NONE, OFFSET_PER_COL=False,
                   HAS_PERTOKEN=True, BIAS=qm.BIAS_FLOAT)
    # CI: the largest prefill tiles (most registers), one with each output stage
    prefill = qm.PREFILL_CONFIGS if all_configs else qm.PREFILL_CONFIGS[:2]
    for c in prefill:
        for name, ep, cptr in (("bf16 out", ep_bf16, "*bf16"), ("int8 out", ep_i8, "*i8")):
            if not all_configs and (name == "int8 out") != (c.kwargs["BLOCK_K"] == 64):
                continue
            scale_t = "*i64" if ep["SCALE"] == qm.SC_I64 else "*fp32"
            bias_t = "*i32" if ep["BIAS"] == qm.BIAS_I32 else "*fp32"
            out.append((f"A8W8 prefill {name} {_cfg(c)}", "quant_matmul", "_qmm_kernel",
                        dict(qmm_ptrs, c_ptr=cptr, scale_ptr=scale_t, bias_ptr=bias_t), {},
                        dict(ep, SPLIT_K=1, EVEN_K=True, **UNIT_STRIDES_QMM, **c.kwargs), _opts(c), "s8"))
    decode = qm.DECODE_CONFIGS if all_configs else qm.DECODE_CONFIGS[1:2]
    for c in decode:
        kw = dict(c.kwargs)
        out.append((f"A8W8 decode split-K {_cfg(c)}", "quant_matmul", "_qmm_kernel", dict(qmm_ptrs, c_ptr="*i32"), {},
                    dict(OUT=qm.OUT_I32, SCALE=qm.SC_NONE, SCALE_PER_COL=False, OFFSET=qm.OFF_NONE,
                         OFFSET_PER_COL=False, HAS_PERTOKEN=False, BIAS=qm.BIAS_NONE, EVEN_K=True, **UNIT_STRIDES_QMM,
                         **kw),
                    _opts(c), "s8-mma"))
    out.append(("A8W8 split-K output stage (int8)", "quant_matmul", "_qmm_epilogue_kernel",
                dict(acc_ptr="*i32", c_ptr="*i8", scale_ptr="*i64", offset_ptr="*fp32", pertoken_ptr="*fp32",
                     bias_ptr="*i32"), {}, dict(ep_i8, BLOCK_M=16, BLOCK_N=128), dict(num_warps=4), "exact"))
    out.append(("dynamic quant rows (asymmetric, smooth)", "dynamic_quant", "_quant_rows_kernel",
                dict(x_ptr="*bf16", smooth_ptr="*bf16", grp_ptr="*i32", q_ptr="*i8", scale_ptr="*fp32",
                     offset_ptr="*fp32"), dict(dst_max="fp32", dst_min="fp32"),
                dict(HAS_SMOOTH=True, GROUPED=True, ASYM=True, BLOCK_H=4096), dict(num_warps=8), "exact"))
    out.append(("W4A8 activation rows (qai8dx)", "w4a8", "_qai8dx_rows_kernel",
                dict(x_ptr="*bf16", q_ptr="*i8", recip_ptr="*fp32", zp_ptr="*i32"), {}, dict(BLOCK_K=2048),
                dict(num_warps=8), "exact"))
    w4_ptrs = dict(q_ptr="*i8", zp_ptr="*i32", recip_ptr="*fp32", w_ptr="*u8", scale_ptr="*bf16",
                   colsum_ptr="*i16", bias_ptr="*fp32", out_ptr="*bf16")
    w4cfgs = w4a8.W4_CONFIGS if all_configs else [w4a8.W4_CONFIGS[2], w4a8.W4_CONFIGS[4]]
    for c in w4cfgs:
        for paired, bk in ((False, 128), (True, 64)):
            if not all_configs and paired and c.kwargs["BLOCK_M"] != 16:
                continue
            kind = "s8" if c.kwargs["BLOCK_M"] >= 64 else "s8-mma"
            out.append((f"W4A8 {'group 32' if paired else 'group 128'} {_cfg(c)}", "w4a8", "_w4a8_kernel", w4_ptrs,
                        {}, dict(HAS_BIAS=True, OUT_BF16=True, PAIRED_GROUPS=paired, BLOCK_K=bk, **c.kwargs),
                        _opts(c), kind))
    wq_ptrs = dict(x_ptr="*bf16", w_ptr="*i32", scale_ptr="*fp32", offset_ptr="*fp32", bias_ptr="*fp32",
                   qs_ptr="*fp32", qo_ptr="*fp32", out_ptr="*bf16")
    wqcfgs = wq.WQ_CONFIGS if all_configs else [wq.WQ_CONFIGS[1], wq.WQ_CONFIGS[3]]
    for c in wqcfgs:
        for fmt, label in ((wq.WF_INT4_K, "int4 (n, k) words"), (wq.WF_INT8, "int8")):
            kind = "bf16" if c.kwargs["BLOCK_M"] >= 64 else "bf16-mma"
            if not all_configs and (fmt == wq.WF_INT8) == (c.kwargs["BLOCK_M"] == 16):
                continue  # CI: int4 words for decode, int8 for prefill
            out.append((f"A16W{'4' if fmt else '8'} {label} {_cfg(c)}", "weight_quant", "_wq_kernel",
                        dict(wq_ptrs, w_ptr="*i32" if fmt else "*i8"), {},
                        dict(WFMT=fmt, X_BF16=True, GROUPED=True, HAS_OFFSET=True, I64_SCALE=False, HAS_BIAS=True,
                             REQUANT=False, QS_I64=False, QS_PER_COL=False, HAS_QO=False, QO_PER_COL=False,
                             DOT_F32=False, stride_xk=1, stride_wk=1, **c.kwargs), _opts(c), kind))
    return out


def _cfg(c) -> str:
    k = c.kwargs
    parts = [f"{k.get('BLOCK_M')}x{k.get('BLOCK_N')}"]
    if "BLOCK_K" in k:
        parts[0] += f"x{k['BLOCK_K']}"
    if k.get("SPLIT_K", 1) > 1:
        parts.append(f"split{k['SPLIT_K']}")
    parts.append(f"w{c.num_warps}s{c.num_stages}")
    return " ".join(parts)


def _opts(c) -> dict:
    return dict(num_warps=c.num_warps, num_stages=c.num_stages)


# instruction patterns
_MMA_S8 = re.compile(r"mma\.sync\.aligned\.m16n8k32\.row\.col(\.satfinite)?\.s32\.s8\.s8\.s32")
_WGMMA_S8 = re.compile(r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k32\.s32\.s8\.s8")
_MMA_BF16 = re.compile(r"mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32")
_WGMMA_BF16 = re.compile(r"wgmma\.mma_async\.sync\.aligned\.m64n\d+k16\.f32\.bf16\.bf16")
_INEXACT = re.compile(r"\bdiv\.(approx|full)\.f32|\bfma\.rn\.f32")
_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def _compile_one(args):
    label, module, kernel, ptrs, scalars, constexprs, options, kind, arch = args
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    mod = importlib.import_module(f"torch_qdev.triton.{module}")
    fn = getattr(mod, kernel)
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in ptrs:
            sig[name] = ptrs[name]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in scalars:
            sig[name] = scalars[name]
        else:  # sizes and strides: 16-divisible, as the Llama shapes are
            sig[name] = "i32"
            if not name.startswith("stride_a") and name not in ("M", "M_PERIOD", "M_BUCKET", "GROUPS", "GROUP_STEPS"):
                attrs[(i,)] = [["tt.divisibility", 16]]
    t0 = time.time()
    src = ASTSource(fn, sig, constexprs, attrs)
    ck = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(options, enable_fp_fusion=False))
    ptx = ck.asm["ptx"]
    problems = []
    if kind.startswith("s8"):
        want = _WGMMA_S8 if (arch == 90 and kind == "s8") else _MMA_S8
        if not want.search(ptx):
            problems.append(f"no tensor-core instruction ({want.pattern[:40]}...)")
    elif kind.startswith("bf16"):
        want = _WGMMA_BF16 if (arch == 90 and kind == "bf16") else _MMA_BF16
        if not want.search(ptx):
            problems.append(f"no tensor-core instruction ({want.pattern[:40]}...)")
    if kind in ("exact", "s8", "s8-mma"):  # results must equal the CPU's bit for bit
        bad = sorted(set(m.group(0) for m in _INEXACT.finditer(ptx)))
        if bad:
            problems.append(f"inexact float instructions: {bad}")
    from triton.backends.nvidia.compiler import get_ptxas
    ptxas = get_ptxas(arch).path  # the ptxas Triton itself uses for this target
    sm = "sm_90a" if arch == 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "k.ptx"
        p.write_text(ptx)
        r = subprocess.run([str(ptxas), f"-arch={sm}", "-v", str(p), "-o", str(Path(d) / "k.cubin")],
                           capture_output=True, text=True)
    info = r.stdout + r.stderr
    spills = [(int(a), int(b)) for a, b in _SPILL.findall(info)]
    regs = [int(x) for x in _REGS.findall(info)]
    if r.returncode != 0:
        problems.append(f"ptxas failed: {info[-300:]}")
    spill = max((a + b for a, b in spills), default=0)
    if spill > SPILL_LIMIT:
        problems.append(f"spills {spill} bytes (limit {SPILL_LIMIT})")
    mma = "wgmma" if "wgmma.mma_async" in ptx else ("mma.sync" if "mma.sync" in ptx else "-")
    return label, arch, problems, max(regs, default=0), spill, mma, time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="every autotune configuration (slow)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    try:
        import triton  # noqa: F401
    except ImportError:
        print("[triton-check] FAILED: the triton package is not installed (requirements-dev.txt pins it)")
        return 1
    t0 = time.time()
    jobs = [(*s, arch) for s in _specs(args.all) for arch in (80, 90)]
    failed = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        for label, arch, problems, regs, spill, mma, secs in ex.map(_compile_one, jobs):
            status = "ok" if not problems else "FAILED: " + "; ".join(problems)
            failed += bool(problems)
            print(f"[triton-check] sm_{arch} {label}: {mma}, {regs} regs, {spill} B spilled ({secs:.1f}s) {status}",
                  flush=True)
    print(f"[triton-check] {len(jobs) - failed}/{len(jobs)} kernels pass for sm_80 and sm_90 "
          f"({time.time() - t0:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
