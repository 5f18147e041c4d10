"""Tensor-parallel quantized linears, bit-identical to the one-device layer.

Quantized weights are cut before they are packed (NZ and W4A8 blobs cannot be sliced), and
every split keeps one device's numerics exactly:

* :class:`ColwiseQuantLinear` splits the output features. Weight quantization is per output
  channel (per row of ``weight``, per k-group within a row), so each rank's shard quantizes
  to exactly the rows the one-device layer holds. Works for every torch_qdev config.
* :class:`RowwiseQuantLinear` splits the input features; its input is the column-split
  activation of the previous layer. For A8W8 it runs the exact row recipe: the per-token
  activation scale comes from the global absmax (one all-reduce MAX), each rank multiplies
  its k-slice to int32, the int32 partials are all-reduced (exact, order-free), and the
  per-channel/per-token scales and the bias are applied once, as the fused kernel does. For the
  other configs (W4A8 sums its k-groups in float, so no k split of it is exact) the layer
  all-gathers its input and computes its share of the output columns over the whole k.

The layers take a process group (default: the world) whose size divides the split dimension.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import nn

from .. import ops
from ..quantization.configs import A8W8DynamicConfig, QuantConfig


def _rank_world(group) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


def _split(size: int, world: int, rank: int, what: str, multiple: int = 1) -> tuple[int, int]:
    if size % world or (size // world) % multiple:
        extra = f" and each shard a multiple of {multiple}" if multiple > 1 else ""
        raise ValueError(f"tensor parallel: {what}={size} must split evenly over {world} ranks{extra}")
    part = size // world
    return rank * part, part


def _linear_rows(linear: nn.Linear, start: int, length: int) -> nn.Linear:
    """A float nn.Linear holding output features [start, start + length) of ``linear``."""
    shard = nn.Linear(linear.in_features, length, bias=linear.bias is not None, device="meta")
    shard.weight = nn.Parameter(linear.weight.detach()[start:start + length].clone(), requires_grad=False)
    if linear.bias is not None:
        shard.bias = nn.Parameter(linear.bias.detach()[start:start + length].clone(), requires_grad=False)
    return shard


def _all_gather_last(y: torch.Tensor, group, world: int) -> torch.Tensor:
    """Concatenates every rank's ``y`` along the last dimension."""
    y = y.contiguous()
    parts = torch.empty((world * y.shape[0], *y.shape[1:]), dtype=y.dtype, device=y.device)
    dist.all_gather_single(parts, y, group=group)  # gloo takes the concatenated form only
    parts = parts.view(world, *y.shape)
    return torch.movedim(parts, 0, -2).reshape(*y.shape[:-1], world * y.shape[-1])


