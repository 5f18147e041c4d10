"""Quantized Mixture-of-Experts: Hugging Face expert blocks -> grouped quantized experts.

transformers (5.x) stores a Qwen3-MoE / Mixtral / ... layer's experts as two 3-D parameters,
``gate_up_proj`` (E, 2I, H) and ``down_proj`` (E, H, I), in a module called as
``experts(hidden_states, top_k_index, top_k_weights)``; the float forward loops over the hit
experts in Python. :class:`GroupedExpertsA8W8` (and :class:`GroupedExpertsA16W8`) replace that
module with torch_npu's fused path, as vLLM-Ascend runs it:

    npu_moe_init_routing_v2 (sort by expert, per-token int8)  ->  npu_grouped_matmul (int32)
    ->  npu_dequant_swiglu_quant (dequant, SwiGLU, per-token int8)  ->  npu_grouped_matmul
    (scale x per-token, bf16/fp16/fp32)  ->  npu_moe_token_unpermute (weighted sum)

Weights are symmetric int8 per output channel, stored as (E, K, N) (torch_npu's grouped
layout); on qdev the A8W8 ones are cast to FRACTAL_NZ once, so the grouped GEMM reads them as
its packed operand. :class:`PerExpertLoopA8W8` is the comparison point: the same int8 weights
as one dense ``LinearA8W8Dynamic`` pair per expert, called in a Python loop like the float
forward.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import ops_moe
from ..contrib.module.linear_a8w8_dynamic import quantize_int8_symmetric as _quant_per_channel
from ..ops import get_npu_format, npu_convert_weight_to_int4pack, npu_format_cast

_NZ = 29


def is_moe_experts(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers-style expert block (3-D gate_up_proj / down_proj)."""
    gu, dn = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
    return (isinstance(gu, torch.Tensor) and isinstance(dn, torch.Tensor) and gu.dim() == 3 and dn.dim() == 3
            and gu.is_floating_point() and gu.shape[0] == dn.shape[0] and gu.shape[1] == 2 * dn.shape[2]
            and gu.shape[2] == dn.shape[1] and not hasattr(module, "_qdev_quantized"))


def _act_is_silu(module: nn.Module) -> bool:
    act = getattr(module, "act_fn", None)
    return act is None or isinstance(act, nn.SiLU) or type(act).__name__ in ("SiLU", "SiLUActivation")


