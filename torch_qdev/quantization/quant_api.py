"""quantize_: swap a model's nn.Linear layers for quantized qdev layers, in place."""
from __future__ import annotations

import dataclasses
import sys
import warnings
from collections import Counter
from typing import Callable, Dict, Iterable, Optional, Union

import torch
from torch import nn

from .configs import QuantConfig

FilterFn = Callable[[nn.Module, str], bool]


def _is_float_linear(module: nn.Module, fqn: str) -> bool:
    return type(module) is nn.Linear and module.weight.is_floating_point()


def quantized_linear(linear: nn.Linear, config: QuantConfig) -> nn.Module:
    """One ``nn.Linear`` quantized with ``config`` (on the linear's device); raises if the
    layer's shape does not suit the config."""
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config should be a torch_qdev.quantization config, but it is {type(config).__name__}")
    reason = config.check(linear)
    if reason is not None:
        raise ValueError(f"{config.name} cannot quantize {linear}: {reason}")
    with torch.no_grad():
        return config.convert(linear)


def _fit_group(config: QuantConfig, linear: nn.Linear) -> tuple[QuantConfig, Optional[str]]:
    """``config``, or the same config with the largest smaller group size (multiples of 32) that
    ``linear`` takes when its own does not divide the layer (576 = 18 x 32 under g128 -> g96), so
    that a group size never leaves a layer silently float. The note says what changed. Candidates
    start at the layer's in_features, so a huge group size costs no more than a small one."""
    g = getattr(config, "group_size", None)
    if not g or config.check(linear) is None or not dataclasses.is_dataclass(config):
        return config, None
    for smaller in range(min(g - 32, linear.in_features) // 32 * 32, 31, -32):
        fitted = dataclasses.replace(config, group_size=smaller)
        if fitted.check(linear) is None:
            return fitted, f"g{smaller} instead of g{g}"
    return config, None


def _float_dtype(model: nn.Module, exclude: set) -> Optional[torch.dtype]:
    """The dtype most of ``model``'s floating parameters outside ``exclude`` have (what the
    activations reaching a layer left float will be), or None when there are none."""
    counts = Counter(p.dtype for n, p in model.named_parameters()
                     if p.is_floating_point() and n.rsplit(".", 1)[0] not in exclude)
    return counts.most_common(1)[0][0] if counts else None


def _cast_linear(linear: nn.Linear, dtype: torch.dtype) -> nn.Linear:
    """A new Linear in ``dtype`` (never ``linear.to``: its parameters may be shared with another model)."""
    w = linear.weight
    cast = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None, device=w.device,
                     dtype=dtype)
    with torch.no_grad():
        cast.weight.copy_(w)
        if linear.bias is not None:
            cast.bias.copy_(linear.bias)
    cast.requires_grad_(w.requires_grad)
    return cast


def _progress(items: list, enabled: Optional[bool], desc: str):
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: quantize silently without it
        return items
    return tqdm(items, desc=desc, unit="layer", leave=False)


def _output_head(model: nn.Module) -> Optional[nn.Module]:
    """The model's output projection (lm_head), if it has one we can recognise."""
    get = getattr(model, "get_output_embeddings", None)
    if callable(get):
        try:
            head = get()
        except (NotImplementedError, AttributeError):
            head = None
        if isinstance(head, nn.Linear):
            return head
    for fqn, m in model.named_modules():
        if isinstance(m, nn.Linear) and fqn.split(".")[-1] in ("lm_head", "output"):
            return m
    return None


def _input_embeddings(model: nn.Module) -> list:
    """(fqn, module) of the model's input token embeddings."""
    get = getattr(model, "get_input_embeddings", None)
    emb = None
    if callable(get):
        try:
            emb = get()
        except (NotImplementedError, AttributeError):
            emb = None
    return [(fqn, m) for fqn, m in model.named_modules() if m is emb and isinstance(m, nn.Embedding)]