def _epilogue_scale(scale: torch.Tensor, offset: Optional[torch.Tensor], out_dtype: torch.dtype,
                    has_pertoken: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The float32 scale (and int32 offset) npu_quant_matmul's epilogue applies: an int64 scale
    is unpacked (19-bit scale, 9-bit offset); a float32 one for int8 or float16 output without
    pertoken_scale is first packed as torch_npu does (npu_trans_quant_param)."""
    if scale.dtype == torch.float32 and not has_pertoken and out_dtype in (torch.int8, torch.float16):
        scale = ops.npu_trans_quant_param(scale, offset if out_dtype == torch.int8 else None)
    if scale.dtype != torch.int64:
        return scale.float(), None
    s = (scale & 0xFFFFE000).to(torch.int32).view(torch.float32)
    o = (scale >> 37) & 0x1FF
    o = torch.where(o >= 256, o - 512, o).to(torch.int32)
    return s, (o if out_dtype == torch.int8 else None)


def row_parallel_quant_matmul(x1: torch.Tensor, x2: torch.Tensor, scale: torch.Tensor, *,
                              offset: Optional[torch.Tensor] = None, pertoken_scale: Optional[torch.Tensor] = None,
                              bias: Optional[torch.Tensor] = None, output_dtype: Optional[torch.dtype] = None,
                              group=None) -> torch.Tensor:
    """``npu_quant_matmul`` split along k, bit-identical to the one-device call on the whole k.

    ``x1`` (m, k_r) int8 is this rank's k-slice of the activations, ``x2`` (k_r, n) int8 the
    matching rows of the weight; ``scale``, ``offset``, ``pertoken_scale`` and ``bias`` are the
    full ones. Each rank computes its int32 partial sums, one int32 all-reduce adds them
    (exact), and the epilogue (int32 bias, scale, per-token scale, float bias, CANN's int8
    requantization or the float16/bfloat16 rounding) runs once on the sum.
    """
    out_dtype = torch.int8 if output_dtype is None else output_dtype
    if out_dtype not in (torch.int8, torch.float16, torch.bfloat16):
        raise ValueError(f"row_parallel_quant_matmul: output_dtype must be torch.int8, torch.float16 or "
                         f"torch.bfloat16, got {out_dtype}")
    ones = torch.ones(1, dtype=torch.float32, device=x1.device)
    acc = ops.npu_quant_matmul(x1, x2, ones, output_dtype=torch.int32)
    dist.all_reduce(acc, group=group)
    if bias is not None and bias.dtype == torch.int32:
        acc = acc + bias
    s, o = _epilogue_scale(scale, offset, out_dtype, pertoken_scale is not None)
    y = acc.to(torch.float32) * s
    if out_dtype == torch.int8:
        q = torch.round(y.clamp(-256.0, 255.0)).to(torch.int32)  # the 9-bit intermediate, half to even
        if o is not None:
            q = q + o
        return q.clamp(-128, 127).to(torch.int8)
    if pertoken_scale is not None:
        y = y * pertoken_scale.float()[:, None]
    if bias is not None and bias.dtype != torch.int32:
        y = y + bias.float()
    return y.to(out_dtype)


def _group_multiple(config: QuantConfig) -> int:
    g = getattr(config, "group_size", None)
    return g if g else 1


class ColwiseQuantLinear(nn.Module):
    """Output features split over the group: rank r holds ``out_features / world`` rows of the
    weight, quantized with ``config`` as a layer of their own.

    Args:
        linear: the full float layer (same on every rank).
        config: a torch_qdev.quantization config, or None to keep the shard in float.
        group: process group (default: world).
        gather_output: all-gather the output shards into the full output (else each rank
            returns its columns, the input of a following :class:`RowwiseQuantLinear`).
        device: where the shard lives (e.g. ``"qdev"``).
    """

    def __init__(self, linear: nn.Linear, config: Optional[QuantConfig], group=None, gather_output: bool = False,
                 device=None) -> None:
        super().__init__()
        self.group = group
        self.rank, self.world = _rank_world(group)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        start, part = _split(linear.out_features, self.world, self.rank, "out_features")
        shard = _linear_rows(linear, start, part)
        if config is not None:
            from ..quantization.quant_api import quantized_linear

            shard = quantized_linear(shard, config)
        self.local = shard if device is None else shard.to(device)
        self.gather_output = gather_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        return _all_gather_last(y, self.group, self.world) if self.gather_output else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, world={self.world}, "
                f"gather_output={self.gather_output}")


class RowwiseQuantLinear(nn.Module):
    """Input features split over the group: the input is this rank's ``in_features / world``
    slice (the column-split output of the previous layer); the output is the full result on
    every rank, bit-identical to the one-device layer (see the module docstring).

    For A8W8 the k shard must be a multiple of 32 (the int8 weight's NZ C0), for grouped
    configs a multiple of the group size.
    """

    def __init__(self, linear: nn.Linear, config: Optional[QuantConfig], group=None, device=None) -> None:
        super().__init__()
        self.group = group
        self.rank, self.world = _rank_world(group)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.exact_int32 = isinstance(config, A8W8DynamicConfig)
        if self.exact_int32:
            k0, part = _split(linear.in_features, self.world, self.rank, "in_features", 32)
            self.k_local = part
            from ..contrib.module import LinearA8W8Dynamic

            full = LinearA8W8Dynamic.from_float(linear, device="cpu")  # one scale per channel over all of k
            weight = full.weight.detach()[:, k0:k0 + part].contiguous()
            self.weight = nn.Parameter(weight, requires_grad=False)
            self.scale = nn.Parameter(full.scale.detach().clone(), requires_grad=False)
            self.bias = None if full.bias is None else nn.Parameter(full.bias.detach().clone(), requires_grad=False)
            if device is not None:
                self.to(device)
            self._pack()
        else:
            _, part = _split(linear.in_features, self.world, self.rank, "in_features", _group_multiple(config))
            self.k_local = part
            self.columns = ColwiseQuantLinear(linear, config, group, gather_output=True, device=device)

    def _pack(self) -> None:
        from ..contrib import _weight_to_nz

        if self.weight.device.type == "qdev":
            _weight_to_nz(self.weight)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        if self.exact_int32:
            self._pack()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.k_local:
            raise RuntimeError(f"RowwiseQuantLinear: expected this rank's input slice of {self.k_local} features "
                               f"(in_features={self.in_features} over {self.world} ranks), but got input of shape "
                               f"{tuple(x.shape)}")
        if not self.exact_int32:
            return self.columns(_all_gather_last(x, self.group, self.world))
        return self._forward_a8w8(x)

    def _forward_a8w8(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        out_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.k_local)
        # One scale per token over the whole row: the global absmax. Appending it as one more
        # column makes npu_dynamic_quant derive exactly that scale and quantize this slice with it.
        amax = x2.abs().amax(dim=-1, keepdim=True)
        dist.all_reduce(amax, op=dist.ReduceOp.MAX, group=self.group)
        xq, pertoken = ops.npu_dynamic_quant(torch.cat([x2, amax], dim=-1))
        xq = xq[:, :self.k_local].contiguous()
        y = row_parallel_quant_matmul(xq, self.weight.t(), self.scale, pertoken_scale=pertoken, bias=self.bias,
                                      output_dtype=out_dtype, group=self.group)
        y = y.reshape(*lead, self.out_features)
        return y if y.dtype == dtype else y.to(dtype)

    def extra_repr(self) -> str:
        kind = "a8w8 int32 all-reduce" if self.exact_int32 else "all-gather input, column shard"
        return f"in_features={self.in_features}, out_features={self.out_features}, world={self.world}, {kind}"
