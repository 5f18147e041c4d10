"""Argument checks of the Triton ops: the CPU glue's rules and messages
(csrc/aten/native/QuantMatmul.cpp, DynamicQuant.cpp, DynQuant4bit.cpp,
WeightQuantMatmul.cpp, TransQuantParam.cpp), so that bad input raises the
same error on CUDA as on CPU before any kernel runs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional

import torch

_CUSTOM = {285: "torch_npu.int4", 290: "torch_npu.hifloat8", 291: "torch_npu.float8_e5m2",
           292: "torch_npu.float8_e4m3fn", 293: "torch_npu.float8_e8m0fnu", 296: "torch_npu.float4_e2m1fn_x2",
           297: "torch_npu.float4_e1m2fn_x2"}
# c10::ScalarType numbering of the dtypes these ops name
_SCALAR_TYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.float32,
                 torch.float64, None, torch.complex64, torch.complex128, torch.bool, torch.qint8, torch.quint8,
                 torch.qint32,
                 torch.bfloat16, torch.quint4x2, None, None, None, None, None, None, torch.float8_e5m2,
                 torch.float8_e4m3fn]


def dtype_to_int(dt: Optional[torch.dtype]) -> Optional[int]:
    if dt is None:
        return None
    return _SCALAR_TYPES.index(dt)


def dtype_name(dt: torch.dtype) -> str:
    return str(dt)


def check(cond: bool, msg) -> None:
    if not cond:
        raise RuntimeError(msg() if callable(msg) else msg)


def not_supported(what: str):
    raise NotImplementedError(f"npu_quant_matmul: {what} is an Ascend 950 feature and is not supported on qdev")


def resolve_output_dtype(v: Optional[int]) -> torch.dtype:
    if v is None:
        return torch.int8
    if v in _CUSTOM:
        not_supported("output dtype " + _CUSTOM[v])
    t = _SCALAR_TYPES[v] if 0 <= v < len(_SCALAR_TYPES) else None
    check(t is not None, f"Not supported output dtype is {v}")
    if t in (torch.float32, torch.float8_e4m3fn, torch.float8_e5m2):
        not_supported("output dtype " + dtype_name(t))
    check(t in (torch.float16, torch.bfloat16, torch.int8, torch.int32), f"Not supported output dtype is {t}")
    return t


@dataclass
class QuantMatmulPlan:
    m: int = 0
    k: int = 0
    n: int = 0
    group: int = 0
    a4w4: bool = False
    a4w4_group: bool = False
    x2_k_packed: bool = False
    batch: List[int] = field(default_factory=list)
    out_shape: List[int] = field(default_factory=list)
    out_dtype: torch.dtype = torch.int8


def _same_device(x1, *ts):
    for t in ts:
        if t is not None:
            check(t.device == x1.device, f"Expected all tensors to be on the same device, but found at least two "
                  f"devices, {x1.device} and {t.device}!")


def plan_quant_matmul(x1, x2, scale, offset, pertoken, bias, output_dtype, x1_dtype, x2_dtype,
                      pertoken_scale_dtype, scale_dtype, group_sizes, y_scale) -> QuantMatmulPlan:
    for opt in (x1_dtype, x2_dtype, pertoken_scale_dtype, scale_dtype):
        if opt is not None:
            not_supported("the dtype argument " + _CUSTOM.get(opt, str(opt)))
    if y_scale is not None:
        not_supported("y_scale")
    x1t, x2t = x1.dtype, x2.dtype
    if {x1t, x2t} & {torch.float8_e4m3fn, torch.float8_e5m2}:
        not_supported("float8 input")
    p = QuantMatmulPlan()
    p.a4w4 = x1t == torch.int32 and x2t == torch.int32
    if x1t == torch.int8 and x2t == torch.int32:
        raise NotImplementedError("npu_quant_matmul: A8W4 (int8 x1 with int32-packed int4 x2) runs on CPU and qdev "
                                  "tensors; it has no CUDA kernel")
    check(p.a4w4 or (x1t == torch.int8 and x2t == torch.int8),
          f"npu_quant_matmul supports int8 x int8 (A8W8) and int32 x int32 (packed int4, A4W4) inputs (and int8 x "
          f"int32, A8W4), but x1 is {x1t} and x2 is {x2t}")
    check(2 <= x1.dim() <= 6, "x1 dim num should be 2 ~ 6, please check x1 dim num ")
    if p.a4w4:
        check(x2.dim() == 2, "x2 dim num should be 2 when x1's dtype is int32, please check x2 dim num ")
        if x1.size(-1) == x2.size(-2):
            p.x2_k_packed, p.k, p.n = True, x1.size(-1) * 8, x2.size(-1)
        else:
            check(x2.size(-2) == x1.size(-1) * 8,
                  "k dim of x2 should be 8 multiple of k dim of x1, please check k dim of x1 and x2 ")
            p.k, p.n = x2.size(-2), x2.size(-1) * 8
    else:
        check(2 <= x2.dim() <= 6, "x2 dim num should be 2 ~ 6 when x1's dtype is int8, please check x2 dim num ")
        check(x1.size(-1) == x2.size(-2), "k dim of x1 and x2 need be same, please check k dim of x1 and x2 ")
        p.k, p.n = x1.size(-1), x2.size(-1)
    p.m = x1.size(-2)
    p.a4w4_group = p.a4w4 and scale.dim() == 2
    p.batch = list(torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2]))
    p.out_shape = p.batch + [p.m, p.n]
    p.out_dtype = out = resolve_output_dtype(output_dtype)
    has_pt = pertoken is not None
    if group_sizes is not None:
        gs = list(group_sizes)
        check(len(gs) == 3, "group_sizes's length must be 3, please check group_sizes's length")
        for g in gs:
            check(0 <= g <= 65535, "group param value must conform to range [0, 65535]")
        if p.a4w4_group:
            check(gs[0] <= 1 and gs[1] <= 1 and gs[2] > 0,
                  f"A4W4 per-group quantization takes group_sizes [1, 1, group_k], but got {gs}")
            p.group = gs[2]
        elif gs[0] > 1 or gs[1] > 1 or gs[2] > 1:
            not_supported("per-block quantization (group_sizes > 1)")
    if p.a4w4_group:
        groups = -(-p.k // p.group) if p.group > 0 else 0
        check(p.group > 0, "A4W4 per-group quantization takes group_sizes [1, 1, group_k], but got None")
        check(scale.dtype == torch.float32 and scale.size(0) == groups and scale.size(1) == p.n,
              f"A4W4 per-group scale must be float32 of shape ({groups}, {p.n}), but it is {scale.dtype} "
              f"{list(scale.shape)}")
        if offset is not None:
            check(offset.dtype == torch.float16 and offset.shape == scale.shape,
                  f"A4W4 per-group offset must be float16 of the scale's shape {list(scale.shape)}")
        check(has_pt and pertoken.dtype == torch.float32 and pertoken.numel() == p.m and pertoken.dim() in (1, 2),
              "A4W4 per-group quantization needs a float32 pertoken_scale of shape (m, 1)")
        check(bias is None, "A4W4 per-group quantization takes no bias")
        check(out in (torch.float16, torch.bfloat16),
              f"A4W4 per-group quantization needs float16 or bfloat16 output, but output_dtype is {out}")
        check(x1.dim() == 2, "A4W4 per-group quantization supports 2-D x1")
        _same_device(x1, x2, scale, offset, pertoken, bias)
        return p
    if bias is not None:
        b = bias
        if p.a4w4:
            check(b.dim() == 1, "bias_dim_num should be 1 when x1's dtype is int32, please check bias dim num ")
        else:
            check(b.dim() in (1, 3), "bias_dim_num should be 1 or 3 when x1's dtype is int8, please check bias dim num ")
        if b.dim() == 3:
            check(len(p.out_shape) == 3, "when bias dim is 3, out dim need to be 3")
            check(b.size(0) == p.batch[0],
                  "infered batch value should be equal to bias batch dim value, please check bias batch dim value")
            check(b.size(1) == 1, "bias_second_dim should be 1, please check bias second dim value ")
            check(b.size(2) == p.n, "bias_third_dim should be equal to x2_n_dim, please check bias third dim value ")
        else:
            check(b.size(0) == p.n, "bias_first_dim should be equal to x2 n dim, please check bias 1st dim value ")
        bt = b.dtype
        check(bt in (torch.int32, torch.bfloat16, torch.float32, torch.float16),
              f"bias's type supported for int32, bfloat16, float16 and float32, but bias.dtype is {bt}")
        check(bt != torch.bfloat16 or out == torch.bfloat16,
              f"When bias dtype is bfloat16, output_dtype must be bfloat16, but it is {out}")
        check(out != torch.int32 or bt == torch.int32,
              f"When output_dtype dtype is int32, bias_dtype must be int32, but it is {bt}")
        if bt == torch.float16:
            check(has_pt, "Bias dtype cannot be float16 when pertoken not given.")
            check(out == torch.float16,
                  f"When bias dtype is float16 and pertoken is given, output_dtype must be float16, but it is {out}")
        check(bt == torch.int32 or out in (torch.bfloat16, torch.float16),
              f"npu_quant_matmul: a {bt} bias needs a float16 or bfloat16 output, but output_dtype is {out}")
        check(bt != torch.float32 or out == torch.bfloat16 or has_pt,
              "npu_quant_matmul: a float32 bias with float16 output needs pertoken_scale")
    st = scale.dtype
    check(st in (torch.int64, torch.float32, torch.bfloat16),
          f"scale's dtype must be int64, float32 or bfloat16, but scale's dtype is {st}")
    check(st != torch.bfloat16 or out in (torch.bfloat16, torch.int32),
          f"When scale's dtype is bfloat16, output_dtype must be bfloat16 or int32, but output_dtype is {out}")
    check(out != torch.int32 or st in (torch.bfloat16, torch.float32),
          f"When output_dtype is int32, scale's dtype must be bfloat16 or float32, but scale's dtype is {st}")
    if p.a4w4 and not has_pt:
        check(out == torch.float16, "When input's dtype is int32, output_dtype must be float16, but output_dtype is "
              f"{out if output_dtype is not None else 'None'}")
    check(st != torch.int64 or (out in (torch.int8, torch.float16) and not has_pt),
          "npu_quant_matmul: an int64 scale is only valid for int8 or float16 output without pertoken_scale, but "
          f"output_dtype is {out}")
    if offset is not None:
        o = offset
        check(o.dtype == torch.float32, f"offset's type supported for float32, but offset.dtype is {o.dtype}")
        check(o.dim() == 1, "the offset dim num must be 1, please check offset dim num ")
        check(o.size(0) in (1, p.n),
              "the offset 1st dim value must be 1 or x2 n dim value, please check offset 1st dim value ")
        check(out == torch.int8, f"npu_quant_matmul: offset is only supported with int8 output, but output_dtype is {out}")
    if has_pt:
        pt = pertoken
        check(pt.dim() == 1, "the pertoken_scale dim num must be 1, please check scale dim num ")
        check(pt.dtype == torch.float32, f"pertoken_scale's dtype must be float32, but it is {pt.dtype}")
        check(pt.size(0) == p.m,
              f"the pertoken_scale 1st dim value must be x1 m dim value ({p.m}), but it is {pt.size(0)}")
        check(out in (torch.float16, torch.bfloat16),
              f"npu_quant_matmul: pertoken_scale needs float16 or bfloat16 output, but output_dtype is {out}")
    check(scale.dim() == 1, "the scale dim num must be 1, please check scale dim num ")
    check(scale.size(0) in (1, p.n),
          "the scale 1st dim value must be 1 or x2 n dim value, please check scale 1st dim value ")
    _same_device(x1, x2, scale, offset, pertoken, bias)
    return p


def trans_quant_param_shape(scale, offset, round_mode) -> List[int]:
    mode = 0 if round_mode is None else round_mode
    check(mode in (0, 1), f"round_mode must be 0 or 1. but now is {mode}")
    check(scale.dtype == torch.float32, f"scale's dtype must be float32, but it is {scale.dtype}")
    check(scale.dim() == 1 or (scale.dim() == 2 and scale.size(0) == 1), "the scale shape support only (1, ) and (1, n)")
    check(scale.numel() > 0, "scale must not be empty")
    if offset is None:
        return list(scale.shape)
    check(offset.dtype == torch.float32, f"offset's dtype must be float32, but it is {offset.dtype}")
    if scale.dim() == 2:
        check(offset.shape == scale.shape,
              "when the input shape of scale is (1, n), shape of scale and offset should be equal")
        return list(scale.shape)
    check(offset.dim() == 1 and offset.numel() > 0, "the offset shape support only (1, ) and (n, )")
    s, o = scale.size(0), offset.size(0)
    check(s == o or s == 1 or o == 1,
          "offset first dim should be equal to scale first dim if none of them are equal to one")
    return [max(s, o)]


# --- npu_dynamic_quant -------------------------------------------------------------------
@dataclass
class DynamicQuantPlan:
    mode: str = "pertoken"
    int4: bool = False
    dst_max: float = 127.0
    dst_min: float = -128.0
    h: int = 0
    y_shape: List[int] = field(default_factory=list)
    scale_shape: List[int] = field(default_factory=list)


def plan_dynamic_quant(x, smooth, group_index, dst_type, quant_mode, dst_type_max) -> DynamicQuantPlan:
    p = DynamicQuantPlan()
    check(x.dim() > 1, "Input shape dim should be greater than 1")
    check(x.dtype in (torch.float16, torch.bfloat16, torch.float32),
          f"npu_dynamic_quant: input must be float16, bfloat16 or float32, but it is {x.dtype}")
    dt = 1 if dst_type is None else (dtype_to_int(dst_type) if isinstance(dst_type, torch.dtype) else dst_type)
    if dt in (290, 291, 292, 23, 24):
        raise NotImplementedError("npu_dynamic_quant: float8/hifloat8 outputs are Ascend 950 features and are not "
                                  "supported on qdev")
    check(dt in (1, 16), f"npu_dynamic_quant: dst_type must be torch.int8 or torch.quint4x2, but it is {dt}")
    p.int4 = dt == 16
    if p.int4:
        p.dst_max, p.dst_min = 7.0, -8.0
        check(x.size(-1) % 8 == 0, "Input shape last dim must be divded by 8 when int4 quantization")
    if dst_type_max != 0.0:
        p.dst_max = float(torch.tensor(dst_type_max, dtype=torch.float32))
        p.dst_min = -p.dst_max - 1.0
    check(quant_mode in ("pertoken", "pertensor", "perchannel"),
          f"quant_mode must be one of pertoken, pertensor and perchannel, but it is {quant_mode}")
    p.mode = quant_mode
    p.h = x.size(-1)
    if group_index is not None:
        check(p.mode == "pertoken", "group_index is only supported with quant_mode pertoken")
        check(smooth is not None and smooth.dim() == 2 and smooth.size(1) == p.h,
              f"with group_index, smooth_scales must be 2-D (group_num, {p.h})")
        check(group_index.dtype == torch.int32 and group_index.dim() == 1 and group_index.size(0) == smooth.size(0),
              "group_index must be a 1-D int32 tensor with one entry per smooth_scales row")
        check(smooth.size(0) <= 1024, "group_index supports at most 1024 groups")
    elif smooth is not None:
        want = x.size(-2) if p.mode == "perchannel" else p.h
        check(smooth.dim() == 1 and smooth.size(0) == want,
              f"smooth_scales must be 1-D of size {want}, but its shape is {list(smooth.shape)}")
    if smooth is not None:
        check(smooth.dtype == x.dtype,
              f"smooth_scales must have the dtype of input ({x.dtype}), but it is {smooth.dtype}")
        _same_device(x, smooth)
    if group_index is not None:
        _same_device(x, group_index)
    p.y_shape = list(x.shape)
    if p.int4:
        p.y_shape[-1] //= 8
    if p.mode == "pertoken":
        p.scale_shape = list(x.shape[:-1])
    elif p.mode == "pertensor":
        p.scale_shape = [1]
    else:
        p.scale_shape = list(x.shape[:-2]) + [p.h]
    return p


# --- W4A8 -----------------------------------------------------------------------------------
def check_group(block_size: int, in_features: int) -> None:
    check(block_size == in_features or (block_size % 32 == 0 and block_size > 0 and in_features % block_size == 0),
          f"Group size should be multiple of 32, in_features [{in_features}]. Provided {block_size}")


def check_dyn_quant_pack_args(weights, scales, bias, block_size, in_features, out_features) -> None:
    check(weights.dtype == torch.uint8, "dyn_quant_pack_4bit_weight: weights must be uint8 (two int4 values per "
          f"byte), but they are {weights.dtype}")
    check(in_features > 0 and out_features > 0, "in_features and out_features must be positive")
    check(in_features % 2 == 0, f"dyn_quant_pack_4bit_weight: in_features must be even, but it is {in_features}")
    check_group(block_size, in_features)
    check(weights.numel() == out_features * in_features // 2, f"dyn_quant_pack_4bit_weight: weights hold "
          f"{weights.numel()} bytes, but out_features * in_features / 2 = {out_features * in_features // 2}")
    groups = in_features // block_size
    check(scales.numel() == out_features * groups, f"dyn_quant_pack_4bit_weight: expected {out_features * groups} "
          f"scales (out_features x in_features / block_size), got {scales.numel()}")
    check(scales.dtype in (torch.float32, torch.bfloat16),
          f"dyn_quant_pack_4bit_weight: scales must be float32 or bfloat16, but they are {scales.dtype}")
    if bias is not None:
        check(bias.numel() == out_features, f"Expected bias length to match output dimension ({out_features}), but "
              f"it has {bias.numel()} elements")
    _same_device(weights, scales, bias)


def check_dyn_quant_matmul_args(inp, packed, block_size, in_features) -> None:
    check(inp.dtype in (torch.float32, torch.bfloat16),
          f"dyn_quant_matmul_4bit: expect input to be float32 or bfloat16 tensor, but it is {inp.dtype}")
    check_group(block_size, in_features)
    check(inp.dim() >= 1 and inp.size(-1) == in_features, f"dyn_quant_matmul_4bit: the input has "
          f"{inp.size(-1) if inp.dim() >= 1 else 0} features (last dimension) but in_features is {in_features}")
    _same_device(inp, packed)


def numel(shape) -> int:
    return math.prod(shape)