def quantize_(model: nn.Module, config: QuantConfig, filter_fn: Optional[FilterFn] = None,
              device: Union[str, torch.device, None] = None, progress: Optional[bool] = None,
              calibration: Optional[Iterable] = None) -> nn.Module:
    """Quantizes ``model`` in place, torchao style, and returns it.

    Args:
        model: any module; its ``nn.Linear`` layers (or those ``filter_fn`` selects) are replaced, and
            transformers MoE expert blocks (3-D ``gate_up_proj``/``down_proj``) become grouped quantized
            experts on torch_npu's fused MoE path (A8W8DynamicConfig, W4A8DynamicConfig, per-channel
            A16W8Config; see ``torch_qdev.quantization.moe``); ``filter_fn`` sees those blocks too.
        config: ``A8W8DynamicConfig()``, ``W4A8DynamicConfig(group_size=32)``, ``A16W8Config()``
            or ``A16W4Config(group_size=128)``.
        filter_fn: ``filter_fn(module, fqn) -> bool`` chooses the layers; by default every float
            ``nn.Linear``. A layer whose in_features the config's group size does not divide
            takes the largest smaller group that does (a multiple of 32; one warning says
            which). Layers no group fits stay float, cast to the dtype of the model's other
            float parameters (so a bf16 model stays runnable), with one warning naming them.
        device: where the model ends up (e.g. ``"qdev"``): each layer is quantized where its
            weights are, then moved, so float weights never need to fit on the device twice;
            the remaining float parameters follow at the end. None keeps every tensor where it is.
        progress: show a progress bar over layers (default: when stderr is a terminal).
        calibration: optional sample inputs (an iterable of batches: token-id tensors, tuples of
            positional arguments or dicts of keyword arguments for ``model``). The float model runs
            on them once; each layer's mean squared input per channel then weights the 4-bit
            configs' scale search (llama.cpp's imatrix), and with ``config.awq`` an
            activation-aware input scale per layer is searched (AWQ).

    The 4-bit configs' defaults also quantize the output head (``get_output_embeddings()`` or a
    Linear named ``lm_head``/``output``, tied or not) with ``config.head_config()`` (8 bits) and the
    input embeddings to int8 (``config.embedding_bits``).

    The A16 configs keep activations in 16 bits: run the model in ``config.dtype``
    (``model.to(torch.bfloat16)``). ``state_dict()`` of the result holds the quantized
    tensors; load it into a model quantized with the same config.
    """
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config should be a torch_qdev.quantization config, but it is {type(config).__name__}")
    from .moe import quantize_moe_experts  # MoE expert blocks -> grouped quantized experts

    quantize_moe_experts(model, config, device, filter_fn)
    select = filter_fn or _is_float_linear
    targets = [(fqn, m) for fqn, m in model.named_modules() if isinstance(m, nn.Linear) and select(m, fqn)]
    if isinstance(model, nn.Linear) and targets and targets[0][0] == "":
        raise ValueError("quantize_ replaces layers inside a model; for a lone nn.Linear use quantized_linear()")
    head = _output_head(model)
    head_cfg = config.head_config()
    stats: Dict[str, "_calibration.LayerStats"] = {}
    if calibration is not None:
        from . import _calibration

        stats = _calibration.collect(model, [(f, m) for f, m in targets if m is not head], calibration)
    skipped, refitted = [], {}
    float_dtype = _float_dtype(model, {fqn for fqn, _ in targets})
    for fqn, linear in _progress(targets, progress, f"quantize_ {config.name}"):
        cfg = head_cfg if linear is head else config
        if cfg is None:
            continue
        layer_config, note = _fit_group(cfg, linear)
        reason = layer_config.check(linear)
        if reason is not None:
            if float_dtype is not None and linear.weight.dtype != float_dtype:
                model.set_submodule(fqn, _cast_linear(linear, float_dtype))
                reason += f"; cast to {float_dtype}"
            skipped.append(f"{fqn} ({reason})")
            continue
        if note is not None:
            refitted.setdefault(note, []).append(fqn)
        with torch.no_grad():
            st = stats.get(fqn)
            if st is not None and cfg is config:
                from . import _calibration

                new = _calibration.convert_calibrated(layer_config, linear, st)
            else:
                new = layer_config.convert(linear)
        model.set_submodule(fqn, new if device is None else new.to(device))
    for note, fqns in refitted.items():
        warnings.warn(f"quantize_ ({config.name}): {len(fqns)} layer(s) whose in_features the group size does not "
                      f"divide use {note}: " + ", ".join(fqns), stacklevel=2)
    if getattr(config, "embedding_bits", None) == 8 and filter_fn is None:
        from .embedding import QuantizedEmbedding

        for fqn, emb in _input_embeddings(model):
            with torch.no_grad():
                new = QuantizedEmbedding.from_float(emb)
            model.set_submodule(fqn, new if device is None else new.to(device))
    if skipped:
        warnings.warn(f"quantize_ ({config.name}) kept {len(skipped)} layer(s) in float: " + ", ".join(skipped),
                      stacklevel=2)
    if device is not None:
        model.to(device)
    return model
