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


def _round_w4a8_params(channelwise: bool):
    """The stored (scale, zero) of the asymmetric form, returned as (scale, minimum) for the level choice."""
    def round_params(scale, minimum):
        dt = torch.float32 if channelwise else torch.bfloat16
        s = scale.to(dt).float()
        z = (minimum + 8 * s).to(dt).float()
        return s, z - 8 * s
    return round_params


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
        asymmetric: the weights carry a zero term per group (torch_qdev's extension,
            ``dyn_quant_pack_4bit_weight_asym``), else PyTorch's symmetric format.
        input_scale: keep an (in_features,) buffer multiplying the input first (activation-aware
            scaling folded out of the weight, see ``quantize_(..., calibration=...)``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: Optional[int] = 32,
                 device=None, asymmetric: bool = False, input_scale: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = in_features if group_size is None else group_size
        self.has_bias = bias
        self.asymmetric = asymmetric
        size = ops.w4_packed_bytes(in_features, out_features, self.group_size, bias,
                                   scales_bf16=self.group_size != in_features, has_zeros=asymmetric)
        self.register_buffer("packed_weight", torch.zeros(size, dtype=torch.uint8, device=device))
        self.register_buffer("input_scale", torch.ones(in_features, device=device) if input_scale else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, group_size: Optional[int] = 32, *, asymmetric: bool = False,
                   search: bool = False, importance: Optional[torch.Tensor] = None,
                   input_scale: Optional[torch.Tensor] = None) -> "LinearW4A8Dynamic":
        """Quantizes ``linear``. Defaults: PyTorch's symmetric absmax round-to-nearest. With
        ``asymmetric`` a scale and zero per group (w ~ s * (u - 8) + z), fitted by the
        error-minimising search when ``search`` (``quantization.int4_search``), weighted by
        ``importance`` (in_features,) (e.g. the calibration inputs' mean square) when given.
        ``input_scale`` (in_features,): the layer computes ``(x * input_scale) @ (W / input_scale)^T``.
        """
        from ...quantization.int4_search import quantize_groups_asym

        k, n = linear.in_features, linear.out_features
        gs = k if group_size is None else group_size
        mod = cls(k, n, bias=linear.bias is not None, group_size=group_size, device=linear.weight.device,
                  asymmetric=asymmetric, input_scale=input_scale is not None)
        weight = linear.weight.detach().float()
        if input_scale is not None:
            weight = weight / input_scale.float()[None, :]
            mod.input_scale.copy_(input_scale)
        bias = linear.bias.detach().float() if linear.bias is not None else None
        if not asymmetric:
            w_u8, scales = quantize_int4_symmetric(weight, gs)
            scales = scales.float() if gs == k else scales.bfloat16()  # PyTorch's convention
            mod.packed_weight = ops.dyn_quant_pack_4bit_weight(w_u8, scales, bias, gs, k, n)
            return mod
        u, scale, minimum = quantize_groups_asym(weight, gs, importance=importance, search=search,
                                                 round_params=_round_w4a8_params(gs == k))
        u = u.to(torch.uint8)
        w_u8 = (u[:, 1::2] << 4) | u[:, ::2]
        dt = torch.float32 if gs == k else torch.bfloat16
        zeros = (minimum + 8 * scale).to(dt)
        mod.packed_weight = ops.dyn_quant_pack_4bit_weight_asym(w_u8.contiguous(), scale.to(dt), zeros, bias, gs, k, n)
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
        if self.input_scale is not None:
            x = x * self.input_scale.to(x.dtype)
        y = ops.dyn_quant_matmul_4bit(x, self.packed_weight, self.group_size, self.in_features, self.out_features)
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        group = "channelwise" if self.group_size == self.in_features else f"group_size={self.group_size}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, {group}"
                + (", asymmetric" if self.asymmetric else ""))
