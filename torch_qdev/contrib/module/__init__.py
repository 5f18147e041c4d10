"""torch_npu.contrib.module's quantized layers, for qdev."""
from .linear_a8w8_dynamic import LinearA8W8Dynamic
from .linear_a8w8_quant import LinearA8W8Quant
from .linear_quant import LinearQuant
from .linear_w4a8_dynamic import LinearW4A8Dynamic
from .linear_weight_quant import LinearWeightQuant

__all__ = ["LinearA8W8Dynamic", "LinearA8W8Quant", "LinearQuant", "LinearW4A8Dynamic", "LinearWeightQuant"]
