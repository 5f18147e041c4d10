"""Attention over a KV cache as one opaque op, and its use from Hugging Face models.

``torch.ops.qdev.decode_attention(q, k, v, attn_mask=None, scale=None, is_causal=False)`` is
``scaled_dot_product_attention`` with grouped-query heads (``q`` heads a multiple of ``k``/``v``
heads): calls with up to 16 queries per head (decode) run qdev's decode kernel, which reads the
cache in place and skips masked positions; others go to SDPA. Being one op with a fake kernel,
``torch.compile`` keeps it whole (an extern call in Inductor's graph) instead of tracing attention
into math.

``use_decode_attention(model)`` makes a Hugging Face model call it: it registers the attention
function (and SDPA's mask builder) under the name ``"qdev_decode"`` and selects it.
"""
from __future__ import annotations

from typing import Optional

import torch

ATTN_IMPLEMENTATION = "qdev_decode"


@torch.library.register_fake("qdev::decode_attention")
def _decode_attention_fake(query, key, value, attn_mask=None, scale=None, is_causal=False):
    torch._check(query.dim() == 4 and key.dim() == 4 and value.dim() == 4,
                 lambda: "decode_attention: query, key and value must be 4-D")
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attn_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
                     is_causal: bool = False) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v, (B, H, L, D) x (B, Hkv, S, D) -> (B, H, L, Dv); bool masks
    mark the positions to attend, float masks are added."""
    return torch.ops.qdev.decode_attention(query, key, value, attn_mask, scale, is_causal)


def _hf_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                  is_causal=None, **kwargs):
    """Hugging Face attention function (the signature of its sdpa_attention_forward)."""
    if dropout and module.training:
        raise RuntimeError("qdev_decode attention is for inference: dropout is not supported")
    q_len = query.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]]
    out = torch.ops.qdev.decode_attention(query, key, value, attention_mask, scaling, causal)
    return out.transpose(1, 2).contiguous(), None


def register_hf_attention() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, _hf_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    return ATTN_IMPLEMENTATION


def use_decode_attention(model) -> None:
    """Selects qdev's decode attention for a Hugging Face model (prefill calls go on to SDPA)."""
    name = register_hf_attention()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name
