"""Tensor parallelism for Hugging Face Llama (``LlamaForCausalLM``) with quantized layers.

The Megatron split: q/k/v and gate/up projections by output features (each rank keeps
``heads / world`` attention heads and ``intermediate / world`` MLP channels), o_proj and
down_proj by input features, so one decoder layer needs two collectives per row layer and
nothing else. Embeddings, norms and lm_head stay whole on every rank. With the layers of
:mod:`torch_qdev.distributed.tensor_parallel` the result is bit-identical to
``quantize_(model, config)`` on one device.
"""
from __future__ import annotations

import warnings
from typing import Optional

from torch import nn

from ..quantization import quantize_
from ..quantization.configs import QuantConfig
from .tensor_parallel import ColwiseQuantLinear, RowwiseQuantLinear, _rank_world

COLWISE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
ROWWISE = ("self_attn.o_proj", "mlp.down_proj")


def llama_tp_plan() -> dict[str, str]:
    """The plan per decoder layer, as names of the submodules and their split."""
    return {**{n: "colwise" for n in COLWISE}, **{n: "rowwise" for n in ROWWISE}}


def parallelize_llama_(model: nn.Module, config: Optional[QuantConfig], group=None, device=None) -> nn.Module:
    """Splits ``model``'s decoder layers over ``group`` and quantizes them with ``config``, in place;
    the remaining ``nn.Linear`` layers (lm_head) are quantized whole with ``quantize_``.

    Every rank must pass the same model (same weights): each cuts its own shards from it.
    """
    rank, world = _rank_world(group)
    cfg = model.config
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    if cfg.num_attention_heads % world or kv_heads % world:
        raise ValueError(f"tensor parallel Llama: {cfg.num_attention_heads} attention heads and {kv_heads} "
                         f"key/value heads must split evenly over {world} ranks")
    for layer in model.model.layers:
        for name in COLWISE:
            layer.set_submodule(name, ColwiseQuantLinear(layer.get_submodule(name), config, group, device=device))
        for name in ROWWISE:
            layer.set_submodule(name, RowwiseQuantLinear(layer.get_submodule(name), config, group, device=device))
    if config is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            quantize_(model, config, device=device)
    elif device is not None:
        model.to(device)
    return model
