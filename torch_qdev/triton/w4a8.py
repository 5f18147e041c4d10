"""dyn_quant_pack_4bit_weight / dyn_quant_matmul_4bit (W4A8 dynamic) in Triton.

Numerics (aten::_dyn_quant_matmul_4bit, as the CPU reference csrc/kernels/matmul/ref/
qd_matmul_w4a8_ref.cpp): activations per-row asymmetric int8 (qai8dx: range widened to 0,
TFLite-nudged zero point, values rounded half away), weights symmetric int4 per k-group
(or per channel), and

    y[m, n] = ((sum_g float(iacc_g) * s[g, n]) * recip[m]) + bias[n]     (groups in order)
    iacc_g  = sum_{k in g} q[m, k] w[k, n] - zp[m] * colsum_g[n]           (exact int32)

int4 x int8 products run as int8 tl.dot (tensor cores); the float accumulation over groups
is in the reference's order, so results equal the CPU op bit for bit.

Packed buffer (self-describing, the QDW4 header of the CPU buffers, kernel family 2 =
CUDA/Triton; the CPU rejects it by family and vice versa):
    header (128 B) | nibbles (K64/2, N) uint8 | scales (groups, N) bf16 when given bf16, else fp32
    | colsum (groups, N) int16 (int32 when a group spans more than 4096 k) | bias (N) fp32 (flag bit 0)
K64 = K rounded up to 64. In each 64-k block the byte row i (0..31) of column n holds
w[64b + i] + 8 in its low nibble and w[64b + 32 + i] + 8 in its high nibble: one AND or one
shift yields a 32-deep int8 operand, no interleaving at run time. Sections are 256-byte aligned.
"""
from __future__ import annotations

import struct
import threading

import torch
import triton
import triton.language as tl

from ._common import (INTERPRET, LAUNCH_OPTS, cdiv, check_device, device_guard, launcher, next_pow2, round_half_away,
                      rint, to_bf16_trunc)
from . import _checks

MAGIC = 0x34574451  # "QDW4"
VERSION = 3
FAMILY_CPU = 1      # NZ4-VNNI (CPU kernels)
FAMILY_CUDA = 2     # this layout
HEADER_BYTES = 128
FLAG_BIAS, FLAG_SCALES_BF16 = 1, 2
_HEADER = struct.Struct("<IIqqqIIqqqqq")


def _align(v: int, a: int = 256) -> int:
    return (v + a - 1) // a * a


