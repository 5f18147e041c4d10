"""Function-preserving weight transforms for Llama-architecture models (QuaRot-style).

``remove_weight_grid(model)`` folds every RMSNorm gain into the Linear layers that read the
normalised stream and rotates the residual stream by a random orthogonal matrix R. The model
computes the same function (same logits up to float rounding, same perplexity), but no weight sits
on the grid of the quantized file it was loaded from (a GGUF model dequantized to float keeps its
4-bit grid exactly, which flatters any 4-bit recipe re-quantizing it).

Why the function is unchanged: with unit gains RMSNorm(x R) = RMSNorm(x) R for orthogonal R (it
only divides by the root mean square, which R preserves). So if every writer into the residual
stream (the embedding, o_proj, down_proj) emits ``y R`` and every reader (q/k/v, gate/up, lm_head)
takes ``W R`` instead of ``W``, each reader sees ``x R (W R)^T = x W^T``.

Only architectures whose norms sit right before the Linear layers that read them qualify
(Llama, Mistral, Qwen2 layouts: ``input_layernorm`` -> q/k/v, ``post_attention_layernorm`` ->
gate/up, ``model.norm`` -> lm_head). Gemma-3 normalises the attention and MLP *outputs* too,
which no rotation of the residual stream survives; it is refused.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["fold_rmsnorm_gains", "rotate_residual", "remove_weight_grid", "random_orthogonal"]


def _llama_parts(model: nn.Module):
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    head = getattr(model, "lm_head", None)
    if inner is None or layers is None or not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__} is not a Llama-layout causal LM (model.layers + lm_head)")
    for i, layer in enumerate(layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        names = {n for n, _ in layer.named_children()}
        if (attn is None or mlp is None or not {"input_layernorm", "post_attention_layernorm"} <= names
                or names - {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}
                or not all(isinstance(getattr(attn, p, None), nn.Linear) for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
                or not all(isinstance(getattr(mlp, p, None), nn.Linear) for p in ("gate_proj", "up_proj", "down_proj"))):
            raise TypeError(f"layer {i} of {type(model).__name__} is not a Llama decoder layer (norms only before "
                            f"attention and MLP); its residual stream cannot be rotated without changing the function")
        if any(n for n, _ in attn.named_children() if n.endswith("_norm")):
            raise TypeError(f"layer {i} of {type(model).__name__} normalises q/k (q_norm/k_norm): not supported")
    return inner, layers, head


def _norm_gain(norm: nn.Module) -> torch.Tensor:
    w = getattr(norm, "weight", None)
    if w is None or getattr(norm, "bias", None) is not None:
        raise TypeError(f"{type(norm).__name__} is not an RMSNorm with a gain (and no bias)")
    if "gemma" in type(norm).__name__.lower():  # (1 + w) gains
        raise TypeError(f"{type(norm).__name__} uses (1 + weight) gains: not supported")
    return w


def _untie_head(model: nn.Module, inner: nn.Module, head: nn.Linear) -> None:
    """The head gets its own weight: after folding/rotation it differs from the embedding."""
    emb = inner.embed_tokens.weight
    if head.weight is emb or head.weight.data_ptr() == emb.data_ptr():
        head.weight = nn.Parameter(emb.detach().clone(), requires_grad=emb.requires_grad)
    if getattr(model, "config", None) is not None and getattr(model.config, "tie_word_embeddings", False):
        model.config.tie_word_embeddings = False
    if hasattr(model, "_tied_weights_keys"):
        model._tied_weights_keys = None if isinstance(model._tied_weights_keys, list) else {}


@torch.no_grad()
def fold_rmsnorm_gains(model: nn.Module) -> nn.Module:
    """Multiplies each RMSNorm gain into the input columns of the Linear layers reading that norm's
    output and sets the gain to 1. In place; unties a tied output head. Returns ``model``."""
    inner, layers, head = _llama_parts(model)
    _untie_head(model, inner, head)

    def fold(norm: nn.Module, readers: list[nn.Linear]) -> None:
        g = _norm_gain(norm)
        for lin in readers:
            lin.weight.copy_((lin.weight.double() * g.double()).to(lin.weight.dtype))
        g.fill_(1.0)

    for layer in layers:
        a, m = layer.self_attn, layer.mlp
        fold(layer.input_layernorm, [a.q_proj, a.k_proj, a.v_proj])
        fold(layer.post_attention_layernorm, [m.gate_proj, m.up_proj])
    fold(inner.norm, [head])
    return model


def random_orthogonal(n: int, seed: int = 0) -> torch.Tensor:
    """A Haar-random n x n orthogonal matrix (float64): QR of a Gaussian, signs fixed."""
    gen = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


@torch.no_grad()
def rotate_residual(model: nn.Module, rotation: Optional[torch.Tensor] = None, seed: int = 0) -> nn.Module:
    """Rotates the residual stream by ``rotation`` (default: ``random_orthogonal(hidden, seed)``).
    Needs unit RMSNorm gains (call ``fold_rmsnorm_gains`` first). In place; returns ``model``."""
    inner, layers, head = _llama_parts(model)
    norms = [inner.norm] + [n for layer in layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    if any(not torch.all(_norm_gain(n) == 1) for n in norms):
        raise ValueError("rotate_residual needs unit RMSNorm gains: call fold_rmsnorm_gains(model) first")
    _untie_head(model, inner, head)
    hidden = inner.embed_tokens.weight.shape[1]
    R = random_orthogonal(hidden, seed) if rotation is None else rotation.detach().to(torch.float64, copy=True)
    if R.shape != (hidden, hidden):
        raise ValueError(f"rotation must be {hidden} x {hidden}, got {tuple(R.shape)}")

    def reader(w: torch.Tensor) -> None:  # (out, hidden) -> W R
        w.copy_((w.double() @ R).to(w.dtype))

    def writer(lin: nn.Linear) -> None:  # (hidden, in) -> R^T W; bias b -> b R
        lin.weight.copy_((R.T @ lin.weight.double()).to(lin.weight.dtype))
        if lin.bias is not None:
            lin.bias.copy_((lin.bias.double() @ R).to(lin.bias.dtype))

    reader(inner.embed_tokens.weight)  # the embedding writes rows x = E[id]: x R = (E R)[id]
    for layer in layers:
        a, m = layer.self_attn, layer.mlp
        for lin in (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj):
            reader(lin.weight)
        writer(a.o_proj)
        writer(m.down_proj)
    reader(head.weight)
    return model


def remove_weight_grid(model: nn.Module, seed: int = 0) -> nn.Module:
    """``fold_rmsnorm_gains`` then ``rotate_residual``: the same function, no weight left on the
    quantization grid the model was stored with. In place; returns ``model``."""
    return rotate_residual(fold_rmsnorm_gains(model), seed=seed)
