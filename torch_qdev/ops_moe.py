"""torch_npu's Mixture-of-Experts inference ops on qdev: typed wrappers and fake kernels.

``npu_grouped_matmul`` is the only GEMM of a quantized MoE layer in torch_npu code
(vLLM-Ascend, MindIE); the routing (``npu_moe_init_routing_v2`` /
``npu_moe_finalize_routing``), activation (``npu_dequant_swiglu_quant``,
``npu_swiglu_quant``) and norm + quantization (``npu_add_rms_norm_quant``,
``npu_add_rms_norm_dynamic_quant``) ops around it complete the layer.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch

from .ops import DType, _dtype_int

__all__ = ["npu_grouped_matmul"]

_DTYPE_OF = {1: torch.int8, 3: torch.int32, 5: torch.float16, 6: torch.float32, 15: torch.bfloat16}


def _as_list(v):
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return [v]
    return list(v)


def npu_grouped_matmul(x: Sequence[torch.Tensor], weight: Sequence[torch.Tensor], *,
                       bias: Optional[Sequence[torch.Tensor]] = None,
                       scale: Optional[Sequence[torch.Tensor]] = None,
                       offset: Optional[Sequence[torch.Tensor]] = None,
                       antiquant_scale: Optional[Sequence[torch.Tensor]] = None,
                       antiquant_offset: Optional[Sequence[torch.Tensor]] = None,
                       per_token_scale: Optional[Sequence[torch.Tensor]] = None,
                       group_list: Union[torch.Tensor, Sequence[int], None] = None,
                       activation_input: Optional[Sequence[torch.Tensor]] = None,
                       activation_quant_scale: Optional[Sequence[torch.Tensor]] = None,
                       activation_quant_offset: Optional[Sequence[torch.Tensor]] = None,
                       split_item: int = 0, group_type: Optional[int] = -1, group_list_type: int = 0,
                       act_type: int = 0, output_dtype: DType = None,
                       tuning_config: Optional[Sequence[int]] = None) -> List[torch.Tensor]:
    """torch_npu.npu_grouped_matmul: y_i = x_i @ weight_i (+ quantization), see the README.

    ``group_list`` as ``List[int]`` (torch_npu's older overload) holds cumulative row ends;
    it becomes an int64 tensor with ``group_list_type=0``.
    """
    if group_list is not None and not isinstance(group_list, torch.Tensor):
        group_list = torch.tensor(list(group_list), dtype=torch.int64, device=_as_list(x)[0].device)
        group_list_type = 0
    return torch.ops.qdev.npu_grouped_matmul(
        _as_list(x), _as_list(weight), bias=_as_list(bias), scale=_as_list(scale), offset=_as_list(offset),
        antiquant_scale=_as_list(antiquant_scale), antiquant_offset=_as_list(antiquant_offset),
        per_token_scale=_as_list(per_token_scale), group_list=group_list,
        activation_input=_as_list(activation_input), activation_quant_scale=_as_list(activation_quant_scale),
        activation_quant_offset=_as_list(activation_quant_offset), split_item=split_item,
        group_type=group_type, group_list_type=group_list_type, act_type=act_type,
        tuning_config=None if tuning_config is None else list(tuning_config),
        output_dtype=_dtype_int(output_dtype))


@torch.library.register_fake("qdev::npu_grouped_matmul")
def _grouped_matmul_fake(x, weight, *, bias=None, scale=None, offset=None, antiquant_scale=None,
                         antiquant_offset=None, per_token_scale=None, group_list=None, activation_input=None,
                         activation_quant_scale=None, activation_quant_offset=None, split_item=0, group_type=-1,
                         group_list_type=0, act_type=0, tuning_config=None, output_dtype=None):
    torch._check(group_type is not None, lambda: "Requires manual passing group_type, current is None.")
    torch._check(len(x) > 0 and len(weight) > 0, lambda: "Invalid inputs: neither x nor weight could be empty.")
    split_item = 0 if split_item is None else split_item
    torch._check(split_item in (0, 1, 2, 3),
                 lambda: f"Invalid value of split_item [{split_item}], which should only be one of 0/1/2/3.")
    w0 = weight[0]
    n = w0.size(-1) * (8 if w0.dtype == torch.int32 else 1)
    out_dtype = x[0].dtype if output_dtype is None else _DTYPE_OF.get(output_dtype, x[0].dtype)
    if split_item >= 2:
        rows = sum(t.numel() // t.size(-1) for t in x) if len(x) > 1 else x[0].size(0)
        return [x[0].new_empty((rows, n), dtype=out_dtype)]
    if group_list is None:
        return [t.new_empty((*t.shape[:-1], n), dtype=out_dtype) for t in x]
    ctx = torch.library.get_ctx()
    groups = w0.size(0) if (len(weight) == 1 and w0.dim() == 3) else len(weight)
    return [x[0].new_empty((ctx.new_dynamic_size(), n), dtype=out_dtype) for _ in range(groups)]


# --- routing -----------------------------------------------------------------------------

def npu_moe_init_routing_v2(x: torch.Tensor, expert_idx: torch.Tensor, *, scale: Optional[torch.Tensor] = None,
                            offset: Optional[torch.Tensor] = None, active_num: int = -1, expert_capacity: int = -1,
                            expert_num: int = -1, drop_pad_mode: int = 0, expert_tokens_num_type: int = 0,
                            expert_tokens_num_flag: bool = False, quant_mode: int = 0,
                            active_expert_range: Sequence[int] = (), row_idx_type: int = 0):
    """torch_npu.npu_moe_init_routing_v2 (dropless): (expanded_x, expanded_row_idx, expert_token_cumsum_or_count,
    expanded_scale). Tokens sorted stably by expert; row_idx_type 0: expanded_row_idx[row * K + k] = position in
    expanded_x (-1 when dropped); quant_mode -1: no quantization, 1: dynamic per-row int8 (scale = smooth rows)."""
    return torch.ops.qdev.npu_moe_init_routing_v2(
        x, expert_idx, scale=scale, offset=offset, active_num=active_num, expert_capacity=expert_capacity,
        expert_num=expert_num, drop_pad_mode=drop_pad_mode, expert_tokens_num_type=expert_tokens_num_type,
        expert_tokens_num_flag=expert_tokens_num_flag, quant_mode=quant_mode,
        active_expert_range=list(active_expert_range), row_idx_type=row_idx_type)


def npu_moe_finalize_routing(expanded_permuted_rows: torch.Tensor, skip1: Optional[torch.Tensor],
                             skip2: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                             scales: Optional[torch.Tensor], expanded_src_to_dst_row: torch.Tensor,
                             export_for_source_row: Optional[torch.Tensor], drop_pad_mode: int = 0) -> torch.Tensor:
    """torch_npu.npu_moe_finalize_routing: out[r] = skip1[r] + skip2[r] + sum_k scales[r, k] *
    (expanded[dst(r, k)] + bias[expert(r, k)]); dst indexed k * NUM_ROWS + r (drop_pad_mode 0) or r * K + k (2)."""
    return torch.ops.qdev.npu_moe_finalize_routing(expanded_permuted_rows, skip1, skip2, bias, scales,
                                                   expanded_src_to_dst_row, export_for_source_row, drop_pad_mode)


def npu_moe_token_unpermute(permuted_tokens: torch.Tensor, sorted_indices: torch.Tensor,
                            probs: Optional[torch.Tensor] = None, padded_mode: bool = False,
                            restore_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """torch_npu.npu_moe_token_unpermute: out[r] = sum_k probs[r, k] * permuted_tokens[sorted_indices[r * K + k]]."""
    return torch.ops.qdev.npu_moe_token_unpermute(permuted_tokens, sorted_indices, probs, padded_mode,
                                                  None if restore_shape is None else list(restore_shape))


# --- activation / norm + quantization ------------------------------------------------------

def npu_dequant_swiglu_quant(x: torch.Tensor, *, weight_scale: Optional[torch.Tensor] = None,
                             activation_scale: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                             quant_scale: Optional[torch.Tensor] = None, quant_offset: Optional[torch.Tensor] = None,
                             group_index: Optional[torch.Tensor] = None, activate_left: bool = False,
                             quant_mode: int = 0):
    """torch_npu.npu_dequant_swiglu_quant: int32 (T, 2H) -> x * weight_scale[group] * activation_scale[t]
    (+ bias) -> SwiGLU -> int8 (T, H) with per-token scale (quant_mode 1) or static quant_scale (0)."""
    return torch.ops.qdev.npu_dequant_swiglu_quant(
        x, weight_scale=weight_scale, activation_scale=activation_scale, bias=bias, quant_scale=quant_scale,
        quant_offset=quant_offset, group_index=group_index, activate_left=activate_left, quant_mode=quant_mode)


def npu_swiglu(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch_npu.npu_swiglu: silu(a) * b with a, b the halves of x along dim."""
    return torch.ops.qdev.npu_swiglu(x, dim)


def npu_add_rms_norm_quant(x1: torch.Tensor, x2: torch.Tensor, gamma: torch.Tensor, scales1: torch.Tensor,
                           zero_points1: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
                           scales2: Optional[torch.Tensor] = None, zero_points2: Optional[torch.Tensor] = None, *,
                           axis: int = -1, epsilon: float = 1e-6, div_mode: bool = True):
    """torch_npu.npu_add_rms_norm_quant: x = x1 + x2, y = RMSNorm(x) * gamma (+ beta), y1 = round(y / scales1 +
    zero_points1) (y * scales1 without div_mode), likewise y2; returns (y1, y2, x)."""
    return torch.ops.qdev.npu_add_rms_norm_quant(x1, x2, gamma, scales1, zero_points1, beta, scales2, zero_points2,
                                                 axis, epsilon, div_mode)


def npu_add_rms_norm_dynamic_quant(x1: torch.Tensor, x2: torch.Tensor, gamma: torch.Tensor, *,
                                   smooth_scale1: Optional[torch.Tensor] = None,
                                   smooth_scale2: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
                                   epsilon: float = 1e-6, output_mask: Optional[Sequence[bool]] = None):
    """torch_npu.npu_add_rms_norm_dynamic_quant: x = x1 + x2, y = RMSNorm(x) * gamma (+ beta), per-row dynamic
    int8 of y * smooth_scale1 (and * smooth_scale2); returns (y1, y2, x, scale1, scale2)."""
    return torch.ops.qdev.npu_add_rms_norm_dynamic_quant(
        x1, x2, gamma, smooth_scale1=smooth_scale1, smooth_scale2=smooth_scale2, beta=beta, epsilon=epsilon,
        output_mask=None if output_mask is None else list(output_mask))


__all__ += ["npu_moe_init_routing_v2", "npu_moe_finalize_routing", "npu_moe_token_unpermute",
            "npu_dequant_swiglu_quant", "npu_swiglu", "npu_add_rms_norm_quant", "npu_add_rms_norm_dynamic_quant"]


@torch.library.register_fake("qdev::npu_moe_init_routing_v2")
def _init_routing_v2_fake(x, expert_idx, *, scale=None, offset=None, active_num=-1, expert_capacity=-1,
                          expert_num=-1, drop_pad_mode=0, expert_tokens_num_type=0, expert_tokens_num_flag=False,
                          quant_mode=0, active_expert_range=(), row_idx_type=0):
    torch._check(x.dim() == 2, lambda: "npu_moe_init_routing_v2: x must be 2-D")
    torch._check(quant_mode in (-1, 1), lambda: "npu_moe_init_routing_v2: quant_mode must be -1 or 1")
    total = x.size(0) * expert_idx.size(1)
    ne = (active_expert_range[1] - active_expert_range[0]) if len(active_expert_range) == 2 else expert_num
    return (x.new_empty((total, x.size(1)), dtype=torch.int8 if quant_mode == 1 else x.dtype),
            x.new_empty((total,), dtype=torch.int32), x.new_empty((ne,), dtype=torch.int64),
            x.new_empty((total,), dtype=torch.float32))


@torch.library.register_fake("qdev::npu_moe_finalize_routing")
def _finalize_routing_fake(expanded_permuted_rows, skip1, skip2, bias, scales, expanded_src_to_dst_row,
                           export_for_source_row, drop_pad_mode=0):
    topk = scales.size(1) if scales is not None else (
        export_for_source_row.size(-1) if export_for_source_row is not None else 1)
    rows = expanded_src_to_dst_row.numel() // topk
    return expanded_permuted_rows.new_empty((rows, expanded_permuted_rows.size(1)))


@torch.library.register_fake("qdev::npu_moe_token_unpermute")
def _token_unpermute_fake(permuted_tokens, sorted_indices, probs=None, padded_mode=False, restore_shape=None):
    topk = probs.size(-1) if probs is not None else 1
    return permuted_tokens.new_empty((sorted_indices.numel() // topk, permuted_tokens.size(1)))


@torch.library.register_fake("qdev::npu_dequant_swiglu_quant")
def _dequant_swiglu_quant_fake(x, *, weight_scale=None, activation_scale=None, bias=None, quant_scale=None,
                               quant_offset=None, group_index=None, activate_left=False, quant_mode=0):
    torch._check(x.dim() == 2, lambda: "npu_dequant_swiglu_quant: x must be 2-D (TokensNum, 2H)")
    return (x.new_empty((x.size(0), x.size(1) // 2), dtype=torch.int8),
            x.new_empty((x.size(0),), dtype=torch.float32))


@torch.library.register_fake("qdev::npu_swiglu")
def _swiglu_fake(x, dim=-1):
    shape = list(x.shape)
    shape[dim] = shape[dim] // 2
    return x.new_empty(shape)


@torch.library.register_fake("qdev::npu_add_rms_norm_quant")
def _add_rms_norm_quant_fake(x1, x2, gamma, scales1, zero_points1=None, beta=None, scales2=None, zero_points2=None,
                             axis=-1, epsilon=1e-6, div_mode=True):
    y2_shape = x1.shape if scales2 is not None else (1,)
    return x1.new_empty(x1.shape, dtype=torch.int8), x1.new_empty(y2_shape, dtype=torch.int8), x1.new_empty(x1.shape)


@torch.library.register_fake("qdev::npu_add_rms_norm_dynamic_quant")
def _add_rms_norm_dynamic_quant_fake(x1, x2, gamma, *, smooth_scale1=None, smooth_scale2=None, beta=None,
                                     epsilon=1e-6, output_mask=None):
    want2 = smooth_scale2 is not None if not output_mask else bool(output_mask[1])
    lead = x1.shape[:x1.dim() - gamma.dim()]
    return (x1.new_empty(x1.shape, dtype=torch.int8), x1.new_empty(x1.shape if want2 else (1,), dtype=torch.int8),
            x1.new_empty(x1.shape), x1.new_empty(lead, dtype=torch.float32),
            x1.new_empty(lead if want2 else (1,), dtype=torch.float32))


# --- static quantization -------------------------------------------------------------------

def npu_quantize(input: torch.Tensor, scales: torch.Tensor, zero_points: Optional[torch.Tensor], dtype: torch.dtype,
                 axis: int = 1, div_mode: bool = True) -> torch.Tensor:
    """torch_npu.npu_quantize: round(input / scales + zero_points) (div_mode) or round(input * scales +
    zero_points), half to even, saturated to dtype: torch.qint8 -> int8, torch.quint8 -> uint8, torch.int32,
    torch.int8, or torch.quint4x2 -> int32 words of 8 int4 (last dim / 8). Scales broadcast along ``axis``."""
    return torch.ops.qdev.npu_quantize(input, scales, zero_points, dtype, axis, div_mode)


def npu_anti_quant(x: torch.Tensor, scale: torch.Tensor, *, offset: Optional[torch.Tensor] = None,
                   dst_dtype: DType = None, src_dtype: DType = None) -> torch.Tensor:
    """torch_npu.npu_anti_quant: ((x + offset) * scale) in dst_dtype (float16 by default); int32 x holds 8 int4
    per word (the result's last dim is 8x)."""
    return torch.ops.qdev.npu_anti_quant(x, scale, offset=offset, dst_dtype=_dtype_int(dst_dtype),
                                         src_dtype=_dtype_int(src_dtype))


__all__ += ["npu_quantize", "npu_anti_quant"]


@torch.library.register_fake("qdev::npu_quantize")
def _quantize_fake(input, scales, zero_points, dtype, axis=1, div_mode=True):
    if dtype == torch.quint4x2:
        torch._check(input.size(-1) % 8 == 0, lambda: "npu_quantize: the last dim must be divisible by 8")
        return input.new_empty((*input.shape[:-1], input.size(-1) // 8), dtype=torch.int32)
    out = {torch.qint8: torch.int8, torch.int8: torch.int8, torch.quint8: torch.uint8, torch.int32: torch.int32}
    return input.new_empty(input.shape, dtype=out.get(dtype, torch.int8))


@torch.library.register_fake("qdev::npu_anti_quant")
def _anti_quant_fake(x, scale, *, offset=None, dst_dtype=None, src_dtype=None):
    shape = (*x.shape[:-1], x.size(-1) * 8) if x.dtype == torch.int32 else x.shape
    return x.new_empty(shape, dtype=_DTYPE_OF.get(dst_dtype, torch.float16) if dst_dtype is not None else torch.float16)


def npu_swiglu_quant(x: torch.Tensor, *, smooth_scales: Optional[torch.Tensor] = None,
                     offsets: Optional[torch.Tensor] = None, group_index: Optional[torch.Tensor] = None,
                     activate_left: bool = False, quant_mode: int = 0, group_list_type: int = 0,
                     dst_type: DType = None):
    """torch_npu.npu_swiglu_quant: SwiGLU of x (..., 2N), times the smooth scales of each row's group
    (group_index: cumsum (0) or counts (1)), per-token dynamic int8 (quant_mode 1); returns (y, scale)."""
    return torch.ops.qdev.npu_swiglu_quant(x, smooth_scales=smooth_scales, offsets=offsets, group_index=group_index,
                                           activate_left=activate_left, quant_mode=quant_mode,
                                           group_list_type=group_list_type, dst_type=_dtype_int(dst_type))


__all__ += ["npu_swiglu_quant"]


@torch.library.register_fake("qdev::npu_swiglu_quant")
def _swiglu_quant_fake(x, *, smooth_scales=None, offsets=None, group_index=None, activate_left=False, quant_mode=0,
                       group_list_type=0, dst_type=None):
    torch._check(x.dim() > 1, lambda: "npu_swiglu_quant: x must have more than one dim")
    return (x.new_empty((*x.shape[:-1], x.size(-1) // 2), dtype=torch.int8),
            x.new_empty(x.shape[:-1], dtype=torch.float32))
