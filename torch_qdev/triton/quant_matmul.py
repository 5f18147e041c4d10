"""npu_quant_matmul (A8W8, and A4W4 through the same GEMM) and npu_trans_quant_param in Triton.

One int8 GEMM (``tl.dot`` int8 x int8 -> int32: mma.sync s8 on sm_80, wgmma s8 on
sm_90) with torch_npu's output stage fused per element, in the CPU reference's
operation order (csrc/kernels/matmul/ref/qd_qgemm_ref.cpp):

    t = acc (+ int32 bias, wrapping)
    int32: t
    int8:  clamp(rint(clamp(float(t) * scale[j], -256, 255)) + offset[j], -128, 127)
    float: round_to_out(((float(t) * scale[j]) * pertoken[i]) + float(bias[j]))

Two schedules: prefill (M > 16, or enough output tiles to fill the GPU) runs the fused
kernel; decode (M <= 16 with few output tiles) splits K across programs that add
their exact int32 partial sums atomically (integer addition is associative, so the
result does not depend on the order), then a small kernel applies the output stage.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from ._common import (INTERPRET, LAUNCH_OPTS, cdiv, check_device, check_same_device, device_guard, fp19, launcher,
                      rint, to_bf16_rne)
from . import _checks

# output kinds
OUT_I32, OUT_I8, OUT_F16, OUT_BF16 = 0, 1, 2, 3
# scale kinds
SC_NONE, SC_F32, SC_F32_FP19, SC_BF16, SC_I64 = 0, 1, 2, 3, 4
# offset kinds
OFF_NONE, OFF_FLOAT, OFF_PACKED = 0, 1, 2
# bias kinds
BIAS_NONE, BIAS_I32, BIAS_FLOAT = 0, 1, 2


@triton.jit
def _output_stage(t, rm, rn, N, batch, M_PERIOD,
                  scale_ptr, offset_ptr, pertoken_ptr, bias_ptr, bias_batch_stride,
                  OUT: tl.constexpr, SCALE: tl.constexpr, SCALE_PER_COL: tl.constexpr,
                  OFFSET: tl.constexpr, OFFSET_PER_COL: tl.constexpr, HAS_PERTOKEN: tl.constexpr,
                  BIAS: tl.constexpr):
    """int32 tile t (rows rm, columns rn) -> the output values, per element as the CPU reference."""
    nmask = rn < N
    if BIAS == 1:
        b = tl.load(bias_ptr + batch * bias_batch_stride + rn, mask=nmask, other=0)
        t = t + b[None, :]
    if OUT == 0:
        return t
    else:
        # per-column scale as fp32
        if SCALE_PER_COL:
            sidx = rn
        else:
            sidx = rn * 0
        if SCALE == 1:
            s = tl.load(scale_ptr + sidx, mask=nmask, other=1.0)
        elif SCALE == 2:
            s = fp19(tl.load(scale_ptr + sidx, mask=nmask, other=1.0))
        elif SCALE == 3:
            s = tl.load(scale_ptr + sidx, mask=nmask, other=1.0).to(tl.float32)
        else:  # packed int64: the low 32 bits hold the fp19 scale
            packed = tl.load(scale_ptr + sidx, mask=nmask, other=0)
            s = (packed & 0xFFFFE000).to(tl.uint32).to(tl.int32, bitcast=True).to(tl.float32, bitcast=True)
        if OUT == 1:
            v = t.to(tl.float32) * s[None, :]
            v = tl.minimum(tl.maximum(v, -256.0), 255.0)  # the 9-bit intermediate
            q = rint(v).to(tl.int32)
            if OFFSET == 1:
                if OFFSET_PER_COL:
                    oidx = rn
                else:
                    oidx = rn * 0
                of = tl.load(offset_ptr + oidx, mask=nmask, other=0.0)
                q = q + tl.minimum(tl.maximum(rint(of), -256.0), 255.0).to(tl.int32)[None, :]
            elif OFFSET == 2:
                o9 = ((packed >> 37) & 0x1FF).to(tl.int32)
                q = q + tl.where(o9 >= 256, o9 - 512, o9)[None, :]
            q = tl.minimum(tl.maximum(q, -128), 127)
            return q.to(tl.int8)
        else:
            f = t.to(tl.float32)
            f = f * s[None, :]
            if HAS_PERTOKEN:
                pt = tl.load(pertoken_ptr + rm % M_PERIOD, mask=rm >= 0, other=1.0)
                f = f * pt[:, None]
            if BIAS == 2:
                bf = tl.load(bias_ptr + batch * bias_batch_stride + rn, mask=nmask, other=0.0).to(tl.float32)
                f = f + bf[None, :]
            if OUT == 2:
                return f.to(tl.float16)
            else:
                return to_bf16_rne(f)


@triton.jit
def _qmm_kernel(a_ptr, b_ptr, c_ptr, M, N, K, M_BUCKET,
                stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn, stride_cb, stride_cm,
                scale_ptr, offset_ptr, pertoken_ptr, bias_ptr, bias_batch_stride, M_PERIOD,
                OUT: tl.constexpr, SCALE: tl.constexpr, SCALE_PER_COL: tl.constexpr,
                OFFSET: tl.constexpr, OFFSET_PER_COL: tl.constexpr, HAS_PERTOKEN: tl.constexpr,
                BIAS: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """C[b] = output_stage(A[b] @ B[b]); with SPLIT_K > 1, int32 partial sums are added atomically
    into C (an int32 workspace, zeroed) and the output stage runs in _qmm_epilogue_kernel."""
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # grouped ordering: GROUP_M row tiles share each column tile while it is in L2
    width = GROUP_M * num_pid_n
    group_id = pid // width
    first_m = group_id * GROUP_M
    group_size = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % group_size
    pid_n = (pid % width) // group_size

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    m_ok = rm[:, None] < M
    n_ok = rn[None, :] < N
    a_ptrs = a_ptr + batch * stride_ab + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + batch * stride_bb + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, tl.cdiv(K, BLOCK_K * SPLIT_K)):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=m_ok, other=0)
            b = tl.load(b_ptrs, mask=n_ok, other=0)
        else:
            k_left = K - k0 * BLOCK_K * SPLIT_K
            a = tl.load(a_ptrs, mask=m_ok & (rk[None, :] < k_left), other=0)
            b = tl.load(b_ptrs, mask=n_ok & (rk[:, None] < k_left), other=0)
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        a_ptrs += BLOCK_K * SPLIT_K * stride_ak
        b_ptrs += BLOCK_K * SPLIT_K * stride_bk
    mask = m_ok & n_ok
    c_ptrs = c_ptr + batch * stride_cb + rm[:, None] * stride_cm + rn[None, :]
    if SPLIT_K == 1:
        out = _output_stage(acc, rm, rn, N, batch, M_PERIOD, scale_ptr, offset_ptr, pertoken_ptr, bias_ptr,
                            bias_batch_stride, OUT, SCALE, SCALE_PER_COL, OFFSET, OFFSET_PER_COL, HAS_PERTOKEN, BIAS)
        tl.store(c_ptrs, out, mask=mask)
    else:
        tl.atomic_add(c_ptrs, acc, mask=mask, sem="relaxed")


@triton.jit
def _qmm_epilogue_kernel(acc_ptr, c_ptr, M, N, stride_b, stride_m,
                         scale_ptr, offset_ptr, pertoken_ptr, bias_ptr, bias_batch_stride, M_PERIOD,
                         OUT: tl.constexpr, SCALE: tl.constexpr, SCALE_PER_COL: tl.constexpr,
                         OFFSET: tl.constexpr, OFFSET_PER_COL: tl.constexpr, HAS_PERTOKEN: tl.constexpr,
                         BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The output stage of split-K sums (int32 workspace -> C, same strides)."""
    batch = tl.program_id(2).to(tl.int64)
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    offs = batch * stride_b + rm[:, None] * stride_m + rn[None, :]
    t = tl.load(acc_ptr + offs, mask=mask, other=0)
    out = _output_stage(t, rm, rn, N, batch, M_PERIOD, scale_ptr, offset_ptr, pertoken_ptr, bias_ptr,
                        bias_batch_stride, OUT, SCALE, SCALE_PER_COL, OFFSET, OFFSET_PER_COL, HAS_PERTOKEN, BIAS)
    tl.store(c_ptr + offs, out, mask=mask)


