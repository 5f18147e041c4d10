"""torch_npu's quantized-inference API on qdev.

The canonical entry points are the ``torch.ops.qdev.*`` operators (what
torch.compile, export and opcheck see); the functions here are thin typed
wrappers with torch_npu's names and signatures, so that code written for
torch_npu runs after replacing ``torch_npu`` with ``torch_qdev`` and ``npu``
with ``qdev``.
"""
from __future__ import annotations

import enum
import warnings
from typing import Optional, Sequence, Union

import torch

__all__ = [
    "dyn_quant_matmul_4bit", "dyn_quant_pack_4bit_weight", "dyn_quant_pack_4bit_weight_asym", "Format", "get_npu_format", "get_storage_size", "npu_dynamic_quant",
    "npu_convert_weight_to_int4pack", "npu_dynamic_quant_asymmetric", "npu_format_cast", "npu_format_cast_",
    "npu_quant_matmul", "npu_trans_quant_param", "npu_weight_quant_batchmatmul",
]

DType = Union[torch.dtype, int, None]


class Format(enum.IntEnum):
    """torch_npu.Format: tensor formats with torch_npu's values."""

    UNDEFINED = -1
    NCHW = 0
    NHWC = 1
    ND = 2
    NC1HWC0 = 3
    FRACTAL_Z = 4
    NC1HWC0_C04 = 12
    HWCN = 16
    NDHWC = 27
    FRACTAL_NZ = 29
    NCDHW = 30
    NDC1HWC0 = 32
    FRACTAL_Z_3D = 33
    NC = 35
    NCL = 47
    FRACTAL_NZ_C0_16 = 50
    FRACTAL_NZ_C0_32 = 51
    FRACTAL_NZ_C0_2 = 52
    FRACTAL_NZ_C0_4 = 53
    FRACTAL_NZ_C0_8 = 54

    def __str__(self) -> str:
        return self.name


def _dtype_int(dtype: DType) -> Optional[int]:
    """torch.dtype -> the ScalarType integer the schemas take (ints pass through)."""
    if dtype is None or isinstance(dtype, int):
        return dtype
    if isinstance(dtype, torch.dtype):
        return _SCALAR_TYPE[dtype]
    raise TypeError(f"expected a torch.dtype or an int, got {dtype!r}")


_SCALAR_TYPE = {
    torch.uint8: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.int64: 4,
    torch.float16: 5, torch.float32: 6, torch.float64: 7, torch.bool: 11, torch.qint8: 12,
    torch.quint8: 13, torch.qint32: 14, torch.bfloat16: 15, torch.quint4x2: 16,
    torch.float8_e5m2: 23, torch.float8_e4m3fn: 24,
}


def npu_trans_quant_param(scale: torch.Tensor, offset: Optional[torch.Tensor] = None,
                          round_mode: Optional[int] = 0) -> torch.Tensor:
    """Packs a float32 scale (and offset) into torch_npu's int64 quantization parameter."""
    return torch.ops.qdev.npu_trans_quant_param(scale, offset, round_mode)


