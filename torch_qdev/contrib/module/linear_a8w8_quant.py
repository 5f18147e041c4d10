"""LinearA8W8Quant: the deprecated predecessor of LinearQuant, with stricter validation."""
from __future__ import annotations

import warnings

import torch

from .linear_quant import LinearQuant

_SCALE_DTYPES = (torch.int64, torch.float32, torch.bfloat16)
_BIAS_DTYPES = (torch.int32, torch.bfloat16, torch.float16, torch.float32)
_OUTPUT_DTYPES = (None, torch.int8, torch.float16, torch.bfloat16)


class LinearA8W8Quant(LinearQuant):
    """torch_npu's LinearA8W8Quant: same parameters as :class:`LinearQuant`; its forward
    validates every parameter's dtype first. Deprecated in torch_npu in favour of LinearQuant."""

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn("torch_qdev.contrib.module.LinearA8W8Quant is deprecated and will be removed in a "
                      "future version. Use torch_qdev.contrib.module.LinearQuant instead.",
                      FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_types(x)
        if self.scale.dtype not in _SCALE_DTYPES:
            raise ValueError("scale should be torch.int64, torch.float32 or torch.bfloat16, "
                             f"but now it is {self.scale.dtype}.")
        if self.offset is not None and self.offset.dtype != torch.float32:
            raise ValueError(f"offset should be torch.float32, but now it is {self.offset.dtype}.")
        if self.bias is not None and self.bias.dtype not in _BIAS_DTYPES:
            raise ValueError("bias should be torch.int32, torch.bfloat16, torch.float16 or torch.float32, "
                             f"but now it is {self.bias.dtype}.")
        if self.pertoken_scale is not None and self.pertoken_scale.dtype != torch.float32:
            raise ValueError(f"pertoken_scale should be torch.float32, but now it is {self.pertoken_scale.dtype}.")
        if self.output_dtype not in _OUTPUT_DTYPES:
            raise ValueError("output_dtype should be torch.int8, torch.float16 or torch.bfloat16, "
                             f"but now it is {self.output_dtype}.")
        return super().forward(x)