# --- schedules -------------------------------------------------------------------------
# Prefill (M = 128..8192, K, N = 4096..14336 on H100/H200): 64..128-row tiles, 64/128-deep
# k steps, 3-4 pipeline stages; decode (M <= 16): 16-row tiles, deep k steps and split-K so
# that N/BLOCK_N * SPLIT_K programs cover the 132 SMs while the weight streams once.
def _prefill_configs():
    cfgs = []
    # 128x256 / 256x128 tiles (and 128x128 with 4 warps) spill 0.7..2.4 KB per thread in the fused
    # output stage (tools/check_triton_kernels.py): left out; 128x128 runs with 8 warps
    for bm, bn, bk, warps, stages in [(128, 128, 128, 8, 3), (128, 128, 64, 8, 4), (64, 128, 128, 4, 4),
                                      (128, 64, 128, 4, 4), (64, 64, 128, 4, 4), (64, 128, 64, 4, 4)]:
        cfgs.append(triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8), num_warps=warps,
                                  num_stages=stages))
    return cfgs


def _decode_configs():
    cfgs = []
    for bn, bk, split, warps, stages in [(64, 256, 4, 4, 4), (128, 256, 4, 4, 4), (64, 256, 8, 4, 4),
                                         (128, 128, 8, 4, 5), (64, 512, 2, 4, 3), (32, 512, 4, 4, 3),
                                         (128, 256, 2, 4, 4), (64, 128, 16, 4, 5)]:
        cfgs.append(triton.Config(dict(BLOCK_M=16, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=1, SPLIT_K=split),
                                  num_warps=warps, num_stages=stages))
    return cfgs


