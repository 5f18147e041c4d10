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

    def convert(self, linear: nn.Linear, importance: Optional[torch.Tensor] = None,
                input_scale: Optional[torch.Tensor] = None) -> nn.Module:
        """The quantized layer, on ``linear``'s device. ``importance`` (in_features,): the
        calibration inputs' mean square per channel; ``input_scale`` (in_features,): fold
        ``x * input_scale`` into the layer (both from ``quantize_(..., calibration=...)``;
        configs that cannot use them ignore them)."""
        raise NotImplementedError(f"{type(self).__name__} does not define convert()")

    def head_config(self) -> Optional["QuantConfig"]:
        """The config of the output head (``lm_head``), or None to keep it float."""
        return self

    # bits of the input embeddings (8: int8 per row, None: float); a field in the 4-bit configs
    embedding_bits = None
    # whether the layers can fold an activation-aware input scale (AWQ) from calibration
    supports_input_scale = False


@dataclass(frozen=True)
class A8W8DynamicConfig(QuantConfig):
    """Per-token dynamic int8 activations x symmetric per-channel int8 weights."""

    name = "A8W8-dynamic"

    def convert(self, linear, importance=None, input_scale=None):
        from ..contrib.module import LinearA8W8Dynamic

        return LinearA8W8Dynamic.from_float(linear)


def _check_bits(name: str, bits, allowed) -> None:
    if bits not in allowed:
        raise ValueError(f"{name} should be one of {allowed}, but it is {bits!r}")


@dataclass(frozen=True)
class W4A8DynamicConfig(QuantConfig):
    """Per-row dynamic int8 activations x int4 weights; ``group_size`` a multiple of 32 dividing
    in_features, or None for per channel.

    The defaults are the accurate recipe: ``asymmetric`` int4 (a scale and a zero per group,
    torch_qdev's extension of the aten format), scales and zeros from an error-minimising
    ``search`` per group (llama.cpp k-quant style, weighted by the calibration's activation
    statistics when ``quantize_`` gets ``calibration``), the output head at ``head_bits`` = 8
    (A8W8 dynamic; 4 quantizes it like the body, None keeps it float) and the input embeddings at
    ``embedding_bits`` = 8 (int8 per row; None keeps them float). ``awq``: with calibration data,
    also search an activation-aware input scale per layer. PyTorch's own recipe (symmetric absmax
    round-to-nearest everywhere, ``aten._dyn_quant_matmul_4bit`` numerics) is
    ``W4A8DynamicConfig.pytorch_recipe(group_size)``.
    """

    group_size: Optional[int] = 32
    asymmetric: bool = True
    search: bool = True
    head_bits: Optional[int] = 8
    embedding_bits: Optional[int] = 8
    awq: bool = True
    supports_input_scale = True

    def __post_init__(self):
        _check_bits("head_bits", self.head_bits, (4, 8, None))
        _check_bits("embedding_bits", self.embedding_bits, (8, None))

    @classmethod
    def pytorch_recipe(cls, group_size: Optional[int] = 32) -> "W4A8DynamicConfig":
        """Symmetric absmax int4 everywhere, the head included: PyTorch's numerics and format."""
        return cls(group_size=group_size, asymmetric=False, search=False, head_bits=4, embedding_bits=None,
                   awq=False)

    @property
    def name(self) -> str:
        base = f"W4A8-dynamic g{self.group_size}" if self.group_size else "W4A8-dynamic channelwise"
        return base if self.asymmetric else base + " sym"

    def head_config(self):
        if self.head_bits == 8:
            return A8W8DynamicConfig()
        return self if self.head_bits == 4 else None

    def check(self, linear):
        g = self.group_size
        if g is not None and (g <= 0 or g % 32 or linear.in_features % g):
            return f"in_features={linear.in_features} is not a multiple of group_size={g}"
        if linear.in_features % 2:
            return f"in_features={linear.in_features} is odd"
        return None

    def convert(self, linear, importance=None, input_scale=None):
        from ..contrib.module import LinearW4A8Dynamic

        return LinearW4A8Dynamic.from_float(linear, group_size=self.group_size, asymmetric=self.asymmetric,
                                            search=self.search, importance=importance, input_scale=input_scale)


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

    def convert(self, linear, importance=None, input_scale=None):
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
    bfloat16/float16 activations: the model must run in ``dtype``.

    The defaults are the accurate recipe, as ``W4A8DynamicConfig``'s: ``asymmetric`` (an antiquant
    offset per group), the error-minimising ``search``, the head at ``head_bits`` = 8 (A16W8; 4:
    like the body; None: float), embeddings at ``embedding_bits`` = 8, ``awq`` with calibration.
    ``A16W4Config.pytorch_recipe(group_size)`` is symmetric absmax round-to-nearest everywhere.
    """

    bits = 4
    group_size: int = 32
    asymmetric: bool = True
    search: bool = True
    head_bits: Optional[int] = 8
    embedding_bits: Optional[int] = 8
    awq: bool = True
    supports_input_scale = True

    def __post_init__(self):
        _check_bits("head_bits", self.head_bits, (4, 8, None))
        _check_bits("embedding_bits", self.embedding_bits, (8, None))

    @classmethod
    def pytorch_recipe(cls, group_size: int = 128, dtype: torch.dtype = torch.bfloat16) -> "A16W4Config":
        """Symmetric absmax int4 everywhere, the head included (the previous default, at g128)."""
        return cls(group_size=group_size, dtype=dtype, asymmetric=False, search=False, head_bits=4,
                   embedding_bits=None, awq=False)

    @property
    def name(self) -> str:
        base = "A16W4" + (f" g{self.group_size}" if self.group_size else "")
        return base if self.asymmetric else base + " sym"

    def head_config(self):
        if self.head_bits == 8:
            return A16W8Config(dtype=self.dtype)
        return self if self.head_bits == 4 else None

    def convert(self, linear, importance=None, input_scale=None):
        from ..contrib.module import LinearWeightQuant

        return LinearWeightQuant.from_float(linear, bits=4, group_size=self.group_size, dtype=self.dtype,
                                            asymmetric=self.asymmetric, search=self.search,
                                            importance=importance, input_scale=input_scale)
