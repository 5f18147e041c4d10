"""PyTorch's own quantized CPU linears, as drop-in layers: the peers the demo and the
benchmarks compare torch_qdev with. Nothing here runs torch_qdev kernels."""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn


class TorchInt4WeightOnlyLinear(nn.Module):
    """``torch._weight_int4pack_mm_for_cpu`` (tinygemm's CPU kernel, the one torchao's
    int4 weight-only config uses): bfloat16 activations, symmetric int4 weights per k-group."""

    def __init__(self, linear: nn.Linear, group_size: int = 32) -> None:
        super().__init__()
        n, k = linear.out_features, linear.in_features
        self.in_features, self.out_features, self.group_size = k, n, group_size
        w = linear.weight.detach().float().reshape(n, k // group_size, group_size)
        scale = w.abs().amax(-1).clamp_min(1e-12) / 7
        q = torch.round(w / scale[..., None]).clamp(-8, 7).reshape(n, k).to(torch.int32)
        # tinygemm dequantizes (u4 - 8) * scale + zero; symmetric means zero = 0
        self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu((q + 8).contiguous(), 1))
        sz = torch.zeros(k // group_size, n, 2, dtype=torch.bfloat16)
        sz[:, :, 0] = scale.t().bfloat16()
        self.register_buffer("scales_and_zeros", sz)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().bfloat16())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        y = torch._weight_int4pack_mm_for_cpu(x.reshape(-1, self.in_features).bfloat16(), self.packed,
                                              self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(dtype)


class TorchDynQuant4bitLinear(nn.Module):
    """``torch._dyn_quant_matmul_4bit`` on CPU (KleidiAI on Arm; on x86 a scalar fallback):
    float32 activations quantized per row to int8, int4 weights per k-group."""

    def __init__(self, linear: nn.Linear, group_size: int = 32) -> None:
        super().__init__()
        from torch.testing._internal.common_quantization import _group_quantize_tensor_symmetric

        n, k = linear.out_features, linear.in_features
        self.in_features, self.out_features, self.group_size = k, n, group_size
        w_u8, scales = _group_quantize_tensor_symmetric(linear.weight.detach().float().t().contiguous(), 4,
                                                        group_size)
        scales = scales.float() if group_size == k else scales.bfloat16()
        bias = None if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("packed", torch._dyn_quant_pack_4bit_weight(w_u8, scales, bias, group_size, k, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        y = torch._dyn_quant_matmul_4bit(x.reshape(-1, self.in_features).float().contiguous(), self.packed,
                                         self.group_size, self.in_features, self.out_features)
        return y.reshape(*x.shape[:-1], self.out_features).to(dtype)


def swap_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replaces every ``nn.Linear`` of ``model`` in place by ``make(linear)``."""
    for fqn, mod in list(model.named_modules()):
        if type(mod) is nn.Linear:
            with torch.no_grad():
                model.set_submodule(fqn, make(mod))
    return model


def fbgemm_dynamic_int8(model: nn.Module) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` with fbgemm: per-tensor dynamic int8
    activations (float32 in and out), per-tensor int8 weights; in place."""
    torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
