"""torch_npu.contrib.module's quantized layers, for qdev."""
from .linear_a8w8_quant import LinearA8W8Quant
from .linear_quant import LinearQuant

__all__ = ["LinearA8W8Quant", "LinearQuant"]