PREFILL_CONFIGS = _prefill_configs()
DECODE_CONFIGS = _decode_configs()
# The interpreter runs one small configuration (tests use small shapes; tails everywhere).
INTERPRET_PREFILL = dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, GROUP_M=2)
INTERPRET_DECODE = dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, GROUP_M=1, SPLIT_K=2)

_prefill_tuned = None
_decode_tuned = None


def _tuned():
    global _prefill_tuned, _decode_tuned
    if _prefill_tuned is None:
        _prefill_tuned = triton.autotune(PREFILL_CONFIGS, key=["M_BUCKET", "N", "K", "OUT", "SCALE"])(_qmm_kernel)
        _decode_tuned = triton.autotune(DECODE_CONFIGS, key=["M_BUCKET", "N", "K"], reset_to_zero=["c_ptr"])(
            _qmm_kernel)
    return _prefill_tuned, _decode_tuned


def use_split_k(m_rows: int, n: int, k: int, batches: int, sm_count: int) -> bool:
    """Decode schedule: few rows and too few 16x128 output tiles to occupy the GPU."""
    if m_rows > 16 or k < 512:
        return False
    return batches * cdiv(n, 128) < sm_count


def _sm_count(t: torch.Tensor) -> int:
    if t.device.type == "cuda":
        return torch.cuda.get_device_properties(t.device).multi_processor_count
    return 4  # the interpreter: small problems still take the split-K path


def _m_bucket(m: int) -> int:
    return min(1 << max(0, (m - 1).bit_length()), 4096)


def launch_qgemm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, batches: int, m: int, n: int, k: int,
                 a_batch_stride: int, b_batch_stride: int, ep: dict) -> None:
    """out[bt] (contiguous rows of n) = output_stage(a[bt] (m x k, any strides) @ b[bt] (k x n, any strides))."""
    stride_cb = m * n
    common = dict(stride_ab=a_batch_stride, stride_am=a.stride(-2), stride_ak=a.stride(-1),
                  stride_bb=b_batch_stride, stride_bk=b.stride(-2), stride_bn=b.stride(-1), stride_cb=stride_cb,
                  stride_cm=n)
    split = use_split_k(m, n, k, batches, _sm_count(a))
    if not split:
        def grid(meta):
            return (cdiv(m, meta["BLOCK_M"]) * cdiv(n, meta["BLOCK_N"]), 1, batches)
        if INTERPRET:
            cfg = INTERPRET_PREFILL
            kern = _qmm_kernel
            extra = dict(EVEN_K=k % cfg["BLOCK_K"] == 0, SPLIT_K=1, **cfg)
        else:
            kern = _tuned()[0]
            extra = dict(EVEN_K=k % 128 == 0, SPLIT_K=1)
        launcher(kern)[grid](a, b, out, m, n, k, _m_bucket(m), **common, **ep, **extra, **LAUNCH_OPTS)
        return
    ws = torch.zeros((batches, m, n), dtype=torch.int32, device=a.device)

    def grid_k(meta):
        return (cdiv(m, meta["BLOCK_M"]) * cdiv(n, meta["BLOCK_N"]), meta["SPLIT_K"], batches)
    ep_none = dict(ep, OUT=OUT_I32, SCALE=SC_NONE, OFFSET=OFF_NONE, HAS_PERTOKEN=False, BIAS=BIAS_NONE)
    if INTERPRET:
        cfg = INTERPRET_DECODE
        extra = dict(EVEN_K=k % (cfg["BLOCK_K"] * cfg["SPLIT_K"]) == 0, **cfg)
        launcher(_qmm_kernel)[grid_k](a, b, ws, m, n, k, _m_bucket(m), **common, **ep_none, **extra, **LAUNCH_OPTS)
    else:
        # every decode configuration has BLOCK_K * SPLIT_K dividing 2048
        launcher(_tuned()[1])[grid_k](a, b, ws, m, n, k, _m_bucket(m), **common, **ep_none, EVEN_K=k % 2048 == 0, **LAUNCH_OPTS)
    bm, bn = 16, 128
    launcher(_qmm_epilogue_kernel)[(cdiv(m, bm), cdiv(n, bn), batches)](
        ws, out, m, n, m * n, n, **ep, BLOCK_M=bm, BLOCK_N=bn, **LAUNCH_OPTS)


