"""npu_weight_quant_batchmatmul (A16W8 / A16W4 weight-only) in Triton.

    W'[k, n] = rnd(rnd(w[k, n] + offset[g, n]) * scale[g, n])     rnd: round to x's dtype (RNE)
    y = x @ W' (fp32 accumulation)  (+ bias)  -> x's dtype, or CANN's int8 requant with quant_scale

as the CPU op (csrc/aten/native/WeightQuantMatmul.cpp): W' is dequantized tile by tile in
registers (never materialized) from int8 weights with any strides, or from int32-packed int4
words along n ((k, n/8)) or along k (the transpose of an nn.Linear-layout (n, k/8) weight).
The products are exact; sums are fp32 in the tensor cores' order, so results equal the CPU op
within fp32 rounding (then one rounding to x's dtype).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import INTERPRET, LAUNCH_OPTS, cdiv, check_device, device_guard, fp19, launcher, rint, to_bf16_rne
from . import _checks

WF_INT8, WF_INT4_N, WF_INT4_K = 0, 1, 2


@triton.jit
def _round_x(v, X_BF16: tl.constexpr):
    """fp32 -> x's dtype (RNE) -> fp32."""
    if X_BF16:
        return to_bf16_rne(v).to(tl.float32)
    else:
        return v.to(tl.float16).to(tl.float32)


