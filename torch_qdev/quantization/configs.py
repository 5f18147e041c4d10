"""Quantization configs: what a Linear becomes under ``quantize_``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass(frozen=True)
class QuantConfig:
    """Base class: ``convert`` turns one ``nn.Linear`` into its quantized replacement."""

    name = "base"

    def check(self, linear: nn.Linear) -> Optional[str]:
        """Why this layer cannot be quantized with this config, or None."""
        return None

    def convert(self, linear: nn.Linear) -> nn.Module:
        """The quantized layer, on ``linear``'s device."""
        raise NotImplementedError(f"{type(self).__name__} does not define convert()")


@dataclass(frozen=True)
class A8W8DynamicConfig(QuantConfig):
    """Per-token dynamic int8 activations x symmetric per-channel int8 weights."""

    name = "A8W8-dynamic"

    def convert(self, linear):
        from ..contrib.module import LinearA8W8Dynamic

        return LinearA8W8Dynamic.from_float(linear)


@dataclass(frozen=True)
class W4A8DynamicConfig(QuantConfig):
    """Per-row dynamic int8 activations x symmetric int4 weights (``aten._dyn_quant_matmul_4bit``
    numerics); ``group_size`` a multiple of 32 dividing in_features, or None for per channel."""

    group_size: Optional[int] = 32

    @property
    def name(self) -> str:
        return f"W4A8-dynamic g{self.group_size}" if self.group_size else "W4A8-dynamic channelwise"

    def check(self, linear):
        g = self.group_size
        if g is not None and (g <= 0 or g % 32 or linear.in_features % g):
            return f"in_features={linear.in_features} is not a multiple of group_size={g}"
        if linear.in_features % 2:
            return f"in_features={linear.in_features} is odd"
        return None

    def convert(self, linear):
        from ..contrib.module import LinearW4A8Dynamic

        return LinearW4A8Dynamic.from_float(linear, group_size=self.group_size)


@dataclass(frozen=True)
class _WeightOnlyConfig(QuantConfig):
    """Weight-only ``bits``-bit weights (per channel with ``group_size=0``, else per k-group, a
    multiple of 32) with 16-bit activations: the model must run in ``dtype``."""

    bits = 8
    group_size: int = 0
    dtype: torch.dtype = torch.bfloat16

    @property
    def name(self) -> str:
        return f"A16W{self.bits}" + (f" g{self.group_size}" if self.group_size else "")

    def check(self, linear):
        g, k = self.group_size, linear.in_features
        if g and (g < 0 or g % 32 or k % g or g >= k):
            return f"in_features={k} does not take group_size={g} (a multiple of 32 dividing it, below it)"
        if self.bits == 4 and k % 8:
            return f"in_features={k} is not a multiple of 8"
        return None

    def convert(self, linear):
        from ..contrib.module import LinearWeightQuant

        return LinearWeightQuant.from_float(linear, bits=self.bits, group_size=self.group_size, dtype=self.dtype)


@dataclass(frozen=True)
class A16W8Config(_WeightOnlyConfig):
    """Weight-only int8 (per channel, or per ``group_size``) with bfloat16/float16 activations:
    the model must run in ``dtype`` (e.g. ``model.to(torch.bfloat16)``)."""

    bits = 8


@dataclass(frozen=True)
class A16W4Config(_WeightOnlyConfig):
    """Weight-only int4 (int32-packed, per ``group_size`` k-group or per channel with 0) with
    bfloat16/float16 activations: the model must run in ``dtype``."""

    bits = 4
    group_size: int = 128
