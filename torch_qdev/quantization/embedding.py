"""QuantizedEmbedding: an nn.Embedding with int8 rows (one scale per row)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..contrib.module.linear_a8w8_dynamic import quantize_int8_symmetric


class QuantizedEmbedding(nn.Module):
    """Symmetric int8 per row (scale = absmax / 127); a lookup dequantizes only the rows it reads.

    The output dtype is the dtype of ``scale`` (the float embedding's dtype; it follows
    ``model.to(dtype)``). An ``embed_scale`` of the replaced module (Gemma's scaled word
    embedding) is kept and applied, as that module did.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: Optional[int] = None,
                 device=None) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8, device=device))
        self.register_buffer("scale", torch.ones(num_embeddings, 1, device=device))
        self.register_buffer("embed_scale", None, persistent=False)

    @classmethod
    def from_float(cls, emb: nn.Embedding) -> "QuantizedEmbedding":
        w = emb.weight.detach().float()
        mod = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx, device=w.device)
        q, scale = quantize_int8_symmetric(w)
        mod.weight_int8.copy_(q)
        mod.scale = scale[:, None].to(emb.weight.dtype)  # the output dtype follows the model's
        embed_scale = getattr(emb, "embed_scale", None)
        if isinstance(embed_scale, torch.Tensor):
            mod.register_buffer("embed_scale", embed_scale.detach().clone(), persistent=False)
        elif embed_scale is not None:
            mod.register_buffer("embed_scale", torch.tensor(float(embed_scale)), persistent=False)
        return mod

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        dtype = self.scale.dtype
        out = F.embedding(idx, self.weight_int8).to(dtype) * F.embedding(idx, self.scale)
        if self.embed_scale is not None:
            out = out * self.embed_scale.to(dtype)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per row"
