"""npu_dynamic_quant / npu_dynamic_quant_asymmetric in Triton.

Per-token (the hot path of dynamic A8W8, incl. MoE group_index smooth scales): one
program per row, two passes over the row in fp32, in the CPU reference's order
(csrc/kernels/quant/qd_quant_rows_ref.cpp):

    xs = x * smooth;  symmetric:  scale = max|xs| * (1 / dst_max),  q = rint(xs / scale)
    asymmetric: scale = (max - min) / (dst_max - dst_min), offset = dst_max - max / scale,
                q = rint(xs / scale + offset);   q saturates; scale 0 -> q = 0

Divisions are IEEE (div_rn), so results equal the CPU op bit for bit. Per-tensor and
per-channel modes run the same formulas as torch ops on the device.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import INTERPRET, LAUNCH_OPTS, check_device, device_guard, launcher, next_pow2, rint
from . import _checks


@triton.jit
def _quant_rows_kernel(x_ptr, smooth_ptr, grp_ptr, q_ptr, scale_ptr, offset_ptr, H, dst_max, dst_min,
                       HAS_SMOOTH: tl.constexpr, GROUPED: tl.constexpr, ASYM: tl.constexpr,
                       BLOCK_H: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * H
    q_row = q_ptr + row * H
    s_row = smooth_ptr
    if GROUPED:
        s_row = smooth_ptr + tl.load(grp_ptr + row).to(tl.int64) * H
    mx = tl.full((BLOCK_H,), float("-inf"), tl.float32)
    mn = tl.full((BLOCK_H,), float("inf"), tl.float32)
    amax = tl.zeros((BLOCK_H,), tl.float32)
    for h0 in range(0, H, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        m = cols < H
        v = tl.load(x_row + cols, mask=m, other=0.0).to(tl.float32)
        if HAS_SMOOTH:
            v = v * tl.load(s_row + cols, mask=m, other=1.0).to(tl.float32)
        mx = tl.maximum(mx, tl.where(m, v, float("-inf")))
        mn = tl.minimum(mn, tl.where(m, v, float("inf")))
        amax = tl.maximum(amax, tl.where(m, tl.abs(v), 0.0))
    row_max = tl.max(mx, axis=0)
    row_min = tl.min(mn, axis=0)
    row_amax = tl.max(amax, axis=0)
    if ASYM:
        scale = tl.math.div_rn(row_max - row_min, dst_max - dst_min)
        offset = tl.where(scale == 0.0, 0.0, dst_max - tl.math.div_rn(row_max, tl.where(scale == 0.0, 1.0, scale)))
    else:
        scale = row_amax * tl.math.div_rn(1.0, dst_max)
        offset = 0.0
    safe = tl.where(scale == 0.0, 1.0, scale)
    for h0 in range(0, H, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        m = cols < H
        v = tl.load(x_row + cols, mask=m, other=0.0).to(tl.float32)
        if HAS_SMOOTH:
            v = v * tl.load(s_row + cols, mask=m, other=1.0).to(tl.float32)
        t = tl.math.div_rn(v, safe)
        if ASYM:
            t = t + offset
        t = tl.minimum(tl.maximum(rint(t), dst_min), dst_max)
        t = tl.where(scale == 0.0, 0.0, t)
        tl.store(q_row + cols, t.to(tl.int8), mask=m)
    tl.store(scale_ptr + row, scale)
    if ASYM:
        tl.store(offset_ptr + row, offset)


def pack_int4_words(q: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7], last dim a multiple of 8 -> int32 words, 8 nibbles, least significant first."""
    nib = (q.to(torch.int32) & 0xF).unflatten(-1, (-1, 8))
    word = nib[..., 0]
    for i in range(1, 8):
        word = word | (nib[..., i] << (4 * i))
    return word.contiguous()


def _row_groups(group_index: torch.Tensor, rows: int) -> torch.Tensor:
    """Per-row index of its smooth_scales row (group_index holds cumulative group ends)."""
    if not torch.compiler.is_compiling():  # the CPU op's checks (a host read; skipped when traced)
        ends = group_index.cpu()
        _checks.check(ends.numel() > 0 and int(ends[-1]) == rows,
                      f"the last group_index entry must equal the number of rows ({rows})")
        begin = 0
        for e in ends.tolist():
            _checks.check(begin <= e <= rows, f"group_index must be non-decreasing within [0, {rows}]")
            begin = e
    r = torch.arange(rows, device=group_index.device, dtype=torch.int32)
    return torch.searchsorted(group_index, r, right=True).to(torch.int32)


