"""The Triton functions as ops: ``qdev_triton::*`` triton_ops (Inductor traces through their
kernels) and the CUDA kernels of the ``qdev::*`` ops, which call them.

``register_cuda_kernels()`` runs when torch_qdev is imported with a CUDA build of torch and
the triton package present. The qdev:: kernels are also registered for AutogradCUDA, so that a
traced graph (torch.compile) holds the triton_op in place of ``qdev::*`` on CUDA tensors and
Inductor sees the kernels. (An Inductor decomposition cannot do this: Inductor refuses an op that
has both a fallback and a decomposition.)"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import dynamic_quant, quant_matmul, w4a8, weight_quant

_done = set()


@torch.library.triton_op("qdev_triton::npu_quant_matmul", mutates_args=())
def _tq_quant_matmul(x1: Tensor, x2: Tensor, scale: Tensor, offset: Optional[Tensor] = None,
                     pertoken_scale: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                     output_dtype: Optional[int] = None, x1_dtype: Optional[int] = None,
                     x2_dtype: Optional[int] = None, pertoken_scale_dtype: Optional[int] = None,
                     scale_dtype: Optional[int] = None, group_sizes: Optional[List[int]] = None,
                     y_scale: Optional[Tensor] = None) -> Tensor:
    return quant_matmul.npu_quant_matmul(x1, x2, scale, offset=offset, pertoken_scale=pertoken_scale, bias=bias,
                                         output_dtype=output_dtype, x1_dtype=x1_dtype, x2_dtype=x2_dtype,
                                         pertoken_scale_dtype=pertoken_scale_dtype, scale_dtype=scale_dtype,
                                         group_sizes=group_sizes, y_scale=y_scale)


@torch.library.triton_op("qdev_triton::npu_dynamic_quant", mutates_args=())
def _tq_dynamic_quant(input: Tensor, smooth_scales: Optional[Tensor] = None, group_index: Optional[Tensor] = None,
                      dst_type: Optional[int] = None, quant_mode: str = "pertoken",
                      dst_type_max: float = 0.0) -> Tuple[Tensor, Tensor]:
    return dynamic_quant.npu_dynamic_quant(input, smooth_scales=smooth_scales, group_index=group_index,
                                           dst_type=dst_type, quant_mode=quant_mode, dst_type_max=dst_type_max)


@torch.library.triton_op("qdev_triton::npu_dynamic_quant_asymmetric", mutates_args=())
def _tq_dynamic_quant_asym(input: Tensor, smooth_scales: Optional[Tensor] = None,
                           group_index: Optional[Tensor] = None, dst_type: Optional[int] = None,
                           quant_mode: str = "pertoken", dst_type_max: float = 0.0) -> Tuple[Tensor, Tensor, Tensor]:
    return dynamic_quant.npu_dynamic_quant_asymmetric(input, smooth_scales=smooth_scales, group_index=group_index,
                                                      dst_type=dst_type, quant_mode=quant_mode,
                                                      dst_type_max=dst_type_max)


@torch.library.triton_op("qdev_triton::dyn_quant_matmul_4bit", mutates_args=())
def _tq_dyn_quant_matmul(inp: Tensor, packed_weights: Tensor, block_size: int, in_features: int,
                         out_features: int) -> Tensor:
    return w4a8.dyn_quant_matmul_4bit(inp, packed_weights, block_size, in_features, out_features)


@torch.library.triton_op("qdev_triton::npu_weight_quant_batchmatmul", mutates_args=())
def _tq_weight_quant_bmm(x: Tensor, weight: Tensor, antiquant_scale: Tensor, antiquant_offset: Optional[Tensor] = None,
                         quant_scale: Optional[Tensor] = None, quant_offset: Optional[Tensor] = None,
                         bias: Optional[Tensor] = None, antiquant_group_size: int = 0, inner_precise: int = 0,
                         weight_dtype: Optional[int] = None) -> Tensor:
    return weight_quant.npu_weight_quant_batchmatmul(x, weight, antiquant_scale, antiquant_offset, quant_scale,
                                                     quant_offset, bias, antiquant_group_size, inner_precise,
                                                     weight_dtype)


# The qdev:: ops' CUDA kernels (schemas: csrc/aten/QdevQuantRegistration.cpp).
def _cuda_quant_matmul(x1, x2, scale, *, offset=None, pertoken_scale=None, bias=None, output_dtype=None,
                       x1_dtype=None, x2_dtype=None, pertoken_scale_dtype=None, scale_dtype=None, group_sizes=None,
                       y_scale=None):
    return torch.ops.qdev_triton.npu_quant_matmul(x1, x2, scale, offset, pertoken_scale, bias, output_dtype,
                                                  x1_dtype, x2_dtype, pertoken_scale_dtype, scale_dtype,
                                                  group_sizes, y_scale)


def _cuda_dynamic_quant(input, *, smooth_scales=None, group_index=None, dst_type=None, quant_mode="pertoken",
                        dst_type_max=0.0):
    return torch.ops.qdev_triton.npu_dynamic_quant(input, smooth_scales, group_index, dst_type, quant_mode,
                                                   dst_type_max)


def _cuda_dynamic_quant_asym(input, *, smooth_scales=None, group_index=None, dst_type=None, quant_mode="pertoken",
                             dst_type_max=0.0):
    return torch.ops.qdev_triton.npu_dynamic_quant_asymmetric(input, smooth_scales, group_index, dst_type,
                                                              quant_mode, dst_type_max)


KERNELS = {
    "npu_quant_matmul": _cuda_quant_matmul,
    "npu_dynamic_quant": _cuda_dynamic_quant,
    "npu_dynamic_quant_asymmetric": _cuda_dynamic_quant_asym,
    "npu_trans_quant_param": quant_matmul.npu_trans_quant_param,
    "dyn_quant_pack_4bit_weight": w4a8.dyn_quant_pack_4bit_weight,
    "dyn_quant_matmul_4bit": lambda *a: torch.ops.qdev_triton.dyn_quant_matmul_4bit(*a),
    "npu_weight_quant_batchmatmul": lambda *a: torch.ops.qdev_triton.npu_weight_quant_batchmatmul(*a),
    "npu_convert_weight_to_int4pack": weight_quant.npu_convert_weight_to_int4pack,
}
_libs = []


# The ops whose kernels are triton_ops: registered for AutogradCUDA too, so that tracing
# (torch.compile's AOT autograd, export) records the qdev_triton:: triton_op, whose kernels
# Inductor then sees, instead of an opaque qdev:: call (the Autograd key runs before the tracer).
TRACED_THROUGH = ("npu_quant_matmul", "npu_dynamic_quant", "npu_dynamic_quant_asymmetric", "dyn_quant_matmul_4bit",
                  "npu_weight_quant_batchmatmul")


def register_cuda_kernels(dispatch_key: str = "CUDA") -> None:
    """Registers the Triton functions as the qdev:: ops' kernels for dispatch_key (once); for
    "CUDA" also as their AutogradCUDA kernels (see TRACED_THROUGH)."""
    if dispatch_key in _done:
        return
    lib = torch.library.Library("qdev", "IMPL")
    for name, fn in KERNELS.items():
        lib.impl(name, fn, dispatch_key)
    if dispatch_key == "CUDA":
        for name in TRACED_THROUGH:
            lib.impl(name, KERNELS[name], "AutogradCUDA")
    _libs.append(lib)
    _done.add(dispatch_key)
