"""torch_qdev's CUDA target, written in Triton.

Each op is a public function with the op's own signature; importing this package needs the
``triton`` package, not a GPU. With ``TRITON_INTERPRET=1`` set before the import, the same
functions run on CPU tensors through Triton's interpreter (that is how CI checks them against
the CPU ops, bit for bit). With a CUDA build of torch, ``import torch_qdev`` registers them as
the CUDA kernels of the ``torch.ops.qdev`` ops (see ``_register``).

    npu_quant_matmul, npu_trans_quant_param       quant_matmul.py  (A8W8, A4W4)
    npu_dynamic_quant(_asymmetric)                dynamic_quant.py
    dyn_quant_pack_4bit_weight, dyn_quant_matmul_4bit   w4a8.py (W4A8)
    npu_weight_quant_batchmatmul, npu_convert_weight_to_int4pack   weight_quant.py (A16W8, A16W4)
"""
from __future__ import annotations

from ._common import INTERPRET
from .dynamic_quant import npu_dynamic_quant, npu_dynamic_quant_asymmetric
from .quant_matmul import npu_quant_matmul, npu_trans_quant_param
from .w4a8 import dyn_quant_matmul_4bit, dyn_quant_pack_4bit_weight
from .weight_quant import npu_convert_weight_to_int4pack, npu_weight_quant_batchmatmul
from ._register import register_cuda_kernels

__all__ = ["INTERPRET", "npu_quant_matmul", "npu_trans_quant_param", "npu_dynamic_quant",
           "npu_dynamic_quant_asymmetric", "dyn_quant_pack_4bit_weight", "dyn_quant_matmul_4bit",
           "npu_weight_quant_batchmatmul", "npu_convert_weight_to_int4pack", "register_cuda_kernels"]
