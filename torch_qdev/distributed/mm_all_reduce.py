"""``npu_mm_all_reduce_base``: torch_npu's fused matmul + all-reduce for tensor-parallel row layers.

``output = all_reduce(x1 @ x2' + bias + x3)`` over the process group named ``hcom``
(``group.group_name``; torch_npu passes its HCCL communicator name), where ``x2'`` is

* ``x2`` itself (float16/bfloat16 x1 and x2),
* ``x2`` dequantized with ``antiquant_scale``/``antiquant_offset`` (weight-only int8 x2,
  per tensor, channel or ``antiquant_group_size`` group): ``npu_weight_quant_batchmatmul``,
* or, for int8 x1 and x2, ``dequant_scale * pertoken_scale * (x1 @ x2 + bias)``:
  ``npu_quant_matmul`` (bfloat16 output for a bfloat16 or float32 ``dequant_scale``,
  float16 for an int64 one).

As on the NPU, each rank's partial result is rounded to the output dtype before the sum,
so the result is close to, not bit-identical with, one device (the exact row recipe is
``torch_qdev.distributed.tensor_parallel.RowwiseQuantLinear``). Only ``reduce_op='sum'``
and ``comm_turn=0`` exist, as in torch_npu; the low-bit communication scales
(``comm_quant_scale_1/2``) are not supported.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

from .. import ops


def _group(hcom: str):
    from torch.distributed.distributed_c10d import _resolve_process_group

    try:
        return _resolve_process_group(hcom)
    except Exception as exc:  # the lookup raises a bare KeyError/ValueError
        raise RuntimeError(f"npu_mm_all_reduce_base: no process group named {hcom!r} "
                           f"(pass group.group_name of an initialized group)") from exc


def _check(x1: torch.Tensor, x2: torch.Tensor, reduce_op: str, comm_turn: int, comm_scales) -> None:
    if reduce_op != "sum":
        raise RuntimeError(f"npu_mm_all_reduce_base: reduce_op only supports 'sum', but got {reduce_op!r}")
    if comm_turn != 0:
        raise RuntimeError(f"npu_mm_all_reduce_base: comm_turn only supports 0, but got {comm_turn}")
    if any(s is not None for s in comm_scales):
        raise RuntimeError("npu_mm_all_reduce_base: comm_quant_scale_1/comm_quant_scale_2 (low-bit communication) "
                           "are not supported on qdev")
    if x1.dim() not in (2, 3):
        raise RuntimeError(f"npu_mm_all_reduce_base: x1 must be 2-D or 3-D, but got {x1.dim()}-D")
    if x2.dim() != 2:
        raise RuntimeError(f"npu_mm_all_reduce_base: x2 must be 2-D, but got {x2.dim()}-D")
    if x1.shape[-1] != x2.shape[0]:
        raise RuntimeError(f"npu_mm_all_reduce_base: x1's last dimension ({x1.shape[-1]}) must equal x2's first "
                           f"({x2.shape[0]})")
    if x1.numel() == 0 or x2.numel() == 0:
        raise RuntimeError("npu_mm_all_reduce_base: x1 and x2 must not be empty")


def _local(x1, x2, bias, antiquant_scale, antiquant_offset, x3, dequant_scale, pertoken_scale,
           antiquant_group_size) -> torch.Tensor:
    lead = x1.shape[:-1]
    a = x1.reshape(-1, x1.shape[-1])
    if x1.dtype == torch.int8 and x2.dtype == torch.int8:
        if dequant_scale is None:
            raise RuntimeError("npu_mm_all_reduce_base: int8 x1 and x2 need dequant_scale")
        out_dtype = torch.float16 if dequant_scale.dtype == torch.int64 else torch.bfloat16
        y = ops.npu_quant_matmul(a, x2, dequant_scale, pertoken_scale=pertoken_scale, bias=bias,
                                 output_dtype=out_dtype)
    elif x2.dtype == torch.int8:
        if antiquant_scale is None:
            raise RuntimeError("npu_mm_all_reduce_base: an int8 x2 with a float x1 needs antiquant_scale")
        y = ops.npu_weight_quant_batchmatmul(a, x2, antiquant_scale, antiquant_offset=antiquant_offset, bias=bias,
                                             antiquant_group_size=antiquant_group_size)
    else:
        if x1.dtype not in (torch.float16, torch.bfloat16) or x2.dtype != x1.dtype:
            raise RuntimeError(f"npu_mm_all_reduce_base: float x1 and x2 must both be float16 or bfloat16, but got "
                               f"{x1.dtype} and {x2.dtype}")
        y = a @ x2
        if bias is not None:
            y = y + bias
    y = y.reshape(*lead, x2.shape[1])
    if x3 is not None:
        y = y + x3
    return y


@torch.library.custom_op("qdev::npu_mm_all_reduce_base", mutates_args=())
def _npu_mm_all_reduce_base(x1: torch.Tensor, x2: torch.Tensor, hcom: str, reduce_op: str = "sum",
                            bias: Optional[torch.Tensor] = None, antiquant_scale: Optional[torch.Tensor] = None,
                            antiquant_offset: Optional[torch.Tensor] = None, x3: Optional[torch.Tensor] = None,
                            dequant_scale: Optional[torch.Tensor] = None,
                            pertoken_scale: Optional[torch.Tensor] = None,
                            comm_quant_scale_1: Optional[torch.Tensor] = None,
                            comm_quant_scale_2: Optional[torch.Tensor] = None, comm_turn: int = 0,
                            antiquant_group_size: int = 0) -> torch.Tensor:
    _check(x1, x2, reduce_op, comm_turn, (comm_quant_scale_1, comm_quant_scale_2))
    group = _group(hcom)
    y = _local(x1, x2, bias, antiquant_scale, antiquant_offset, x3, dequant_scale, pertoken_scale,
               antiquant_group_size).contiguous()
    dist.all_reduce(y, group=group)
    return y


@_npu_mm_all_reduce_base.register_fake
def _(x1, x2, hcom, reduce_op="sum", bias=None, antiquant_scale=None, antiquant_offset=None, x3=None,
      dequant_scale=None, pertoken_scale=None, comm_quant_scale_1=None, comm_quant_scale_2=None, comm_turn=0,
      antiquant_group_size=0):
    _check(x1, x2, reduce_op, comm_turn, (comm_quant_scale_1, comm_quant_scale_2))
    if x1.dtype == torch.int8 and x2.dtype == torch.int8:
        dtype = torch.float16 if dequant_scale is not None and dequant_scale.dtype == torch.int64 else torch.bfloat16
    else:
        dtype = x1.dtype
    return x1.new_empty((*x1.shape[:-1], x2.shape[1]), dtype=dtype)


def npu_mm_all_reduce_base(x1: torch.Tensor, x2: torch.Tensor, hcom: str, *, reduce_op: str = "sum",
                           bias: Optional[torch.Tensor] = None, antiquant_scale: Optional[torch.Tensor] = None,
                           antiquant_offset: Optional[torch.Tensor] = None, x3: Optional[torch.Tensor] = None,
                           dequant_scale: Optional[torch.Tensor] = None, pertoken_scale: Optional[torch.Tensor] = None,
                           comm_quant_scale_1: Optional[torch.Tensor] = None,
                           comm_quant_scale_2: Optional[torch.Tensor] = None, comm_turn: int = 0,
                           antiquant_group_size: int = 0) -> torch.Tensor:
    """torch_npu's ``npu_mm_all_reduce_base`` (see the module docstring); ``hcom`` is a group's name."""
    return torch.ops.qdev.npu_mm_all_reduce_base(
        x1, x2, hcom, reduce_op, bias, antiquant_scale, antiquant_offset, x3, dequant_scale, pertoken_scale,
        comm_quant_scale_1, comm_quant_scale_2, comm_turn, antiquant_group_size)