def unpack_int4_words(words: torch.Tensor) -> torch.Tensor:
    """torch_npu's int4 packing (8 signed nibbles per int32, least significant first) -> int8, last dim x8."""
    shifts = torch.arange(0, 32, 4, device=words.device, dtype=torch.int32)
    nib = (words.unsqueeze(-1) >> shifts) & 0xF
    return torch.where(nib > 7, nib - 16, nib).to(torch.int8).flatten(-2)


def _dtype_from_int(v: Optional[int]) -> torch.dtype:
    return {None: torch.int8, 1: torch.int8, 3: torch.int32, 5: torch.float16, 15: torch.bfloat16}[v]


def _epilogue_args(plan, scale, offset, pertoken_scale, bias, m_period: int, device) -> tuple[dict, list]:
    """Constexpr kinds and pointers of the output stage (CPU rules: QuantMatmul.cpp)."""
    out_t = plan.out_dtype
    dummy = torch.empty(1, dtype=torch.int32, device=device)
    keep = []
    ep = dict(OUT={torch.int32: OUT_I32, torch.int8: OUT_I8, torch.float16: OUT_F16,
                   torch.bfloat16: OUT_BF16}[out_t],
              SCALE=SC_NONE, SCALE_PER_COL=False, OFFSET=OFF_NONE, OFFSET_PER_COL=False,
              HAS_PERTOKEN=pertoken_scale is not None, BIAS=BIAS_NONE,
              scale_ptr=dummy, offset_ptr=dummy, pertoken_ptr=dummy, bias_ptr=dummy, bias_batch_stride=0,
              M_PERIOD=max(m_period, 1))
    if out_t != torch.int32:  # an int32 output ignores the scale (torch_npu)
        sc = scale.contiguous()
        keep.append(sc)
        ep["scale_ptr"] = sc
        ep["SCALE_PER_COL"] = scale.numel() != 1
        if scale.dtype == torch.int64:
            ep["SCALE"] = SC_I64
            if out_t == torch.int8:
                ep["OFFSET"] = OFF_PACKED  # the packed offset; a float offset is ignored, as on CPU
        elif scale.dtype == torch.float32:
            # torch_npu converts a float32 scale with npu_trans_quant_param for int8 and float16
            # outputs without pertoken: the kernel sees a 19-bit scale.
            fp19_scale = pertoken_scale is None and out_t in (torch.int8, torch.float16)
            ep["SCALE"] = SC_F32_FP19 if fp19_scale else SC_F32
            if offset is not None:
                of = offset.contiguous()
                keep.append(of)
                ep["OFFSET"] = OFF_FLOAT
                ep["offset_ptr"] = of
                ep["OFFSET_PER_COL"] = offset.numel() != 1
        else:
            ep["SCALE"] = SC_BF16
    if pertoken_scale is not None:
        pt = pertoken_scale.contiguous()
        keep.append(pt)
        ep["pertoken_ptr"] = pt
    if bias is not None:
        bc = bias.contiguous()
        keep.append(bc)
        ep["bias_ptr"] = bc
        ep["BIAS"] = BIAS_I32 if bias.dtype == torch.int32 else BIAS_FLOAT
        ep["bias_batch_stride"] = plan.n if bias.dim() == 3 else 0
    return ep, keep


