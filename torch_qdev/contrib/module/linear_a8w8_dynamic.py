"""LinearA8W8Dynamic: per-token dynamic int8 activations, per-channel int8 weights."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ... import ops


def quantize_int8_symmetric(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float (..., K) -> int8 (..., K) and float32 scale (...,): symmetric per row over the last dim,
    ``scale = absmax / 127``, round half to even, clamped to [-127, 127]."""
    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=-1).clamp_min(torch.finfo(torch.float32).tiny) / 127.0
    return torch.round(w / scale[..., None]).clamp(-127, 127).to(torch.int8), scale


class LinearA8W8Dynamic(nn.Module):
    r"""The torch_npu W8A8-dynamic recipe as one layer:
    ``xq, s = npu_dynamic_quant(x)`` then ``npu_quant_matmul(xq, weight.T, scale, pertoken_scale=s, bias=bias)``.

    Weights are symmetric int8 per output channel (``scale`` float32 ``(n,)``); activations are
    quantized per token at run time, so no calibration is needed. The output has the input's
    dtype: bfloat16 and float16 are computed directly, float32 inputs get a bfloat16 result
    widened to float32 (``npu_quant_matmul`` has no float32 output).

    On qdev the weight is stored pre-packed (FRACTAL_NZ, see
    :func:`torch_qdev.contrib.use_internal_format_weight`); it keeps its logical ``(n, k)``
    shape, so ``state_dict`` holds plain int8 values either way.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.zeros((out_features, in_features), dtype=torch.int8, device=device), False)
        self.scale = nn.Parameter(torch.ones(out_features, dtype=torch.float32, device=device), False)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.float32, device=device), False) if bias else None

    @classmethod
    def from_float(cls, linear: nn.Linear, device=None) -> "LinearA8W8Dynamic":
        """Symmetric per-channel int8 weights (``scale = absmax / 127``, round half to even)."""
        device = linear.weight.device if device is None else torch.device(device)
        w_q, scale = quantize_int8_symmetric(linear.weight)
        mod = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        mod.weight = nn.Parameter(w_q.to(device), False)
        mod.scale = nn.Parameter(scale.to(device), False)
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().to(device=device, dtype=torch.float32), False)
        mod.pack_weight()
        return mod

    def pack_weight(self) -> "LinearA8W8Dynamic":
        """On qdev, stores the weight as the GEMM's operand (FRACTAL_NZ) so forward never packs."""
        from .. import _weight_to_nz

        if self.weight.device.type == "qdev":
            _weight_to_nz(self.weight)
        return self

    def _apply(self, fn, recurse=True):
        # .to("qdev") / .cpu() copy the weight as plain ND; re-pack it where packing pays.
        out = super()._apply(fn, recurse)
        self.pack_weight()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LinearA8W8Dynamic: expected a Tensor input, but got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise RuntimeError(f"LinearA8W8Dynamic: expected input with last dimension {self.in_features}, "
                               f"but got input of shape {tuple(x.shape)}")
        dtype = x.dtype
        out_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        lead = x.shape[:-1]
        xq, pertoken = ops.npu_dynamic_quant(x.reshape(-1, self.in_features))
        bias: Optional[torch.Tensor] = self.bias
        y = ops.npu_quant_matmul(xq, self.weight.t(), self.scale, pertoken_scale=pertoken, bias=bias,
                                 output_dtype=out_dtype)
        y = y.reshape(*lead, self.out_features)
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