class Layout:
    def __init__(self, k: int, n: int, group: int, has_bias: bool, scales_bf16: bool = False):
        self.k, self.n, self.group = k, n, group
        self.channelwise = group == k
        self.groups = 1 if self.channelwise else k // group
        self.k64 = _align(k, 64)
        self.has_bias, self.scales_bf16 = has_bias, scales_bf16
        self.off_weights = 256
        self.off_scales = _align(self.off_weights + self.k64 // 2 * n)
        self.scale_bytes = 2 if scales_bf16 else 4
        # |sum of a group's int4 weights| <= 8 * span: int16 holds it up to 4096 k
        self.colsum_bytes = 2 if (self.k64 if self.channelwise else group) <= 4096 else 4
        self.off_colsum = _align(self.off_scales + self.scale_bytes * self.groups * n)
        self.off_bias = _align(self.off_colsum + self.colsum_bytes * self.groups * n)
        self.total_bytes = _align(self.off_bias + (4 * n if has_bias else 0))

    def header(self) -> bytes:
        flags = (FLAG_BIAS if self.has_bias else 0) | (FLAG_SCALES_BF16 if self.scales_bf16 else 0)
        return _HEADER.pack(MAGIC, VERSION, self.k, self.n, self.group, FAMILY_CUDA, flags, self.off_weights,
                            self.off_scales, self.off_colsum, self.off_bias if self.has_bias else 0,
                            self.total_bytes).ljust(HEADER_BYTES, b"\0")


def dyn_quant_pack_4bit_weight(weights: torch.Tensor, scales_zeros: torch.Tensor, bias, block_size: int,
                               in_features: int, out_features: int) -> torch.Tensor:
    """torch's int4 weights (uint8 (N, K/2), low nibble = even k, nibble = q + 8) and scales (N, K/G)
    -> the self-describing CUDA buffer (uint8), built with torch ops on the weights' device."""
    check_device(weights, "dyn_quant_pack_4bit_weight")
    _checks.check_dyn_quant_pack_args(weights, scales_zeros, bias, block_size, in_features, out_features)
    k, n = in_features, out_features
    L = Layout(k, n, block_size, bias is not None, scales_zeros.dtype == torch.bfloat16)
    dev = weights.device
    wb = weights.reshape(n, k // 2).to(torch.int32)
    w = torch.stack([wb & 0xF, wb >> 4], dim=-1).reshape(n, k) - 8  # int4 values, (N, K)
    wp = torch.zeros((n, L.k64), dtype=torch.int32, device=dev)
    wp[:, :k] = w
    blocks = wp.reshape(n, L.k64 // 64, 2, 32)
    nib = ((blocks[:, :, 0, :] + 8) | ((blocks[:, :, 1, :] + 8) << 4)).reshape(n, L.k64 // 2)
    out = torch.zeros(L.total_bytes, dtype=torch.uint8, device=dev)
    out[:HEADER_BYTES] = torch.frombuffer(bytearray(L.header()), dtype=torch.uint8).to(dev)
    out[L.off_weights:L.off_weights + L.k64 // 2 * n] = nib.t().to(torch.uint8).reshape(-1)
    sc = scales_zeros.reshape(n, L.groups).to(torch.bfloat16 if L.scales_bf16 else torch.float32).t().contiguous()
    out[L.off_scales:L.off_scales + L.scale_bytes * L.groups * n] = sc.reshape(-1).view(torch.uint8)
    gsize = k if L.channelwise else L.group
    colsum = w.reshape(n, L.groups, gsize).sum(-1).t().contiguous()
    colsum = colsum.to(torch.int16 if L.colsum_bytes == 2 else torch.int32)
    out[L.off_colsum:L.off_colsum + L.colsum_bytes * L.groups * n] = colsum.reshape(-1).view(torch.uint8)
    if bias is not None:
        out[L.off_bias:L.off_bias + 4 * n] = bias.reshape(-1).to(torch.float32).contiguous().view(torch.uint8)
    return out


# Parsed headers, so that a decode step pays no device-to-host copy: keyed by the buffer's
# address, size and version counter. The layout itself always comes from the call's arguments;
# a stale entry could only skip re-validating a buffer.
_header_cache: dict = {}
_header_lock = threading.Lock()


def _validate(packed: torch.Tensor) -> Layout:
    _checks.check(packed.is_contiguous(), "dyn_quant_matmul_4bit: packed_weights must be contiguous")
    nbytes = packed.numel() * packed.element_size()
    inference = packed.is_inference()
    key = (packed.data_ptr(), nbytes, -1 if inference else packed._version)
    if not inference:
        with _header_lock:
            hit = _header_cache.get(key)
        if hit is not None:
            return hit
    if nbytes < HEADER_BYTES:
        raise RuntimeError("dyn_quant_matmul_4bit: packed_weights is not a valid torch_qdev 4-bit weight (the buffer "
                           "is shorter than the header); pack it with dyn_quant_pack_4bit_weight on CUDA")
    head = bytes(packed.reshape(-1).view(torch.uint8)[:HEADER_BYTES].cpu().numpy().tobytes())
    magic, version, k, n, group, family, flags, ow, osc, ocs, ob, total = _HEADER.unpack(head[:_HEADER.size])
    err = None
    if magic != MAGIC:
        err = "bad magic: not a 4-bit weight packed by torch_qdev"
    elif version != VERSION:
        err = "unsupported packed-weight format version"
    elif family == FAMILY_CPU:
        raise RuntimeError("dyn_quant_matmul_4bit: packed_weights were packed for the CPU kernel family (NZ4-VNNI) "
                           "and cannot run on CUDA; pack them on the GPU: dyn_quant_pack_4bit_weight(weights.cuda(), "
                           "scales.cuda(), ...)")
    elif family != FAMILY_CUDA:
        err = "unknown packed-weight kernel family"
    elif k <= 0 or n <= 0 or group <= 0 or (group != k and k % group != 0):
        err = "corrupt header (sizes)"
    if err is None:
        L = Layout(k, n, group, bool(flags & FLAG_BIAS), bool(flags & FLAG_SCALES_BF16))
        if L.total_bytes != total or L.off_scales != osc or L.off_colsum != ocs:
            err = "corrupt header (layout)"
        elif nbytes < total:
            err = "the buffer is truncated"
    if err is not None:
        raise RuntimeError(f"dyn_quant_matmul_4bit: packed_weights is not a valid torch_qdev 4-bit weight ({err}); "
                           "pack it with dyn_quant_pack_4bit_weight on CUDA")
    if not inference:
        with _header_lock:
            if len(_header_cache) > 4096:
                _header_cache.clear()
            _header_cache[key] = L
    return L


@triton.jit
def _qai8dx_rows_kernel(x_ptr, q_ptr, recip_ptr, zp_ptr, K, K64, BLOCK_K: tl.constexpr):
    """One row: q = clamp(round_away(x * scale) + zp, -128, 127), q zero-padded to K64."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * K
    mx = tl.full((BLOCK_K,), float("-inf"), tl.float32)
    mn = tl.full((BLOCK_K,), float("inf"), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        m = cols < K
        v = tl.load(x_row + cols, mask=m, other=0.0).to(tl.float32)
        mx = tl.maximum(mx, tl.where(m, v, float("-inf")))
        mn = tl.minimum(mn, tl.where(m, v, float("inf")))
    rmin = tl.minimum(tl.min(mn, axis=0), 0.0)
    rmax = tl.maximum(tl.max(mx, axis=0), 0.0)
    scale = tl.where(rmin == rmax, 1.0, tl.math.div_rn(255.0, tl.where(rmin == rmax, 1.0, rmax - rmin)))
    recip = tl.where(scale != 0.0, tl.math.div_rn(1.0, tl.where(scale != 0.0, scale, 1.0)), 0.0)
    dmin = rmin * scale
    dmax = rmax * scale
    zpf = tl.where((-128.0 + dmin) + (127.0 + dmax) > 0.0, -128.0 - dmin, 127.0 - dmax)
    zpf = tl.minimum(tl.maximum(zpf, -128.0), 127.0)
    zp = rint(zpf).to(tl.int32)
    q_row = q_ptr + row * K64
    for k0 in range(0, K64, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        m = cols < K
        v = tl.load(x_row + cols, mask=m, other=0.0).to(tl.float32)
        q = round_half_away(v * scale).to(tl.int32) + zp
        q = tl.minimum(tl.maximum(q, -128), 127)
        q = tl.where(m, q, 0)
        tl.store(q_row + cols, q.to(tl.int8), mask=cols < K64)
    tl.store(recip_ptr + row, recip)
    tl.store(zp_ptr + row, zp)


@triton.jit
def _w4_operands(q_ptr, w_ptr, rm, rn, M, N, K64, k0, BLOCK_K: tl.constexpr):
    """The int8 operands of one BLOCK_K step at k0 (a multiple of 64): activations for the low and
    the high nibbles, and the two nibble planes of the weights."""
    HALF: tl.constexpr = BLOCK_K // 2
    c = tl.arange(0, HALF)
    k_lo = k0 + (c // 32) * 64 + c % 32
    m_ok = rm[:, None] < M
    a_lo = tl.load(q_ptr + rm[:, None].to(tl.int64) * K64 + k_lo[None, :], mask=m_ok, other=0)
    a_hi = tl.load(q_ptr + rm[:, None].to(tl.int64) * K64 + (k_lo + 32)[None, :], mask=m_ok, other=0)
    r = k0 // 2 + c
    b = tl.load(w_ptr + r[:, None].to(tl.int64) * N + rn[None, :], mask=rn[None, :] < N, other=0x88)
    w_lo = ((b & 0xF).to(tl.int32) - 8).to(tl.int8)
    w_hi = ((b >> 4).to(tl.int32) - 8).to(tl.int8)
    return a_lo, a_hi, w_lo, w_hi


@triton.jit
def _w4a8_kernel(q_ptr, zp_ptr, recip_ptr, w_ptr, scale_ptr, colsum_ptr, bias_ptr, out_ptr, M, N, K64,
                 GROUPS, GROUP_STEPS, M_BUCKET,
                 HAS_BIAS: tl.constexpr, OUT_BF16: tl.constexpr, PAIRED_GROUPS: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """PAIRED_GROUPS (group = 32): each 64-k step holds two groups, low nibbles then high nibbles.
    Otherwise each group spans GROUP_STEPS steps of BLOCK_K."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    zp = tl.load(zp_ptr + rm, mask=rm < M, other=0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if PAIRED_GROUPS:
        for s in range(0, K64 // 64):
            a_lo, a_hi, w_lo, w_hi = _w4_operands(q_ptr, w_ptr, rm, rn, M, N, K64, s * 64, 64)
            i_lo = tl.dot(a_lo, w_lo, out_dtype=tl.int32)
            i_hi = tl.dot(a_hi, w_hi, out_dtype=tl.int32)
            g = 2 * s
            cs = tl.load(colsum_ptr + g * N + rn, mask=n_ok, other=0).to(tl.int32)
            sc = tl.load(scale_ptr + g * N + rn, mask=n_ok, other=0.0).to(tl.float32)
            acc = acc + (i_lo - zp[:, None] * cs[None, :]).to(tl.float32) * sc[None, :]
            if g + 1 < GROUPS:
                cs = tl.load(colsum_ptr + (g + 1) * N + rn, mask=n_ok, other=0).to(tl.int32)
                sc = tl.load(scale_ptr + (g + 1) * N + rn, mask=n_ok, other=0.0).to(tl.float32)
                acc = acc + (i_hi - zp[:, None] * cs[None, :]).to(tl.float32) * sc[None, :]
    else:
        for g in range(0, GROUPS):
            iacc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
            for s in range(0, GROUP_STEPS):
                a_lo, a_hi, w_lo, w_hi = _w4_operands(q_ptr, w_ptr, rm, rn, M, N, K64,
                                                      (g * GROUP_STEPS + s) * BLOCK_K, BLOCK_K)
                iacc = tl.dot(a_lo, w_lo, iacc, out_dtype=tl.int32)
                iacc = tl.dot(a_hi, w_hi, iacc, out_dtype=tl.int32)
            cs = tl.load(colsum_ptr + g * N + rn, mask=n_ok, other=0).to(tl.int32)
            sc = tl.load(scale_ptr + g * N + rn, mask=n_ok, other=0.0).to(tl.float32)
            acc = acc + (iacc - zp[:, None] * cs[None, :]).to(tl.float32) * sc[None, :]
    recip = tl.load(recip_ptr + rm, mask=rm < M, other=0.0)
    y = acc * recip[:, None]
    if HAS_BIAS:
        y = y + tl.load(bias_ptr + rn, mask=n_ok, other=0.0)[None, :]
    mask = (rm[:, None] < M) & n_ok[None, :]
    ptrs = out_ptr + rm[:, None].to(tl.int64) * N + rn[None, :]
    if OUT_BF16:
        tl.store(ptrs, to_bf16_trunc(y), mask=mask)
    else:
        tl.store(ptrs, y, mask=mask)


# Decode (M <= 16): 16-row tiles, narrow column tiles so that N / BLOCK_N programs fill the SMs
# while the nibbles stream once; prefill: 64..128-row tiles (128x128 spills: an int32 and an fp32
# accumulator per tile).
W4_CONFIGS = [triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn), num_warps=w, num_stages=s)
              for bm, bn, w, s in [(16, 32, 4, 4), (16, 64, 4, 4), (16, 128, 4, 3), (64, 64, 4, 3),
                                   (64, 128, 8, 3), (128, 64, 4, 3), (128, 64, 8, 3)]]
_w4_tuned = None


def _prune(configs, named_args, **kwargs):
    m = named_args["M"]
    small = [c for c in configs if c.kwargs["BLOCK_M"] == 16]
    return small if m <= 16 else [c for c in configs if c.kwargs["BLOCK_M"] > 16]


def _block_k(L: Layout) -> tuple[int, bool, int]:
    """(BLOCK_K, paired groups, steps per group) for a layout."""
    if not L.channelwise and L.group == 32:
        return 64, True, 0
    span = L.k64 if L.channelwise else L.group
    bk = 128 if span % 128 == 0 else 64
    return bk, False, span // bk


def dyn_quant_matmul_4bit(inp: torch.Tensor, packed_weights: torch.Tensor, block_size: int, in_features: int,
                          out_features: int) -> torch.Tensor:
    """inp @ W^T (+ bias) with per-row dynamic int8 activations; bit-exact with the CPU op."""
    global _w4_tuned
    check_device(inp, "dyn_quant_matmul_4bit")
    _checks.check_dyn_quant_matmul_args(inp, packed_weights, block_size, in_features)
    if torch.compiler.is_compiling():  # traced: no host reads; the layout follows from the arguments
        nbytes = packed_weights.numel() * packed_weights.element_size()
        H = Layout(in_features, out_features, block_size,
                   nbytes >= Layout(in_features, out_features, block_size, True).total_bytes)
    else:
        H = _validate(packed_weights)
    _checks.check(H.k == in_features and H.n == out_features and H.group == block_size,
                  f"dyn_quant_matmul_4bit: packed_weights were packed for in_features={H.k}, out_features={H.n}, "
                  f"block_size={H.group} but the call passes {in_features}, {out_features}, {block_size}")
    L = H
    out = torch.empty((*inp.shape[:-1], out_features), dtype=inp.dtype, device=inp.device)
    m = inp.numel() // in_features if in_features else 0
    if m == 0:
        return out
    x = inp.reshape(m, in_features).contiguous()
    q = torch.empty((m, L.k64), dtype=torch.int8, device=inp.device)
    recip = torch.empty(m, dtype=torch.float32, device=inp.device)
    zp = torch.empty(m, dtype=torch.int32, device=inp.device)
    pk = packed_weights.reshape(-1).view(torch.uint8)
    w = pk[L.off_weights:]
    scales = pk[L.off_scales:L.off_scales + L.scale_bytes * L.groups * L.n].view(
        torch.bfloat16 if L.scales_bf16 else torch.float32)
    colsum = pk[L.off_colsum:L.off_colsum + L.colsum_bytes * L.groups * L.n].view(
        torch.int16 if L.colsum_bytes == 2 else torch.int32)
    bias = pk[L.off_bias:L.off_bias + 4 * L.n].view(torch.float32) if L.has_bias else scales
    bk, paired, steps = _block_k(L)
    with device_guard(inp):
        blk = min(next_pow2(L.k64), 64 if INTERPRET else 2048)
        launcher(_qai8dx_rows_kernel)[(m,)](x, q, recip, zp, in_features, L.k64, BLOCK_K=blk, **LAUNCH_OPTS)
        args = (q, zp, recip, w, scales, colsum, bias, out, m, L.n, L.k64, L.groups, steps,
                min(next_pow2(m), 4096))
        flags = dict(HAS_BIAS=L.has_bias, OUT_BF16=inp.dtype == torch.bfloat16, PAIRED_GROUPS=paired, BLOCK_K=bk)
        if INTERPRET:
            bm = 16
            launcher(_w4a8_kernel)[(cdiv(L.n, 32), cdiv(m, bm))](*args, **flags, BLOCK_M=bm, BLOCK_N=32, **LAUNCH_OPTS)
        else:
            if _w4_tuned is None:
                _w4_tuned = triton.autotune(W4_CONFIGS, key=["M_BUCKET", "N", "K64", "GROUPS"],
                                            prune_configs_by=dict(early_config_prune=_prune))(_w4a8_kernel)
            launcher(_w4_tuned)[lambda meta: (cdiv(L.n, meta["BLOCK_N"]), cdiv(m, meta["BLOCK_M"]))](
                *args, **flags, **LAUNCH_OPTS)
    return out