def npu_quant_matmul(x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, *,
                     offset: Optional[torch.Tensor] = None, pertoken_scale: Optional[torch.Tensor] = None,
                     bias: Optional[torch.Tensor] = None, output_dtype=None, x1_dtype=None, x2_dtype=None,
                     pertoken_scale_dtype=None, scale_dtype=None, group_sizes: Optional[Sequence[int]] = None,
                     y_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """torch_npu's npu_quant_matmul on CUDA tensors (or CPU tensors under TRITON_INTERPRET=1).

    A8W8 with every output dtype and scale kind, per-token scales, every bias kind, 2-6-D
    batch broadcast; A4W4 (int32-packed int4 operands) unpacks to int8 and runs the same
    GEMM. Results equal the CPU op bit for bit (floats: the same operation order)."""
    check_device(x1, "npu_quant_matmul")
    if isinstance(output_dtype, torch.dtype):
        output_dtype = _checks.dtype_to_int(output_dtype)
    plan = _checks.plan_quant_matmul(x1, x2, scale, offset, pertoken_scale, bias, output_dtype, x1_dtype,
                                     x2_dtype, pertoken_scale_dtype, scale_dtype, group_sizes, y_scale)
    out = torch.empty(plan.out_shape, dtype=plan.out_dtype, device=x1.device)
    if out.numel() == 0:
        return out
    m, k, n = plan.m, plan.k, plan.n
    if plan.a4w4_group:
        return _a4w4_group(plan, x1, x2, scale, offset, pertoken_scale, out)
    if plan.a4w4:
        a8 = unpack_int4_words(x1)
        b8 = (unpack_int4_words(x2.transpose(-1, -2)).transpose(-1, -2) if plan.x2_k_packed
              else unpack_int4_words(x2))
    else:
        a8, b8 = x1, x2
    batch = list(plan.batch)
    batches = math.prod(batch)
    b_shared = math.prod(b8.shape[:-2]) == 1
    bias_per_batch = bias is not None and bias.dim() == 3
    flatten = b_shared and not bias_per_batch
    with device_guard(x1):
        if flatten:  # one weight: all batches form one tall GEMM
            a = a8.expand(*batch, m, k).reshape(batches * m, k)
            b = b8.reshape(k, n)
            ep, keep = _epilogue_args(plan, scale, offset, pertoken_scale, bias, m, x1.device)
            launch_qgemm(a, b, out, 1, batches * m, n, k, 0, 0, ep)
        else:
            a = a8.expand(*batch, m, k).reshape(batches, m, k)
            b = b8.expand(*batch, k, n).reshape(batches, k, n)
            ep, keep = _epilogue_args(plan, scale, offset, pertoken_scale, bias, m, x1.device)
            launch_qgemm(a, b, out, batches, m, n, k, a.stride(0), b.stride(0), ep)
    return out


def _a4w4_group(plan, x1, x2, scale, offset, pertoken, out):
    """A4W4 per-group: y = pertoken * sum_g (x1_g @ (x2_g - offset_g)) * scale_g, as the CPU (torch ops;
    float64 products are exact for the integer part)."""
    xa = unpack_int4_words(x1).to(torch.float64)
    wb = (unpack_int4_words(x2.transpose(-1, -2)).transpose(-1, -2) if plan.x2_k_packed
          else unpack_int4_words(x2)).to(torch.float64)
    sc = scale.to(torch.float32)
    acc = torch.zeros((plan.m, plan.n), dtype=torch.float32, device=x1.device)
    for g, k0 in enumerate(range(0, plan.k, plan.group)):
        ln = min(plan.group, plan.k - k0)
        wg = wb.narrow(0, k0, ln)
        if offset is not None:
            wg = wg - offset[g].to(torch.float64)
        acc += (xa.narrow(1, k0, ln) @ wg).to(torch.float32) * sc[g]
    acc *= pertoken.to(torch.float32).reshape(plan.m, 1)
    out.copy_(acc)
    return out


def npu_trans_quant_param(scale: torch.Tensor, offset: Optional[torch.Tensor] = None,
                          round_mode: Optional[int] = 0) -> torch.Tensor:
    """float32 scale (and offset) -> torch_npu's packed int64 (19-bit scale, 9-bit offset, flag bit 46),
    with torch integer ops on the tensors' device (bit-exact with the CPU op)."""
    shape = _checks.trans_quant_param_shape(scale, offset, round_mode)
    if offset is not None:
        check_same_device(scale, offset)
    bits = scale.to(torch.float32).reshape(-1).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    if round_mode == 1:
        exp = (bits >> 23) & 0xFF
        up = (((bits >> 12) & 1) == 1) & (((bits & 0xFFF) != 0) | (((bits >> 13) & 1) == 1))
        up = up & (exp != 0) & (exp != 0xFF)
        bits = torch.where(up, bits + 0x2000, bits)
        bits = torch.where(exp == 0, bits & 0x80000000, bits)
    numel = math.prod(shape)
    packed = (bits & 0xFFFFE000) | (1 << 46)
    packed = packed.expand(numel) if packed.numel() == 1 else packed
    if offset is not None:
        o = torch.round(offset.to(torch.float32).reshape(-1)).clamp(-256, 255).to(torch.int64)
        packed = packed | ((o & 0x1FF) << 37)
    return packed.reshape(shape).contiguous()
