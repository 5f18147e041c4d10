"""Goldens for torch_npu's quantized ops, written from the formulas in
shared/reference/torch_npu_api.md (§1.3, §2, §4) with plain torch ops."""
from __future__ import annotations

import torch


def f32_bits(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def trans_quant_param(scale, offset=None, round_mode=0):
    bits = f32_bits(scale)
    if round_mode == 1:
        exp = (bits >> 23) & 0xFF
        rnd = (bits >> 12) & 1
        sticky = (bits & 0xFFF) != 0
        lsb = (bits >> 13) & 1
        up = (rnd == 1) & (sticky | (lsb == 1)) & (exp != 0) & (exp != 255)
        bits = torch.where(up, bits + 0x2000, bits)
        bits = torch.where(exp == 0, bits & 0x80000000, bits)
    out = (bits & 0xFFFFE000) | (1 << 46)
    if offset is not None:
        o = torch.round(offset.to(torch.float32)).clamp(-256, 255).to(torch.int64)  # round half even
        out = out | ((o & 0x1FF) << 37)
    return out


def decode_scale(packed):
    low = (packed & 0xFFFFE000).to(torch.int64)
    low = torch.where(low >= 2**31, low - 2**32, low).to(torch.int32)
    return low.view(torch.float32)


def decode_offset(packed):
    o = (packed >> 37) & 0x1FF
    return torch.where(o >= 256, o - 512, o).to(torch.int32)


def quant_matmul(x1, x2, scale, *, offset=None, pertoken_scale=None, bias=None, output_dtype=None):
    """int8 (or unpacked int4) operands on the CPU; returns the torch_npu result."""
    acc = torch.matmul(x1.to(torch.int64), x2.to(torch.int64)).to(torch.int32)
    return quant_matmul_epilogue(acc, scale, offset=offset, pertoken_scale=pertoken_scale, bias=bias,
                                 output_dtype=output_dtype)


def quant_matmul_epilogue(acc, scale, *, offset=None, pertoken_scale=None, bias=None, output_dtype=None):
    """npu_quant_matmul's output stage on the int32 accumulator (any device)."""
    out = output_dtype or torch.int8
    if bias is not None and bias.dtype == torch.int32:
        b = bias if bias.dim() == 1 else bias  # (n,) or (batch, 1, n) broadcast
        acc = acc + b
    if out == torch.int32:
        return acc
    pertoken = pertoken_scale
    if scale.dtype == torch.int64:
        s, o = decode_scale(scale), decode_offset(scale)
    else:
        s = scale.to(torch.float32)
        o = None
        if scale.dtype == torch.float32 and pertoken is None and out in (torch.int8, torch.float16):
            s = decode_scale(trans_quant_param(scale))
        if offset is not None:
            o = torch.round(offset).clamp(-256, 255).to(torch.int32)
    if out == torch.int8:
        v = torch.round((acc.to(torch.float32) * s).clamp(-256, 255))
        if o is not None:
            v = v + o.to(torch.float32)
        return v.clamp(-128, 127).to(torch.int8)
    f = acc.to(torch.float32) * s
    if pertoken is not None:
        f = f * pertoken.to(torch.float32)[:, None]
    if bias is not None and bias.dtype != torch.int32:
        f = f + bias.to(torch.float32)
    return f.to(out)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """int32 holding 8 int4 along the last dim, least significant nibble first -> int8."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    nib = (packed.unsqueeze(-1) >> shifts) & 0xF
    nib = torch.where(nib > 7, nib - 16, nib)
    return nib.reshape(*packed.shape[:-1], packed.shape[-1] * 8).to(torch.int8)


def pack_int4(v: torch.Tensor) -> torch.Tensor:
    """int values in [-8, 7] along the last dim (multiple of 8) -> int32, LSB first."""
    v = (v.to(torch.int64) & 0xF).reshape(*v.shape[:-1], v.shape[-1] // 8, 8)
    shifts = torch.arange(0, 32, 4, dtype=torch.int64)
    packed = (v << shifts).sum(-1)
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


def dynamic_quant(x, smooth=None, asymmetric=False, dst_max=127.0, dst_min=-128.0):
    xs = x.to(torch.float32)
    if smooth is not None:
        xs = xs * smooth.to(torch.float32)
    nan = torch.isnan(xs)  # NaN inputs are left out of the range (std::max/min semantics)
    if asymmetric:
        mx, mn = torch.where(nan, -torch.inf, xs).amax(-1), torch.where(nan, torch.inf, xs).amin(-1)
        scale = (mx - mn) / (dst_max - dst_min)
        offset = torch.where(scale == 0, torch.zeros_like(scale), dst_max - mx / scale)
        y = torch.where(scale[..., None] == 0, torch.zeros_like(xs),
                        torch.round(xs / scale[..., None] + offset[..., None]))
        return y.nan_to_num(nan=0.0, posinf=dst_max, neginf=dst_min).clamp(dst_min, dst_max), scale, offset
    scale = torch.where(nan, 0.0, xs.abs()).amax(-1) * torch.tensor(1.0 / dst_max, dtype=torch.float32)
    y = torch.where(scale[..., None] == 0, torch.zeros_like(xs), torch.round(xs / scale[..., None]))
    # A NaN quotient (NaN input, or inf / inf) quantizes to 0: defined, and the same in every variant.
    return y.nan_to_num(nan=0.0, posinf=dst_max, neginf=dst_min).clamp(dst_min, dst_max), scale


def _quantize_along(xs, dim, asymmetric, dst_max, dst_min):
    """One (scale, offset) per slice of xs reduced along dim (kept); empty slices get 0."""
    if xs.shape[dim] == 0:
        shape = list(xs.shape)
        shape[dim] = 1
        return xs.clone(), torch.zeros(shape), torch.zeros(shape)
    nan = torch.isnan(xs)  # NaN inputs are left out of the range (std::max/min semantics)
    if asymmetric:
        mx = torch.where(nan, -torch.inf, xs).amax(dim, keepdim=True)
        mn = torch.where(nan, torch.inf, xs).amin(dim, keepdim=True)
        scale = (mx - mn) / (dst_max - dst_min)
        offset = torch.where(scale == 0, torch.zeros_like(scale), dst_max - mx / scale)
        y = torch.where(scale == 0, torch.zeros_like(xs), torch.round(xs / scale + offset))
    else:
        scale = torch.where(nan, 0.0, xs.abs()).amax(dim, keepdim=True) * torch.tensor(1.0 / dst_max,
                                                                                      dtype=torch.float32)
        offset = torch.zeros_like(scale)
        y = torch.where(scale == 0, torch.zeros_like(xs), torch.round(xs / scale))
    return y.nan_to_num(nan=0.0, posinf=dst_max, neginf=dst_min).clamp(dst_min, dst_max), scale, offset


def dynamic_quant_modes(x, smooth=None, group_index=None, asymmetric=False, mode="pertoken", dst_max=127.0,
                        dst_min=-128.0):
    """npu_dynamic_quant(_asymmetric) in every quant_mode (pertoken: per row; pertensor: one
    scale; perchannel: per column of each matrix), with 1-D smooth scales or MoE group_index
    (row-group ends, one smooth row each). Returns (y as float values, scale, offset)."""
    xs = x.to(torch.float32)
    h = x.shape[-1]
    if group_index is not None:
        rows = xs.reshape(-1, h).clone()
        begin = 0
        for e, end in enumerate(group_index.tolist()):
            rows[begin:end] *= smooth[e].to(torch.float32)
            begin = end
        xs = rows.reshape(x.shape)
    elif smooth is not None:
        s = smooth.to(torch.float32)
        xs = xs * (s.unsqueeze(-1) if mode == "perchannel" else s)
    if mode == "pertoken":
        y, s, o = _quantize_along(xs, -1, asymmetric, dst_max, dst_min)
        s, o = s.squeeze(-1), o.squeeze(-1)
    elif mode == "pertensor":
        y, s, o = _quantize_along(xs.reshape(1, -1), -1, asymmetric, dst_max, dst_min)
        y, s, o = y.reshape(x.shape), s.reshape(1), o.reshape(1)
    else:
        y, s, o = _quantize_along(xs, -2, asymmetric, dst_max, dst_min)
        s, o = s.squeeze(-2), o.squeeze(-2)
    return y, s, o


# W4A8 dynamic (aten::_dyn_quant_matmul_4bit numerics, w4_dynamic.md §2)

def w4a8_quant_rows(x):
    """Per-row asymmetric int8 with the nudged zero point (§2.1)."""
    x = x.float()
    nan = torch.isnan(x)  # NaN is left out of the range, as the kernels' std::min/max
    mn, mx = torch.where(nan, torch.inf, x).min(1).values, torch.where(nan, -torch.inf, x).max(1).values
    rmin, rmax = torch.minimum(torch.zeros_like(mn), mn), torch.maximum(torch.zeros_like(mx), mx)
    scale = torch.where(rmin == rmax, torch.ones_like(rmin), torch.tensor(255.0) / (rmax - rmin))
    recip = torch.where(scale != 0, 1.0 / scale, torch.zeros_like(scale))
    dmin, dmax = rmin * scale, rmax * scale
    zp = torch.where(((-128.0 + dmin) + (127.0 + dmax)) > 0, -128.0 - dmin, 127.0 - dmax).clamp(-128, 127)
    nzp = torch.round(zp).to(torch.int64)
    v = (x * scale[:, None]).double()
    r = torch.sign(v) * torch.floor(v.abs() + 0.5)
    # A NaN or out-of-range product converts to INT32_MIN; + zp wraps in 32 bits (x86 cvttps2dq, vpaddd).
    ri = torch.where((r >= -2.0**31) & (r < 2.0**31), r, torch.tensor(-2.0**31, dtype=torch.float64)).to(torch.int64)
    s = (ri + nzp[:, None] + 2**31) % 2**32 - 2**31
    q = s.clamp(-128, 127)
    return q, nzp, recip


def w4a8_emulate(x, w_u8, scales, gs, K, N, bias=None):
    """§2.2–2.3: exact int32 per-group sums, sequential fp32 group accumulation, then recip, bias."""
    q, nzp, recip = w4a8_quant_rows(x)
    lo, hi = (w_u8 & 0xF).to(torch.int64), (w_u8 >> 4).to(torch.int64)
    w = torch.stack([lo, hi], -1).reshape(N, K) - 8
    a = q - nzp[:, None]
    G = K // gs
    acc = torch.einsum("mgk,ngk->mng", a.reshape(-1, G, gs).double(), w.reshape(N, G, gs).double()).to(torch.int64)
    s = scales.float().reshape(N, G)
    main = torch.zeros(x.shape[0], N)
    for g in range(G):
        main = main + acc[:, :, g].float() * s[:, g]
    out = main * recip[:, None]
    return out + bias if bias is not None else out


def w4a8_output(fp32, dtype):
    """The W4A8 result in the input's dtype: bfloat16 truncates the float32 value, as PyTorch."""
    if dtype == torch.bfloat16:
        return (fp32.contiguous().view(torch.int32) >> 16 << 16).view(torch.float32).bfloat16()
    return fp32.to(dtype)
