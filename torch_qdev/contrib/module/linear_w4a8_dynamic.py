"""LinearW4A8Dynamic: int4 weights (per group or per channel), int8 dynamic activations."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ... import ops


def quantize_int4_symmetric(weight: torch.Tensor, group_size: int):
    """weight (N, K) float -> (uint8 (N, K/2) with nibble = q + 8, even k low; scales (N, K/group)).

    Symmetric 4-bit with scale = absmax / 7 per group and round-half-up, as PyTorch's
    ``_group_quantize_tensor_symmetric`` (the helper its own tests use).
    """
    n, k = weight.shape
    w = weight.detach().to(torch.float32).reshape(-1, group_size)
    scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).eps) / 7
    q = (w / scale[:, None] + 8.5).to(torch.int8).clamp(max=15).reshape(n, k)
    packed = (q[:, 1::2].to(torch.uint8) << 4) | q[:, ::2].to(torch.uint8)
    return packed, scale.reshape(n, k // group_size)


class LinearW4A8Dynamic(nn.Module):
    r"""A linear layer with symmetric int4 weights and per-token int8 dynamic activations.

    ``forward`` runs ``torch.ops.qdev.dyn_quant_matmul_4bit`` (the numerics of
    ``aten._dyn_quant_matmul_4bit``) on CPU or qdev tensors. The weight is packed once
    (:meth:`from_float`) into the self-describing ``packed_weight`` buffer, which is what
    ``state_dict`` saves; float32 and bfloat16 inputs keep their dtype, float16 runs in float32.

    Args:
        in_features, out_features: as ``nn.Linear``.
        bias: whether the packed weight carries a bias.
        group_size: k-group of the weight scales (a multiple of 32 dividing in_features),
            or None for one scale per output channel.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: Optional[int] = 32,
                 device=None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = in_features if group_size is None else group_size
        self.has_bias = bias
        size = ops.w4_packed_bytes(in_features, out_features, self.group_size, bias,
                                   scales_bf16=self.group_size != in_features)
        self.register_buffer("packed_weight", torch.zeros(size, dtype=torch.uint8, device=device))

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: Optional[int] = 32) -> "LinearW4A8Dynamic":
        k = linear.in_features
        gs = k if group_size is None else group_size
        mod = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, group_size=group_size,
                  device=linear.weight.device)
        w_u8, scales = quantize_int4_symmetric(linear.weight, gs)
        scales = scales.float() if gs == k else scales.bfloat16()  # PyTorch's convention
        bias = linear.bias.detach().float() if linear.bias is not None else None
        mod.packed_weight = ops.dyn_quant_pack_4bit_weight(w_u8, scales, bias, gs, k, linear.out_features)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LinearW4A8Dynamic: expected a Tensor input, but got {type(x).__name__}")
        dtype = x.dtype
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            # An integer or bool input would be computed in float and truncated back to its dtype.
            raise TypeError(f"LinearW4A8Dynamic: expected a float32, bfloat16 or float16 input, but got {dtype}")
        if dtype not in (torch.float32, torch.bfloat16):
            x = x.float()
        y = ops.dyn_quant_matmul_4bit(x, self.packed_weight, self.group_size, self.in_features, self.out_features)
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        group = "channelwise" if self.group_size == self.in_features else f"group_size={self.group_size}"
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, {group}"
