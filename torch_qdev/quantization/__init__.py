"""Model-level quantization in the style of torchao: ``quantize_(model, config)``.

    from torch_qdev.quantization import quantize_, W4A8DynamicConfig
    quantize_(model, W4A8DynamicConfig(group_size=32), device="qdev")

Each config swaps ``nn.Linear`` layers for a ``torch_qdev.contrib.module`` layer built from
the float weights:

=====================================  ==================================================
config                                 layer (activations x weights)
=====================================  ==================================================
``A8W8DynamicConfig()``                ``LinearA8W8Dynamic``: per-token dynamic int8 x
                                       per-channel int8 (FRACTAL_NZ on qdev)
``W4A8DynamicConfig(group_size=32)``   ``LinearW4A8Dynamic``: per-row dynamic int8 x int4
                                       (per group, or per channel with ``None``)
``A16W8Config()``                      ``LinearWeightQuant``: bf16/fp16 x int8 per channel
``A16W4Config(group_size=128)``        ``LinearWeightQuant``: bf16/fp16 x int4 per group
=====================================  ==================================================
"""
from .configs import A8W8DynamicConfig, A16W4Config, A16W8Config, QuantConfig, W4A8DynamicConfig
from .quant_api import quantize_, quantized_linear
from .moe import GroupedExpertsA8W8, GroupedExpertsA16W8, GroupedExpertsW4A8, PerExpertLoopA8W8

__all__ = ["quantize_", "quantized_linear", "QuantConfig", "A8W8DynamicConfig", "W4A8DynamicConfig",
           "A16W8Config", "A16W4Config", "GroupedExpertsA8W8", "GroupedExpertsA16W8", "GroupedExpertsW4A8",
           "PerExpertLoopA8W8"]