def _quant_rows(x: torch.Tensor, smooth, grp, plan, asym: bool):
    rows = x.numel() // plan.h if plan.h else 0
    q = torch.empty(plan.y_shape[:-1] + [plan.h], dtype=torch.int8, device=x.device)
    scale = torch.empty(plan.scale_shape, dtype=torch.float32, device=x.device)
    offset = torch.empty(plan.scale_shape, dtype=torch.float32, device=x.device) if asym else None
    if rows > 0:
        xc = x.contiguous()
        sm = smooth.contiguous() if smooth is not None else xc
        block = min(next_pow2(plan.h), 64 if INTERPRET else 4096)
        with device_guard(x):
            launcher(_quant_rows_kernel)[(rows,)](
                xc, sm, grp if grp is not None else scale, q, scale, offset if asym else scale, plan.h,
                plan.dst_max, plan.dst_min, HAS_SMOOTH=smooth is not None, GROUPED=grp is not None, ASYM=asym,
                BLOCK_H=block, num_warps=4 if block <= 1024 else 8, **LAUNCH_OPTS)
    return q, scale, offset


def _quant_groups_torch(x: torch.Tensor, smooth, plan, asym: bool):
    """Per-tensor / per-channel: the CPU's formulas as torch ops on the device."""
    xs = x.to(torch.float32)
    if smooth is not None:
        s = smooth.to(torch.float32)
        xs = xs * (s.unsqueeze(-1) if plan.mode == "perchannel" else s)
    dims = None if plan.mode == "pertensor" else (-2,)
    if dims is None:
        mx, mn, amax = xs.max().reshape(1), xs.min().reshape(1), xs.abs().max().reshape(1)
    else:
        mx, mn, amax = xs.amax(dim=-2), xs.amin(dim=-2), xs.abs().amax(dim=-2)
    dmax = torch.tensor(plan.dst_max, dtype=torch.float32, device=x.device)
    dmin = torch.tensor(plan.dst_min, dtype=torch.float32, device=x.device)
    if asym:
        scale = (mx - mn) / (dmax - dmin)
        offset = torch.where(scale == 0, torch.zeros_like(scale), dmax - mx / torch.where(scale == 0, 1.0, scale))
    else:
        scale = amax * (1.0 / dmax)
        offset = torch.zeros_like(scale)
    sc = scale if dims is None else scale.unsqueeze(-2)
    of = offset if dims is None else offset.unsqueeze(-2)
    v = xs / torch.where(sc == 0, 1.0, sc)
    if asym:
        v = v + of
    v = torch.round(v).clamp(plan.dst_min, plan.dst_max)
    q = torch.where(sc == 0, torch.zeros_like(v), v).to(torch.int8)
    return q, scale.reshape(plan.scale_shape), offset.reshape(plan.scale_shape) if asym else None


def _dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, asym):
    check_device(input, "npu_dynamic_quant")
    plan = _checks.plan_dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max)
    rows = input.numel() // plan.h if plan.h else 0
    if plan.mode == "pertoken":
        grp = _row_groups(group_index, rows) if group_index is not None else None
        q, scale, offset = _quant_rows(input, smooth_scales, grp, plan, asym)
    else:
        q, scale, offset = _quant_groups_torch(input, smooth_scales, plan, asym)
    y = pack_int4_words(q) if plan.int4 else q
    return (y, scale, offset) if asym else (y, scale)


def npu_dynamic_quant(input: torch.Tensor, *, smooth_scales: Optional[torch.Tensor] = None,
                      group_index: Optional[torch.Tensor] = None, dst_type=None, quant_mode: str = "pertoken",
                      dst_type_max: float = 0.0):
    """torch_npu's symmetric dynamic quantization: (y, scale); bit-exact with the CPU op."""
    return _dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, False)


def npu_dynamic_quant_asymmetric(input: torch.Tensor, *, smooth_scales: Optional[torch.Tensor] = None,
                                 group_index: Optional[torch.Tensor] = None, dst_type=None,
                                 quant_mode: str = "pertoken", dst_type_max: float = 0.0):
    """torch_npu's asymmetric dynamic quantization: (y, scale, offset); bit-exact with the CPU op."""
    return _dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode, dst_type_max, True)