class _GroupedExpertsBase(nn.Module):
    _qdev_quantized = True

    def __init__(self, num_experts: int, hidden_dim: int, intermediate_dim: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, hidden_dim={self.hidden_dim}, intermediate_dim={self.intermediate_dim}"

    def _check(self, hidden_states, top_k_index, top_k_weights):
        if hidden_states.dim() != 2 or hidden_states.shape[-1] != self.hidden_dim:
            raise RuntimeError(f"{type(self).__name__}: expected hidden_states (tokens, {self.hidden_dim}), "
                               f"got {tuple(hidden_states.shape)}")
        if top_k_index.shape != top_k_weights.shape or top_k_index.shape[0] != hidden_states.shape[0]:
            raise RuntimeError(f"{type(self).__name__}: top_k_index {tuple(top_k_index.shape)} and top_k_weights "
                               f"{tuple(top_k_weights.shape)} must be (tokens, top_k)")


class _GroupedExpertsNZ(_GroupedExpertsBase):
    """Experts whose ``w13`` / ``w2`` buffers the grouped GEMM reads as its packed operand."""

    def pack_weights(self) -> "_GroupedExpertsNZ":
        """On qdev, casts both weights to FRACTAL_NZ: the grouped GEMM then never packs."""
        for name in ("w13", "w2"):
            t = getattr(self, name)
            if t.device.type == "qdev" and int(get_npu_format(t)) != _NZ:
                setattr(self, name, npu_format_cast(t.contiguous(), _NZ))
        return self

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self.pack_weights()
        return out


class GroupedExpertsA8W8(_GroupedExpertsNZ):
    """W8A8-dynamic experts on torch_npu's fused MoE path (see the module docstring).

    Buffers: ``w13`` (E, H, 2I) int8 and ``w13_scale`` (E, 2I) float32 (gate rows first, then up),
    ``w2`` (E, I, H) int8 and ``w2_scale`` (E, H) float32.
    """

    def __init__(self, num_experts: int, hidden_dim: int, intermediate_dim: int, device=None) -> None:
        super().__init__(num_experts, hidden_dim, intermediate_dim)
        E, H, I = num_experts, hidden_dim, intermediate_dim
        self.register_buffer("w13", torch.zeros(E, H, 2 * I, dtype=torch.int8, device=device))
        self.register_buffer("w13_scale", torch.ones(E, 2 * I, dtype=torch.float32, device=device))
        self.register_buffer("w2", torch.zeros(E, I, H, dtype=torch.int8, device=device))
        self.register_buffer("w2_scale", torch.ones(E, H, dtype=torch.float32, device=device))

    @classmethod
    def from_float(cls, experts: nn.Module) -> "GroupedExpertsA8W8":
        gu, dn = experts.gate_up_proj, experts.down_proj
        E, two_i, H = gu.shape
        mod = cls(E, H, two_i // 2, device="meta")
        q13, s13 = _quant_per_channel(gu)      # (E, 2I, H)
        q2, s2 = _quant_per_channel(dn)        # (E, H, I)
        mod.w13 = q13.transpose(1, 2).contiguous()
        mod.w13_scale = s13
        mod.w2 = q2.transpose(1, 2).contiguous()
        mod.w2_scale = s2
        mod.pack_weights()
        return mod

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        self._check(hidden_states, top_k_index, top_k_weights)
        dtype = hidden_states.dtype
        tokens, top_k = top_k_index.shape
        xq, row_idx, counts, pts = ops_moe.npu_moe_init_routing_v2(
            hidden_states, top_k_index.to(torch.int32), active_num=tokens * top_k, expert_num=self.num_experts,
            expert_tokens_num_type=1, expert_tokens_num_flag=True, quant_mode=1)
        h = ops_moe.npu_grouped_matmul([xq], [self.w13], group_list=counts, split_item=3, group_type=0,
                                       group_list_type=1, output_dtype=torch.int32)[0]
        hq, hs = ops_moe.npu_dequant_swiglu_quant(h, weight_scale=self.w13_scale, activation_scale=pts,
                                                  group_index=counts, activate_left=True, quant_mode=1)
        y = ops_moe.npu_grouped_matmul([hq], [self.w2], scale=[self.w2_scale], per_token_scale=[hs],
                                       group_list=counts, split_item=3, group_type=0, group_list_type=1,
                                       output_dtype=dtype)[0]
        return ops_moe.npu_moe_token_unpermute(y, row_idx, top_k_weights.to(torch.float32)).to(dtype)


class GroupedExpertsA16W8(_GroupedExpertsBase):
    """Weight-only int8 experts (bf16/fp16 activations): routing, grouped W8A16 GEMM, npu_swiglu,
    grouped GEMM, unpermute. Weights are stored (E, N, K) and passed transposed, so each output
    column is one contiguous stream for the weight-only GEMV."""

    def __init__(self, num_experts: int, hidden_dim: int, intermediate_dim: int, dtype=torch.bfloat16,
                 device=None) -> None:
        super().__init__(num_experts, hidden_dim, intermediate_dim)
        E, H, I = num_experts, hidden_dim, intermediate_dim
        self.dtype = dtype
        self.register_buffer("w13_nk", torch.zeros(E, 2 * I, H, dtype=torch.int8, device=device))
        self.register_buffer("w13_scale", torch.ones(E, 2 * I, dtype=dtype, device=device))
        self.register_buffer("w2_nk", torch.zeros(E, H, I, dtype=torch.int8, device=device))
        self.register_buffer("w2_scale", torch.ones(E, H, dtype=dtype, device=device))

    @classmethod
    def from_float(cls, experts: nn.Module, dtype=torch.bfloat16) -> "GroupedExpertsA16W8":
        gu, dn = experts.gate_up_proj, experts.down_proj
        E, two_i, H = gu.shape
        mod = cls(E, H, two_i // 2, dtype=dtype, device="meta")
        q13, s13 = _quant_per_channel(gu)
        q2, s2 = _quant_per_channel(dn)
        mod.w13_nk, mod.w13_scale = q13, s13.to(dtype)
        mod.w2_nk, mod.w2_scale = q2, s2.to(dtype)
        return mod

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        self._check(hidden_states, top_k_index, top_k_weights)
        dtype = hidden_states.dtype
        x = hidden_states.to(self.dtype)
        tokens, top_k = top_k_index.shape
        xs, row_idx, counts, _ = ops_moe.npu_moe_init_routing_v2(
            x, top_k_index.to(torch.int32), active_num=tokens * top_k, expert_num=self.num_experts,
            expert_tokens_num_type=1, expert_tokens_num_flag=True, quant_mode=-1)
        h = ops_moe.npu_grouped_matmul([xs], [self.w13_nk.transpose(1, 2)], antiquant_scale=[self.w13_scale],
                                       group_list=counts, split_item=3, group_type=0, group_list_type=1)[0]
        h = ops_moe.npu_swiglu(h)
        y = ops_moe.npu_grouped_matmul([h], [self.w2_nk.transpose(1, 2)], antiquant_scale=[self.w2_scale],
                                       group_list=counts, split_item=3, group_type=0, group_list_type=1)[0]
        return ops_moe.npu_moe_token_unpermute(y, row_idx, top_k_weights.to(torch.float32)).to(dtype)


def _quant_int4_groups(w: torch.Tensor, group: int):
    """(E, N, K) float -> int4 values (E, K, N) int8 and scales (E, G, N): symmetric per k-group, absmax / 7."""
    E, N, K = w.shape
    wf = w.detach().to(torch.float32).reshape(E, N, K // group, group)
    scale = wf.abs().amax(-1).clamp_min(torch.finfo(torch.float32).tiny) / 7.0      # (E, N, G)
    q = torch.round(wf / scale[..., None]).clamp(-8, 7).to(torch.int8).reshape(E, N, K)
    return q.transpose(1, 2).contiguous(), scale.transpose(1, 2).contiguous()


class GroupedExpertsW4A8(_GroupedExpertsNZ):
    """W4A8-dynamic experts: per-token int8 activations x int4 weights per k-group (torch_npu's int32 words,
    (E, K, N/8)), through npu_grouped_matmul's W4A8 path; the SwiGLU output is requantized per token by
    npu_dequant_swiglu_quant. On qdev the weights are FRACTAL_NZ, so the repacked experts stay cached."""

    def __init__(self, num_experts: int, hidden_dim: int, intermediate_dim: int, group_size: Optional[int] = 32,
                 device=None) -> None:
        super().__init__(num_experts, hidden_dim, intermediate_dim)
        E, H, I = num_experts, hidden_dim, intermediate_dim
        g13, g2 = group_size or H, group_size or I
        self.group_size = group_size
        self.register_buffer("w13", torch.zeros(E, H, 2 * I // 8, dtype=torch.int32, device=device))
        self.register_buffer("w13_scale", torch.ones(E, H // g13, 2 * I, dtype=torch.float32, device=device))
        self.register_buffer("w2", torch.zeros(E, I, H // 8, dtype=torch.int32, device=device))
        self.register_buffer("w2_scale", torch.ones(E, I // g2, H, dtype=torch.float32, device=device))

    @staticmethod
    def check(experts: nn.Module, group_size: Optional[int]) -> Optional[str]:
        _, two_i, H = experts.gate_up_proj.shape
        for k in (H, two_i // 2):
            if group_size and (group_size % 32 or k % group_size):
                return f"K={k} does not take group_size={group_size}"
        if H % 8 or two_i % 8:
            return "hidden and intermediate sizes must be multiples of 8 (int4 words)"
        return None

    @classmethod
    def from_float(cls, experts: nn.Module, group_size: Optional[int] = 32) -> "GroupedExpertsW4A8":
        gu, dn = experts.gate_up_proj, experts.down_proj
        E, two_i, H = gu.shape
        mod = cls(E, H, two_i // 2, group_size=group_size, device="meta")
        q13, s13 = _quant_int4_groups(gu, group_size or H)
        q2, s2 = _quant_int4_groups(dn, group_size or two_i // 2)
        # int32 words of 8 nibbles along N, LSB first: torch_npu's int4, packed by its own op
        mod.w13, mod.w13_scale = npu_convert_weight_to_int4pack(q13.to(torch.int32)), s13
        mod.w2, mod.w2_scale = npu_convert_weight_to_int4pack(q2.to(torch.int32)), s2
        mod.pack_weights()
        return mod

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        self._check(hidden_states, top_k_index, top_k_weights)
        dtype = hidden_states.dtype
        out_dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
        tokens, top_k = top_k_index.shape
        xq, row_idx, counts, pts = ops_moe.npu_moe_init_routing_v2(
            hidden_states, top_k_index.to(torch.int32), active_num=tokens * top_k, expert_num=self.num_experts,
            expert_tokens_num_type=1, expert_tokens_num_flag=True, quant_mode=1)
        h = ops_moe.npu_grouped_matmul([xq], [self.w13], scale=[self.w13_scale], per_token_scale=[pts],
                                       group_list=counts, split_item=3, group_type=0, group_list_type=1,
                                       output_dtype=out_dtype)[0]
        hq, hs = ops_moe.npu_dequant_swiglu_quant(h, activate_left=True, quant_mode=1)
        y = ops_moe.npu_grouped_matmul([hq], [self.w2], scale=[self.w2_scale], per_token_scale=[hs],
                                       group_list=counts, split_item=3, group_type=0, group_list_type=1,
                                       output_dtype=out_dtype)[0]
        return ops_moe.npu_moe_token_unpermute(y, row_idx, top_k_weights.to(torch.float32)).to(dtype)


class PerExpertLoopA8W8(_GroupedExpertsBase):
    """The comparison point: per expert, dense ``LinearA8W8Dynamic`` gate_up / down layers, called in a
    Python loop over the hit experts (transformers' float forward with quantized layers)."""

    def __init__(self, experts: nn.Module) -> None:
        from ..contrib.module import LinearA8W8Dynamic

        gu, dn = experts.gate_up_proj, experts.down_proj
        E, two_i, H = gu.shape
        super().__init__(E, H, two_i // 2)
        ups, downs = [], []
        for e in range(E):
            lin_gu = nn.Linear(H, two_i, bias=False, device="meta")
            lin_gu.weight = nn.Parameter(gu[e].detach(), False)
            lin_dn = nn.Linear(two_i // 2, H, bias=False, device="meta")
            lin_dn.weight = nn.Parameter(dn[e].detach(), False)
            ups.append(LinearA8W8Dynamic.from_float(lin_gu))
            downs.append(LinearA8W8Dynamic.from_float(lin_dn))
        self.gate_up = nn.ModuleList(ups)
        self.down = nn.ModuleList(downs)

    def forward(self, hidden_states, top_k_index, top_k_weights):
        out = torch.zeros_like(hidden_states)
        idx = top_k_index.cpu()
        for e in torch.unique(idx).tolist():
            tok, pos = torch.where(idx == e)
            tok_d, pos_d = tok.to(hidden_states.device), pos.to(hidden_states.device)
            gate, up = self.gate_up[e](hidden_states[tok_d]).chunk(2, dim=-1)
            h = self.down[e](nn.functional.silu(gate) * up)
            out.index_add_(0, tok_d, (h * top_k_weights[tok_d, pos_d, None]).to(out.dtype))
        return out


def quantize_moe_experts(model: nn.Module, config, device=None, filter_fn=None) -> list:
    """Replaces every transformers-style expert block of ``model`` per ``config`` (A8W8DynamicConfig ->
    GroupedExpertsA8W8, W4A8DynamicConfig -> GroupedExpertsW4A8, per-channel A16W8Config ->
    GroupedExpertsA16W8); returns the names replaced. Blocks whose
    activation is not SiLU, and configs without a grouped form, are left alone."""
    from .configs import A8W8DynamicConfig, A16W8Config, W4A8DynamicConfig

    if type(config) is A8W8DynamicConfig:
        convert = GroupedExpertsA8W8.from_float
    elif type(config) is W4A8DynamicConfig:
        convert = lambda m: GroupedExpertsW4A8.from_float(m, group_size=config.group_size)  # noqa: E731
    elif type(config) is A16W8Config and not config.group_size:
        convert = lambda m: GroupedExpertsA16W8.from_float(m, dtype=config.dtype)  # noqa: E731
    else:
        return []
    done = []
    for fqn, mod in list(model.named_modules()):
        if fqn and is_moe_experts(mod) and _act_is_silu(mod) and (filter_fn is None or filter_fn(mod, fqn)):
            if type(config) is W4A8DynamicConfig and GroupedExpertsW4A8.check(mod, config.group_size):
                continue
            with torch.no_grad():
                new = convert(mod)
            model.set_submodule(fqn, new if device is None else new.to(device))
            done.append(fqn)
    return done