@triton.jit
def _wq_kernel(x_ptr, w_ptr, scale_ptr, offset_ptr, bias_ptr, qs_ptr, qo_ptr, out_ptr,
               M, N, K, G, M_BUCKET,
               stride_xb, stride_xm, stride_xk, stride_wb, stride_wk, stride_wn, stride_sg,
               WFMT: tl.constexpr, X_BF16: tl.constexpr, GROUPED: tl.constexpr, HAS_OFFSET: tl.constexpr,
               I64_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, REQUANT: tl.constexpr, QS_I64: tl.constexpr,
               QS_PER_COL: tl.constexpr, HAS_QO: tl.constexpr, QO_PER_COL: tl.constexpr, DOT_F32: tl.constexpr,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    batch = tl.program_id(2).to(tl.int64)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * num_pid_n
    first_m = (pid // width) * GROUP_M
    gsize = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % gsize
    pid_n = (pid % width) // gsize
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    x_base = x_ptr + batch * stride_xb + rm[:, None].to(tl.int64) * stride_xm
    w_base = w_ptr + batch * stride_wb
    if not GROUPED:
        s_row = tl.load(scale_ptr + rn, mask=n_ok, other=0.0)
        if HAS_OFFSET:
            o_row = tl.load(offset_ptr + rn, mask=n_ok, other=0.0)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        x = tl.load(x_base + rk[None, :] * stride_xk, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        wmask = k_ok[:, None] & n_ok[None, :]
        if WFMT == 0:
            w = tl.load(w_base + rk[:, None].to(tl.int64) * stride_wk + rn[None, :] * stride_wn, mask=wmask,
                        other=0).to(tl.int32)
        else:
            if WFMT == 1:
                word = tl.load(w_base + rk[:, None].to(tl.int64) * stride_wk + (rn // 8)[None, :] * stride_wn,
                               mask=wmask, other=0)
                shift = ((rn % 8) * 4)[None, :]
            else:
                word = tl.load(w_base + (rk // 8)[:, None].to(tl.int64) * stride_wk + rn[None, :] * stride_wn,
                               mask=wmask, other=0)
                shift = ((rk % 8) * 4)[:, None]
            nib = (word >> shift) & 0xF
            w = tl.where(nib > 7, nib - 16, nib)
        wf = w.to(tl.float32)
        if GROUPED:
            g = tl.minimum(rk // G, (K - 1) // G)
            sp = g[:, None].to(tl.int64) * stride_sg + rn[None, :]
            if HAS_OFFSET:
                wf = _round_x(wf + tl.load(offset_ptr + sp, mask=wmask, other=0.0), X_BF16)
            wf = _round_x(wf * tl.load(scale_ptr + sp, mask=wmask, other=0.0), X_BF16)
        else:
            if HAS_OFFSET:
                wf = _round_x(wf + o_row[None, :], X_BF16)
            if not I64_SCALE:
                wf = _round_x(wf * s_row[None, :], X_BF16)
        if DOT_F32:
            acc = tl.dot(x.to(tl.float32), wf, acc, input_precision="ieee")
        elif X_BF16:
            acc = tl.dot(x, wf.to(tl.bfloat16), acc)
        else:
            acc = tl.dot(x, wf.to(tl.float16), acc)
    y = acc
    if I64_SCALE:  # (x @ rnd(w + off)) rounded, times the decoded scale, rounded (CANN's golden)
        y = _round_x(_round_x(y, X_BF16) * s_row[None, :], X_BF16)
    if HAS_BIAS:
        y = y + tl.load(bias_ptr + rn, mask=n_ok, other=0.0)[None, :]
    if X_BF16:
        y = _round_x(y, True)
    mask = m_ok[:, None] & n_ok[None, :]
    optrs = out_ptr + batch * M * N + rm[:, None].to(tl.int64) * N + rn[None, :]
    if REQUANT:
        if QS_PER_COL:
            qi = rn
        else:
            qi = rn * 0
        if QS_I64:
            packed = tl.load(qs_ptr + qi, mask=n_ok, other=0)
            qs = (packed & 0xFFFFE000).to(tl.uint32).to(tl.int32, bitcast=True).to(tl.float32, bitcast=True)
        else:
            qs = fp19(tl.load(qs_ptr + qi, mask=n_ok, other=0.0))
        v = tl.minimum(tl.maximum(y * qs[None, :], -256.0), 255.0)
        v = rint(v)
        if QS_I64:
            o9 = ((packed >> 37) & 0x1FF).to(tl.int32)
            v = v + tl.where(o9 >= 256, o9 - 512, o9).to(tl.float32)[None, :]
        elif HAS_QO:
            if QO_PER_COL:
                oi = rn
            else:
                oi = rn * 0
            of = tl.load(qo_ptr + oi, mask=n_ok, other=0.0)
            v = v + tl.minimum(tl.maximum(rint(of), -256.0), 255.0)[None, :]
        v = tl.minimum(tl.maximum(v, -128.0), 127.0)
        tl.store(optrs, v.to(tl.int32).to(tl.int8), mask=mask)
    elif X_BF16:
        tl.store(optrs, to_bf16_rne(y), mask=mask)
    else:
        tl.store(optrs, y.to(tl.float16), mask=mask)


def _is_transpose_last_two(t: torch.Tensor) -> bool:
    if t.dim() < 2:
        return False
    r, c = t.size(-2), t.size(-1)
    if r == 1 and c == 1:
        return False
    return t.stride(-2) == 1 and t.stride(-1) == r


WQ_CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8), num_warps=w, num_stages=s)
              for bm, bn, bk, w, s in [(16, 64, 128, 4, 4), (16, 128, 128, 4, 3), (16, 32, 256, 4, 3),
                                       (64, 128, 64, 4, 3), (64, 64, 128, 4, 3), (128, 64, 64, 4, 3),
                                       (64, 128, 64, 8, 4)]]
_wq_tuned = None


def _prune(configs, named_args, **kwargs):
    small = named_args["M"] <= 16
    return [c for c in configs if (c.kwargs["BLOCK_M"] == 16) == small]


def npu_weight_quant_batchmatmul(x: torch.Tensor, weight: torch.Tensor, antiquant_scale: torch.Tensor,
                                 antiquant_offset: Optional[torch.Tensor] = None,
                                 quant_scale: Optional[torch.Tensor] = None,
                                 quant_offset: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                                 antiquant_group_size: int = 0, inner_precise: int = 0,
                                 weight_dtype=None) -> torch.Tensor:
    """torch_npu's weight-only quantized matmul on CUDA (or CPU under TRITON_INTERPRET=1)."""
    global _wq_tuned
    check = _checks.check
    check_device(x, "npu_weight_quant_batchmatmul")
    if weight_dtype is not None:
        raise NotImplementedError("npu_weight_quant_batchmatmul: weight_dtype (hifloat8/fp8 weights) is an Ascend "
                                  "950 feature and is not supported on qdev")
    check(x.dim() >= 2, f"x shape do not support dim num less than 2, but it is {x.dim()}")
    check(weight.dim() >= 2, f"weight shape do not support dim num less than 2, but it is {weight.dim()}")
    check(x.dtype in (torch.float16, torch.bfloat16),
          f"npu_weight_quant_batchmatmul: x must be float16 or bfloat16, but it is {x.dtype}")
    check(inner_precise in (0, 1), f"inner_precise only support 0 or 1. but is:{inner_precise}")
    check(quant_offset is None or quant_scale is not None, "Quantization parameters are incorrectly set, "
          "quant_offset cannot exist in isolation from quant_scale")
    check(weight.dtype in (torch.int8, torch.int32), "npu_weight_quant_batchmatmul: weight must be int8 or "
          f"int32-packed int4, but it is {weight.dtype}")
    _checks._same_device(x, weight, antiquant_scale, antiquant_offset, quant_scale, quant_offset, bias)
    int4 = weight.dtype == torch.int32
    transposed = _is_transpose_last_two(weight)
    xk = x.size(-1)
    wk = weight.size(-2) * 8 if int4 and transposed else weight.size(-2)
    n = weight.size(-1) * 8 if int4 and not transposed else weight.size(-1)
    if x.dim() > 2 and weight.dim() > 2:
        check(x.dim() == weight.dim(), "x dim is not the same as weight dim")
        check(x.shape[:-2] == weight.shape[:-2], "batch of x is diff from batch of weight")
    check(xk == wk, f"The k of x and weight should be equal. but x_k_dim is {xk}, weight_k_dim is {wk}")
    G = antiquant_group_size
    check(G == 0 or (G % 32 == 0 and 32 <= G <= wk - 1), "antiquant_group_size can be either 0 or a multiple of 32 "
          "within the range 32 to weight_k_dim - 1.")
    xdt = x.dtype

    def as_rows(t):
        if t.numel() == 1:
            return t.reshape(1, 1)
        if t.dim() == 1:
            return t.reshape(1, t.size(0))
        return t
    scale = as_rows(antiquant_scale)
    off = as_rows(antiquant_offset) if antiquant_offset is not None else None
    groups = cdiv(wk, G) if G > 0 else 1
    if G > 0:
        check(scale.size(0) == groups and scale.size(1) == n, f"npu_weight_quant_batchmatmul: per-group "
              f"antiquant_scale must be ({groups}, {n}), but it is {list(antiquant_scale.shape)}")
    else:
        check(scale.size(0) == 1 and scale.size(1) in (1, n), "npu_weight_quant_batchmatmul: antiquant_scale must be "
              f"(1,), (n,) or (1, n) without antiquant_group_size, but it is {list(antiquant_scale.shape)}")
    i64 = antiquant_scale.dtype == torch.int64
    if i64:
        check(G == 0, "npu_weight_quant_batchmatmul: an int64 antiquant_scale is per channel "
              "(antiquant_group_size 0)")
        low = (scale & 0xFFFFE000).to(torch.int64)
        s_vals = torch.where(low >= 2 ** 31, low - 2 ** 32, low).to(torch.int32).view(torch.float32)
    else:
        s_vals = scale
    # scale / offset rows as values of x's dtype, widened: (groups or 1, n) fp32
    s_rows = s_vals.to(xdt).to(torch.float32).expand(groups if G > 0 else 1, n).contiguous()
    o_rows = off.reshape(-1, n) if (off is not None and G > 0) else off
    o_rows = o_rows.to(xdt).to(torch.float32).expand(groups if G > 0 else 1, n).contiguous() if off is not None else None

    batch = list(torch.broadcast_shapes(x.shape[:-2], weight.shape[:-2]))
    m = x.size(-2)
    out = torch.empty(batch + [m, n], dtype=torch.int8 if quant_scale is not None else xdt, device=x.device)
    if out.numel() == 0:
        return out
    if xk == 0:
        raise RuntimeError("npu_weight_quant_batchmatmul: k must be positive")
    w_shared = math.prod(weight.shape[:-2]) == 1
    if w_shared:
        M, B = math.prod(batch) * m, 1
        xr = x.expand(*batch, m, xk).reshape(M, xk)
        wr = weight.reshape(weight.shape[-2:]) if weight.dim() > 2 else weight
        sxb, swb = 0, 0
    else:
        M, B = m, math.prod(batch)
        xr = x.expand(*batch, m, xk).reshape(B, m, xk)
        wr = weight.expand(*batch, *weight.shape[-2:]).reshape(B, *weight.shape[-2:])
        sxb, swb = xr.stride(0), wr.stride(0)
    wfmt = WF_INT8 if not int4 else (WF_INT4_K if transposed else WF_INT4_N)
    dummy = s_rows
    qs = quant_scale.reshape(-1).contiguous() if quant_scale is not None else None
    qo = quant_offset.reshape(-1).to(torch.float32).contiguous() if quant_offset is not None else None
    b32 = bias.reshape(-1).to(torch.float32).contiguous() if bias is not None else None
    args = (xr, wr, s_rows, o_rows if o_rows is not None else dummy, b32 if b32 is not None else dummy,
            qs if qs is not None else dummy, qo if qo is not None else dummy, out, M, n, xk, G if G > 0 else xk,
            min(1 << max(0, (M - 1).bit_length()), 4096),
            sxb, xr.stride(-2), xr.stride(-1), swb, wr.stride(-2), wr.stride(-1), n)
    flags = dict(WFMT=wfmt, X_BF16=xdt == torch.bfloat16, GROUPED=G > 0, HAS_OFFSET=off is not None, I64_SCALE=i64,
                 HAS_BIAS=bias is not None, REQUANT=quant_scale is not None,
                 QS_I64=quant_scale is not None and quant_scale.dtype == torch.int64,
                 QS_PER_COL=qs is not None and qs.numel() != 1, HAS_QO=qo is not None,
                 QO_PER_COL=qo is not None and qo.numel() != 1, DOT_F32=INTERPRET)
    if qs is not None and qs.dtype != torch.int64:
        args = args[:5] + (qs.to(torch.float32),) + args[6:]
    with device_guard(x):
        if INTERPRET:
            cfg = dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, GROUP_M=2)
            launcher(_wq_kernel)[(cdiv(M, 16) * cdiv(n, 32), 1, B)](*args, **flags, **cfg, **LAUNCH_OPTS)
        else:
            if _wq_tuned is None:
                _wq_tuned = triton.autotune(WQ_CONFIGS, key=["M_BUCKET", "N", "K", "G"],
                                            prune_configs_by=dict(early_config_prune=_prune))(_wq_kernel)
            launcher(_wq_tuned)[lambda meta: (cdiv(M, meta["BLOCK_M"]) * cdiv(n, meta["BLOCK_N"]), 1, B)](
                *args, **flags, **LAUNCH_OPTS)
    return out


def npu_convert_weight_to_int4pack(weight: torch.Tensor, inner_k_tiles: int = 0) -> torch.Tensor:
    """int32 values in [-8, 7] -> int32 words of 8 nibbles along the last dim (torch ops on the device)."""
    check = _checks.check
    check(weight.dtype in (torch.int32, torch.float32),
          f"weight dtype only support int32 and float32, but it is {weight.dtype}")
    if weight.dtype != torch.int32:
        raise NotImplementedError("npu_convert_weight_to_int4pack: float32 (fp4 e2m1) weights are an Ascend 950 "
                                  "feature and are not supported on qdev")
    check(weight.dim() in (2, 3), f"weight shape only support dim num 2/3, but it is {weight.dim()}")
    for d in weight.shape:
        check(d > 0, "weight dim should be greater than 0")
    check(weight.size(-1) % 8 == 0, f"weight last dim should be the multiple of 8, but it is {weight.size(-1)}")
    check(weight.is_contiguous(), "weight should be contiguous")
    from .dynamic_quant import pack_int4_words
    return pack_int4_words(weight)
