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
        # torch_qdev extension (activation-aware scaling): x * input_scale before the matmul
        self.input_scale = None

    @classmethod
    def from_float(cls, linear: nn.Linear, *, bits: int = 8, group_size: int = 0,
                   dtype: torch.dtype = torch.bfloat16, device=None, asymmetric: bool = False,
                   search: bool = False, importance=None, input_scale=None) -> "LinearWeightQuant":
        """Weight-only quantization of an ``nn.Linear`` (not in torch_npu, which leaves
        quantization to its tools): int8 (``bits=8``, scale = absmax / 127) or int32-packed
        int4 (``bits=4``, scale = absmax / 7), per output channel (``group_size=0``) or per
        k-group; round half to even. ``dtype`` (float16 or bfloat16) is the activation dtype:
        scales and bias are stored in it, and ``forward`` expects inputs of it, as torch_npu does.

        ``asymmetric`` (int4): an antiquant offset per group too (w ~ (q + offset) * scale),
        scale and offset fitted by the error-minimising search when ``search``
        (``quantization.int4_search``), weighted by ``importance`` (in_features,) when given.
        ``input_scale`` (in_features,): the layer computes ``(x * input_scale) @ (W / input_scale)^T``.
        """
        if bits not in (4, 8):
            raise ValueError(f"bits should be 4 or 8, but it is {bits}")
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"dtype should be torch.float16 or torch.bfloat16, but it is {dtype}")
        n, k = linear.out_features, linear.in_features
        if group_size and (group_size < 0 or group_size % 32 or k % group_size):
            raise ValueError(f"group_size should be 0 or a multiple of 32 dividing in_features={k}, "
                             f"but it is {group_size}")
        if bits == 4 and k % 8:
            raise ValueError(f"int4 weights need in_features to be a multiple of 8, but it is {k}")
        device = linear.weight.device if device is None else torch.device(device)
        qmax = 127 if bits == 8 else 7
        group = group_size or k
        weight = linear.weight.detach().to(torch.float32)
        if input_scale is not None:
            weight = weight / input_scale.float()[None, :]
        if asymmetric and bits == 4:
            return cls._from_float_asym(linear, weight, group_size, dtype, device, search, importance, input_scale)
        w = weight.reshape(n, k // group, group)
        scale = w.abs().amax(dim=2).clamp_min(torch.finfo(torch.float32).tiny) / qmax  # (n, groups)
        # Scales round to the activation dtype first: the kernel dequantizes with that rounded value.
        scale = scale.to(dtype)
        q = torch.round(w / scale.float()[:, :, None]).clamp(-qmax - (bits == 4), qmax).reshape(n, k)
        if bits == 8:
            weight = q.to(torch.int8)
        else:
            weight = ops.npu_convert_weight_to_int4pack(q.to(torch.int32).contiguous())  # (n, k / 8)
        mod = cls(k, n, bias=linear.bias is not None, device="meta", antiquant_group_size=group_size)
        mod.weight = nn.Parameter(weight.to(device), False)
        mod.antiquant_scale = nn.Parameter((scale if group_size else scale.reshape(n)).to(device), False)
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().to(device=device, dtype=dtype), False)
        return mod

    @classmethod
    def _from_float_asym(cls, linear, weight, group_size, dtype, device, search, importance, input_scale):
        from ...quantization.int4_search import quantize_groups_asym

        n, k = weight.shape
        group = group_size or k

        def round_params(scale, minimum):
            # what the kernel stores: scale and offset in the activation dtype, w = (q + offset) * scale
            s = scale.to(dtype).float()
            off = (8 + minimum / s).to(dtype).float()
            return s, (off - 8) * s

        u, scale, minimum = quantize_groups_asym(weight, group, importance=importance, search=search,
                                                 round_params=round_params)
        offset = (8 + minimum / scale).to(dtype)
        q = (u - 8).to(torch.int32).contiguous()
        mod = cls(k, n, bias=linear.bias is not None, device="meta", antiquant_offset=True,
                  antiquant_group_size=group_size)
        mod.weight = nn.Parameter(ops.npu_convert_weight_to_int4pack(q).to(device), False)
        scale = scale.to(dtype)
        if not group_size:
            scale, offset = scale.reshape(n), offset.reshape(n)
        mod.antiquant_scale = nn.Parameter(scale.to(device), False)
        mod.antiquant_offset = nn.Parameter(offset.to(device), False)
        if linear.bias is not None:
            mod.bias = nn.Parameter(linear.bias.detach().to(device=device, dtype=dtype), False)
        if input_scale is not None:
            mod.input_scale = nn.Parameter(input_scale.detach().to(device=device, dtype=dtype), False)
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
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
