"""LinearQuant: a linear layer on int8 (or int32-packed int4) operands, torch_npu's API."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ... import ops
from .linear_a8w8_dynamic import quantize_int8_symmetric


def _type_error(x: torch.Tensor, weight: torch.Tensor) -> ValueError:
    return ValueError("input and weight should be both torch.int32 or both torch.int8 datatype, "
                      f"but now input is {x.dtype}, weight is {weight.dtype}.")


class LinearQuant(nn.Module):
    r"""Quantized linear layer: ``npu_quant_matmul(x, weight.T, scale, ...)``.

    Args:
        in_features: size of each input sample (k).
        out_features: size of each output sample (n).
        bias: if True, an int32 ``bias`` of shape (n,) (its data may be replaced by a
            float32/bfloat16 tensor for bfloat16 output).
        offset: if True, a float32 ``offset`` of shape (n,) (int8 output only).
        pertoken_scale: if True, a float32 ``pertoken_scale`` parameter (set it to the
            per-row scales of the input before calling forward).
        device: where the parameters are created.
        output_dtype: int8 (None), float16, bfloat16 or int32.

    Parameters are created uninitialised with ``requires_grad=False``, as in torch_npu:
    assign ``weight`` (int8 ``(n, k)`` or int32 ``(n, k // 8)``), ``scale`` and the
    optional ones, or build the layer with :meth:`from_float`.

    Shape:
        input ``(*, k)`` int8 (or ``(*, k // 8)`` int32), output ``(*, n)``.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, offset: bool = False,
                 pertoken_scale: bool = False, device=None, dtype=None, output_dtype=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty((out_features, in_features), device=device), False)
        self.scale = nn.Parameter(torch.empty(out_features, device=device), False)
        self.offset = nn.Parameter(torch.empty(out_features, device=device), False) if offset else None
        self.pertoken_scale = (nn.Parameter(torch.empty(out_features, device=device), False)
                               if pertoken_scale else None)
        self.bias = (nn.Parameter(torch.empty(out_features, dtype=torch.int32, device=device), False)
                     if bias else None)
        self.output_dtype = output_dtype

    def _check_types(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: expected a Tensor input, but got {type(x).__name__}")
        if not ((x.dtype == torch.int32 and self.weight.dtype == torch.int32) or
                (x.dtype == torch.int8 and self.weight.dtype == torch.int8)):
            raise _type_error(x, self.weight)

    def _scale_for_op(self) -> torch.Tensor:
        if (self.pertoken_scale is None and self.scale.dtype == torch.float32
                and self.output_dtype not in (torch.bfloat16, torch.int32)):
            return ops.npu_trans_quant_param(self.scale, self.offset)
        return self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_types(x)
        return ops.npu_quant_matmul(x, self.weight.transpose(-2, -1), self._scale_for_op(),
                                    offset=self.offset, pertoken_scale=self.pertoken_scale, bias=self.bias,
                                    output_dtype=self.output_dtype)

    @classmethod
    def from_float(cls, linear: nn.Linear, *, input_scale: float = 1.0,
                   output_dtype: Optional[torch.dtype] = torch.bfloat16) -> "LinearQuant":
        """Quantizes an ``nn.Linear``: symmetric per-channel int8 weights from the data.

        The layer then expects int8 inputs quantized with the static per-tensor
        ``input_scale`` (see :meth:`quantize_input`), and returns
        ``linear(x)`` up to quantization error. bfloat16 outputs keep a float bias; other
        outputs get it as int32, in units of the output scale.
        """
        w_q, w_scale = quantize_int8_symmetric(linear.weight)
        has_bias = linear.bias is not None
        mod = cls(linear.in_features, linear.out_features, bias=has_bias, device=w_q.device,
                  output_dtype=output_dtype)
        mod.weight.data = w_q
        scale = (w_scale * input_scale).to(torch.float32)
        mod.scale.data = scale
        if has_bias:
            b = linear.bias.detach().to(torch.float32)
            mod.bias.data = b if output_dtype == torch.bfloat16 else torch.round(b / scale).to(torch.int32)
        mod.input_scale = float(input_scale)
        return mod

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``round(x / input_scale)`` saturated to int8 (for layers built by from_float)."""
        scale = getattr(self, "input_scale", 1.0)
        return torch.round(x / scale).clamp(-128, 127).to(torch.int8)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, offset={self.offset is not None}, "
                f"pertoken_scale={self.pertoken_scale is not None}, output_dtype={self.output_dtype}")