def npu_quant_matmul(x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, *,
                     offset: Optional[torch.Tensor] = None,
                     pertoken_scale: Optional[torch.Tensor] = None,
                     bias: Optional[torch.Tensor] = None, output_dtype: DType = None,
                     x1_dtype: DType = None, x2_dtype: DType = None,
                     pertoken_scale_dtype: DType = None, scale_dtype: DType = None,
                     group_sizes: Optional[Sequence[int]] = None,
                     y_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Quantized matmul ``x1 @ x2`` with torch_npu's scaling, offset, bias and output rules."""
    return torch.ops.qdev.npu_quant_matmul(
        x1, x2, scale, offset=offset, pertoken_scale=pertoken_scale, bias=bias,
        output_dtype=_dtype_int(output_dtype), x1_dtype=_dtype_int(x1_dtype),
        x2_dtype=_dtype_int(x2_dtype), pertoken_scale_dtype=_dtype_int(pertoken_scale_dtype),
        scale_dtype=_dtype_int(scale_dtype),
        group_sizes=list(group_sizes) if group_sizes is not None else None, y_scale=y_scale)


def npu_dynamic_quant(input: torch.Tensor, *, smooth_scales: Optional[torch.Tensor] = None,
                      group_index: Optional[torch.Tensor] = None, dst_type: DType = None,
                      quant_mode: str = "pertoken", dst_type_max: float = 0.0):
    """Symmetric dynamic quantization: returns (y, scale)."""
    return torch.ops.qdev.npu_dynamic_quant(
        input, smooth_scales=smooth_scales, group_index=group_index, dst_type=_dtype_int(dst_type),
        quant_mode=quant_mode, dst_type_max=dst_type_max)


def npu_dynamic_quant_asymmetric(input: torch.Tensor, *, smooth_scales: Optional[torch.Tensor] = None,
                                 group_index: Optional[torch.Tensor] = None, dst_type: DType = None,
                                 quant_mode: str = "pertoken", dst_type_max: float = 0.0):
    """Asymmetric dynamic quantization: returns (y, scale, offset)."""
    return torch.ops.qdev.npu_dynamic_quant_asymmetric(
        input, smooth_scales=smooth_scales, group_index=group_index, dst_type=_dtype_int(dst_type),
        quant_mode=quant_mode, dst_type_max=dst_type_max)


def npu_format_cast(self: torch.Tensor, acl_format: Union[int, torch.Tensor], *,
                    customize_dtype: DType = None, input_dtype: DType = None) -> torch.Tensor:
    """Returns ``self`` in format ``acl_format`` (an int / Format, or a tensor whose format to adopt)."""
    target = int(torch.ops.qdev.get_npu_format(acl_format)) if isinstance(acl_format, torch.Tensor) else int(acl_format)
    if target in _INTERNAL and not torch.qdev.config.allow_internal_format and self.device.type == "qdev":
        # torch_npu degrades the request with this warning (as a Python warning here;
        # the C++ op itself reports it on stderr when called through torch.ops).
        warnings.warn("Cannot create tensor with internal format while allow_internal_format=False, "
                      "tensor will be created with base format.", stacklevel=2)
        return self
    if isinstance(acl_format, torch.Tensor):
        return torch.ops.qdev.npu_format_cast.Tensor(
            self, acl_format, customize_dtype=_dtype_int(customize_dtype), input_dtype=_dtype_int(input_dtype))
    return torch.ops.qdev.npu_format_cast(self, int(acl_format), customize_dtype=_dtype_int(customize_dtype),
                                          input_dtype=_dtype_int(input_dtype))


def npu_format_cast_(self: torch.Tensor, acl_format: Union[int, torch.Tensor], *,
                     customize_dtype: DType = None, input_dtype: DType = None) -> torch.Tensor:
    """In-place variant of npu_format_cast (a tensor argument copies its values into self)."""
    if isinstance(acl_format, torch.Tensor):
        return torch.ops.qdev.npu_format_cast_(self, acl_format, customize_dtype=_dtype_int(customize_dtype),
                                               input_dtype=_dtype_int(input_dtype))
    return torch.ops.qdev.npu_format_cast_.acl_format(
        self, int(acl_format), customize_dtype=_dtype_int(customize_dtype), input_dtype=_dtype_int(input_dtype))


def get_npu_format(self: torch.Tensor) -> Format:
    return Format(torch.ops.qdev.get_npu_format(self))


def get_storage_size(self: torch.Tensor) -> int:
    """Elements in the tensor's (physical) storage, e.g. the padded FRACTAL_NZ size."""
    return torch.ops.qdev.get_storage_size(self)


def _format_cast_backward(ctx, grad):
    return grad, None


def _format_cast_setup(ctx, inputs, keyword_only_inputs, output):
    pass


# npu_format_cast is differentiable with an identity gradient, as in torch_npu.
torch.library.register_autograd("qdev::npu_format_cast", _format_cast_backward,
                                setup_context=_format_cast_setup)


def _install_serialization_hook() -> None:
    """torch.save sees logical values of internal-format tensors: they are saved as
    an ND qdev copy (a plain qdev storage), and load back as ND qdev tensors
    (weights_only-safe). The copy is saved rather than rebuilt from a CPU tensor at
    load time: the legacy (non-zipfile) loader fills storages only after unpickling,
    so a copy made while rebuilding would read unfilled memory."""
    original = torch.Tensor._reduce_ex_internal
    if getattr(original, "_qdev_wrapped", False):
        return

    def _reduce_ex_internal(self, proto):
        if self.device.type == "qdev" and int(torch.ops.qdev.get_npu_format(self)) in _INTERNAL:
            nd = torch.ops.qdev.npu_format_cast(self.detach(), int(Format.ND))
            nd.requires_grad_(self.requires_grad)
            return original(nd, proto)
        return original(self, proto)

    _reduce_ex_internal._qdev_wrapped = True  # type: ignore[attr-defined]
    torch.Tensor._reduce_ex_internal = _reduce_ex_internal


_INTERNAL = {int(f) for f in (Format.FRACTAL_NZ, Format.FRACTAL_NZ_C0_16, Format.FRACTAL_NZ_C0_32,
                              Format.FRACTAL_NZ_C0_2, Format.FRACTAL_NZ_C0_4)}
_install_serialization_hook()


# --------------------------------------------------------------------------
# Fake kernels: shapes and dtypes only (fake tensors, torch.compile, export).
# They mirror the shape rules of the C++ kernels, which do the full checking.

_OUTPUT_DTYPES = {None: torch.int8, 1: torch.int8, 3: torch.int32, 5: torch.float16,
                  15: torch.bfloat16}


@torch.library.register_fake("qdev::npu_trans_quant_param")
def _trans_quant_param_fake(scale, offset=None, round_mode=0):
    torch._check(round_mode in (None, 0, 1), lambda: f"round_mode must be 0 or 1. but now is {round_mode}")
    if scale.dim() == 2 or offset is None:
        return scale.new_empty(scale.shape, dtype=torch.int64)
    return scale.new_empty((torch.sym_max(scale.size(0), offset.size(0)),), dtype=torch.int64)


@torch.library.register_fake("qdev::npu_quant_matmul")
def _quant_matmul_fake(x1, x2, scale, *, offset=None, pertoken_scale=None, bias=None, output_dtype=None,
                       x1_dtype=None, x2_dtype=None, pertoken_scale_dtype=None, scale_dtype=None,
                       group_sizes=None, y_scale=None):
    torch._check(2 <= x1.dim() <= 6, lambda: "x1 dim num should be 2 ~ 6, please check x1 dim num ")
    torch._check(output_dtype in _OUTPUT_DTYPES, lambda: f"Not supported output dtype is {output_dtype}")
    if x1.dtype == torch.int32 and x2.dtype == torch.int32:
        n = x2.size(-1) if x1.size(-1) == x2.size(-2) else x2.size(-1) * 8
    elif x1.dtype == torch.int8 and x2.dtype == torch.int32:  # A8W4: 2-D, x2 (k, n / 8)
        torch._check(x1.dim() == 2 and x2.dim() == 2,
                     lambda: "A8W4 (int8 x1 with int32-packed int4 x2) supports 2-D x1 and x2")
        return x1.new_empty((x1.size(0), x2.size(1) * 8), dtype=_OUTPUT_DTYPES[output_dtype])
    else:
        torch._check(x1.size(-1) == x2.size(-2),
                     lambda: "k dim of x1 and x2 need be same, please check k dim of x1 and x2 ")
        n = x2.size(-1)
    batch = torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
    return x1.new_empty((*batch, x1.size(-2), n), dtype=_OUTPUT_DTYPES[output_dtype])


def _dynamic_quant_shapes(input, dst_type, quant_mode):
    torch._check(input.dim() > 1, lambda: "Input shape dim should be greater than 1")
    y_shape = list(input.shape)
    y_dtype = torch.int8
    if dst_type == 16:
        y_shape[-1] = y_shape[-1] // 8
        y_dtype = torch.int32
    if quant_mode == "pertensor":
        s_shape = [1]
    elif quant_mode == "perchannel":
        s_shape = list(input.shape[:-2]) + [input.shape[-1]]
    else:
        s_shape = list(input.shape[:-1])
    return input.new_empty(y_shape, dtype=y_dtype), s_shape


@torch.library.register_fake("qdev::npu_dynamic_quant")
def _dynamic_quant_fake(input, *, smooth_scales=None, group_index=None, dst_type=None,
                        quant_mode="pertoken", dst_type_max=0.0):
    y, s_shape = _dynamic_quant_shapes(input, dst_type, quant_mode)
    return y, input.new_empty(s_shape, dtype=torch.float32)


@torch.library.register_fake("qdev::npu_dynamic_quant_asymmetric")
def _dynamic_quant_asymmetric_fake(input, *, smooth_scales=None, group_index=None, dst_type=None,
                                   quant_mode="pertoken", dst_type_max=0.0):
    y, s_shape = _dynamic_quant_shapes(input, dst_type, quant_mode)
    return y, input.new_empty(s_shape, dtype=torch.float32), input.new_empty(s_shape, dtype=torch.float32)


@torch.library.register_fake("qdev::npu_format_cast")
def _format_cast_fake(self, acl_format, *, customize_dtype=None, input_dtype=None):
    return self.new_empty(self.shape)


@torch.library.register_fake("qdev::npu_format_cast.Tensor")
def _format_cast_tensor_fake(self, dst, *, customize_dtype=None, input_dtype=None):
    return self.new_empty(self.shape)


@torch.library.register_fake("qdev::npu_format_cast_.acl_format")
def _format_cast_inplace_fake(self, acl_format, *, customize_dtype=None, input_dtype=None):
    return self


@torch.library.register_fake("qdev::npu_format_cast_")
def _format_cast_inplace_tensor_fake(self, src, *, customize_dtype=None, input_dtype=None):
    return self


# --------------------------------------------------------------------------
# W4A8 dynamic: torch.ops.qdev.dyn_quant_pack_4bit_weight / dyn_quant_matmul_4bit


def _align64(v: int) -> int:
    return (v + 63) // 64 * 64


def w4_packed_bytes(in_features: int, out_features: int, block_size: int, has_bias: bool,
                    scales_bf16: bool = False, has_zeros: bool = False) -> int:
    """Size of a torch_qdev packed 4-bit weight (mirrors kernels/pack/qd_rhs_pack_w4_ref.cpp)."""
    if in_features <= 0 or out_features <= 0:
        raise ValueError(f"in_features and out_features must be positive, but they are {in_features} and {out_features}")
    if not (block_size == in_features or (block_size > 0 and block_size % 32 == 0 and in_features % block_size == 0)):
        raise ValueError(f"Group size should be multiple of 32, in_features [{in_features}]. Provided {block_size}")
    k_pad = (in_features + 15) // 16 * 16
    n_pad = (out_features + 31) // 32 * 32
    groups = 1 if block_size == in_features else in_features // block_size
    off_scales = _align64(128 + n_pad * k_pad // 2)
    off_colsum = _align64(off_scales + groups * n_pad * (2 if scales_bf16 else 4))
    off_bias = _align64(off_colsum + groups * n_pad * 4)
    end = _align64(off_bias + (n_pad * 4 if has_bias else 0))
    return _align64(end + groups * n_pad * (2 if scales_bf16 else 4)) if has_zeros else end


@torch.library.register_fake("qdev::dyn_quant_pack_4bit_weight")
def _dyn_quant_pack_fake(weights, scales_zeros, bias, block_size, in_features, out_features):
    size = w4_packed_bytes(in_features, out_features, block_size, bias is not None,
                           scales_zeros.dtype == torch.bfloat16)
    return weights.new_empty((size,), dtype=torch.uint8)


@torch.library.register_fake("qdev::dyn_quant_pack_4bit_weight_asym")
def _dyn_quant_pack_asym_fake(weights, scales, zeros, bias, block_size, in_features, out_features):
    size = w4_packed_bytes(in_features, out_features, block_size, bias is not None,
                           scales.dtype == torch.bfloat16, has_zeros=True)
    return weights.new_empty((size,), dtype=torch.uint8)


@torch.library.register_fake("qdev::int4_group_search")
def _int4_group_search_fake(w, importance, deltas, qmax=15):
    return w.new_empty((w.shape[0],)), w.new_empty((w.shape[0],))


@torch.library.register_fake("qdev::dyn_quant_matmul_4bit")
def _dyn_quant_matmul_fake(inp, packed_weights, block_size, in_features, out_features):
    torch._check(inp.size(-1) == in_features,
                 lambda: f"dyn_quant_matmul_4bit: the input has {inp.size(-1)} features but in_features is {in_features}")
    return inp.new_empty((*inp.shape[:-1], out_features))


def dyn_quant_pack_4bit_weight(weights: torch.Tensor, scales_zeros: torch.Tensor, bias: Optional[torch.Tensor],
                               block_size: int, in_features: int, out_features: int) -> torch.Tensor:
    """Packs symmetric int4 weights (torch's uint8 (N, K/2) layout, nibble = q + 8) and their
    scales into torch_qdev's self-describing buffer; works for CPU and qdev tensors."""
    return torch.ops.qdev.dyn_quant_pack_4bit_weight(weights, scales_zeros, bias, block_size, in_features,
                                                     out_features)


def dyn_quant_pack_4bit_weight_asym(weights: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                                    bias: Optional[torch.Tensor], block_size: int, in_features: int,
                                    out_features: int) -> torch.Tensor:
    """torch_qdev's asymmetric extension of :func:`dyn_quant_pack_4bit_weight` (not in PyTorch):
    each group's weights are ``scales * (nibble - 8) + zeros`` (the zero convention of
    ``torch._weight_int4pack_mm``), ``zeros`` shaped and typed like ``scales`` (stored as bf16 when
    the scales are). :func:`dyn_quant_matmul_4bit` runs the buffer; per row and group it adds
    ``float(sum_k (q - zp)) * zero`` after the scale term (see kernels/matmul/qd_w4a8.h)."""
    return torch.ops.qdev.dyn_quant_pack_4bit_weight_asym(weights, scales, zeros, bias, block_size, in_features,
                                                          out_features)


def dyn_quant_matmul_4bit(inp: torch.Tensor, packed_weights: torch.Tensor, block_size: int, in_features: int,
                          out_features: int) -> torch.Tensor:
    """``inp @ W^T (+ bias)`` with per-row int8 dynamic activations (aten::_dyn_quant_matmul_4bit numerics)."""
    return torch.ops.qdev.dyn_quant_matmul_4bit(inp, packed_weights, block_size, in_features, out_features)


# --------------------------------------------------------------------------
# Weight-only quantized matmul (A16W8 / A16W4) and int4 packing


def npu_convert_weight_to_int4pack(weight: torch.Tensor, inner_k_tiles: int = 0) -> torch.Tensor:
    """int32 values in [-8, 7] -> int32 words of 8 nibbles along the last dim, least significant first."""
    return torch.ops.qdev.npu_convert_weight_to_int4pack(weight, inner_k_tiles)


def npu_weight_quant_batchmatmul(x: torch.Tensor, weight: torch.Tensor, antiquant_scale: torch.Tensor,
                                 antiquant_offset: Optional[torch.Tensor] = None,
                                 quant_scale: Optional[torch.Tensor] = None,
                                 quant_offset: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
                                 antiquant_group_size: int = 0, inner_precise: int = 0,
                                 weight_dtype: DType = None) -> torch.Tensor:
    """``x @ ((weight + antiquant_offset) * antiquant_scale) + bias`` (optionally requantized to int8)."""
    return torch.ops.qdev.npu_weight_quant_batchmatmul(x, weight, antiquant_scale, antiquant_offset, quant_scale,
                                                       quant_offset, bias, antiquant_group_size, inner_precise,
                                                       _dtype_int(weight_dtype))


@torch.library.register_fake("qdev::npu_convert_weight_to_int4pack")
def _convert_int4pack_fake(weight, inner_k_tiles=0):
    return weight.new_empty((*weight.shape[:-1], weight.shape[-1] // 8), dtype=torch.int32)


@torch.library.register_fake("qdev::npu_weight_quant_batchmatmul")
def _weight_quant_bmm_fake(x, weight, antiquant_scale, antiquant_offset=None, quant_scale=None, quant_offset=None,
                           bias=None, antiquant_group_size=0, inner_precise=0, weight_dtype=None):
    transposed = weight.dim() >= 2 and weight.stride(-2) == 1 and weight.stride(-1) == weight.size(-2)
    n = weight.size(-1) * 8 if weight.dtype == torch.int32 and not transposed else weight.size(-1)
    longer = x if x.dim() >= weight.dim() else weight
    shape = (*longer.shape[:-2], x.size(-2), n)
    return x.new_empty(shape, dtype=torch.int8 if quant_scale is not None else x.dtype)
