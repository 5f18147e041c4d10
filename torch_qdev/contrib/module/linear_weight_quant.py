"""LinearWeightQuant: weight-only quantized linear layer (A16W8 / A16W4), torch_npu's API."""
from __future__ import annotations

import torch
from torch import nn

from ... import ops


class LinearWeightQuant(nn.Module):
    r"""``npu_weight_quant_batchmatmul(x, weight.T, antiquant_scale, ...)``.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        antiquant_offset, quant_scale, quant_offset: create those (out_features,) parameters.
        antiquant_group_size: k-group of the antiquant scale/offset (0: per channel / tensor).
        inner_precise: 0 high precision, 1 high performance (no semantic change).
        weight_dtype: Ascend 950 weight types (not supported on qdev).

    Parameters are created uninitialised with ``requires_grad=False``, as in torch_npu: assign
    ``weight`` (int8 ``(n, k)`` or int32-packed int4 ``(n, k // 8)``), ``antiquant_scale`` and the
    optional ones. 2-D antiquant scale/offset ``(n, k // group)`` are transposed for the op.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 antiquant_offset: bool = False, quant_scale: bool = False, quant_offset: bool = False,
                 antiquant_group_size: int = 0, inner_precise: int = 0, weight_dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features

        def param(*shape):
            return nn.Parameter(torch.empty(*shape, device=device), False)

        self.weight = param(out_features, in_features)
        self.antiquant_scale = param(out_features)
        self.antiquant_offset = param(out_features) if antiquant_offset else None
        self.quant_scale = param(out_features) if quant_scale else None
        self.quant_offset = param(out_features) if quant_offset else None
        self.bias = param(out_features) if bias else None
        self.antiquant_group_size = antiquant_group_size
        self.inner_precise = inner_precise
        self.weight_dtype = weight_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.antiquant_scale
        offset = self.antiquant_offset
        if scale.dim() == 2:
            scale = scale.transpose(-1, -2)
        if offset is not None and offset.dim() == 2:
            offset = offset.transpose(-1, -2)
        return ops.npu_weight_quant_batchmatmul(x, self.weight.transpose(-1, -2), scale, offset, self.quant_scale,
                                                self.quant_offset, self.bias, self.antiquant_group_size,
                                                self.inner_precise, weight_dtype=self.weight_dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"antiquant_group_size={self.antiquant_group_size}")
