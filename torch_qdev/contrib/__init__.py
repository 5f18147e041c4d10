"""torch_qdev.contrib: torch_npu.contrib's quantized layers and helpers."""
from __future__ import annotations

import torch

from . import module
from .module import LinearA8W8Quant, LinearQuant

__all__ = ["module", "LinearA8W8Quant", "LinearQuant", "use_internal_format_weight"]

_NZ = 29


def _weight_to_nz(param: torch.nn.Parameter) -> None:
    """Casts an (n, k) int8 weight so that ``weight.t()`` is a FRACTAL_NZ (k, n)
    tensor: exactly the operand the int8 GEMM reads, with no per-call packing.
    The parameter keeps its logical (n, k) shape and values."""
    from ..ops import get_npu_format, npu_format_cast

    if param.dtype != torch.int8 or param.dim() != 2:
        return
    if int(get_npu_format(param.data)) == _NZ:
        return
    param.data = npu_format_cast(param.data.t().contiguous(), _NZ).t()


def use_internal_format_weight(model: torch.nn.Module) -> torch.nn.Module:
    """torchair's ``use_internal_format_weight`` for qdev: prepares quantized layers' weights.

    * LinearA8W8Quant: the float32 scale (and offset) become the packed int64
      parameter (``npu_trans_quant_param``), as on Ascend; the weight is pre-packed.
    * LinearQuant: the weight is pre-packed (FRACTAL_NZ).
    Plain float ``nn.Linear`` weights stay ND: qdev's float matmuls read ND fastest.
    Weights must already be on qdev.
    """
    from ..ops import npu_trans_quant_param

    for mod in model.modules():
        if not isinstance(mod, (LinearQuant, LinearA8W8Quant)):
            continue
        if mod.weight.device.type != "qdev":
            raise RuntimeError("Cpu weight is not supported.The format cast to FRACTAL_NZ only supports "
                               "npu tensor.You should call model to npu, before calling this API.")
        if isinstance(mod, LinearA8W8Quant) and mod.scale.dtype == torch.float32:
            mod.scale.data = npu_trans_quant_param(mod.scale.data,
                                                   mod.offset.data if mod.offset is not None else None)
        _weight_to_nz(mod.weight)
    return model
