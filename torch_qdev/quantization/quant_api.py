"""quantize_: swap a model's nn.Linear layers for quantized qdev layers, in place."""
from __future__ import annotations

import sys
import warnings
from typing import Callable, Optional, Union

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


def _progress(items: list, enabled: Optional[bool], desc: str):
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: quantize silently without it
        return items
    return tqdm(items, desc=desc, unit="layer", leave=False)


def quantize_(model: nn.Module, config: QuantConfig, filter_fn: Optional[FilterFn] = None,
              device: Union[str, torch.device, None] = None, progress: Optional[bool] = None) -> nn.Module:
    """Quantizes ``model`` in place, torchao style, and returns it.

    Args:
        model: any module; its ``nn.Linear`` layers (or those ``filter_fn`` selects) are replaced, and
            transformers MoE expert blocks (3-D ``gate_up_proj``/``down_proj``) become grouped quantized
            experts on torch_npu's fused MoE path (A8W8DynamicConfig, W4A8DynamicConfig, per-channel
            A16W8Config; see ``torch_qdev.quantization.moe``); ``filter_fn`` sees those blocks too.
        config: ``A8W8DynamicConfig()``, ``W4A8DynamicConfig(group_size=32)``, ``A16W8Config()``
            or ``A16W4Config(group_size=128)``.
        filter_fn: ``filter_fn(module, fqn) -> bool`` chooses the layers; by default every float
            ``nn.Linear``. Layers whose shape the config cannot take (e.g. in_features not a
            multiple of the group) stay float, with one warning naming them.
        device: where the model ends up (e.g. ``"qdev"``): each layer is quantized where its
            weights are, then moved, so float weights never need to fit on the device twice;
            the remaining float parameters follow at the end. None keeps every tensor where it is.
        progress: show a progress bar over layers (default: when stderr is a terminal).

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
    skipped = []
    for fqn, linear in _progress(targets, progress, f"quantize_ {config.name}"):
        reason = config.check(linear)
        if reason is not None:
            skipped.append(f"{fqn} ({reason})")
            continue
        with torch.no_grad():
            new = config.convert(linear)
        model.set_submodule(fqn, new if device is None else new.to(device))
    if skipped:
        warnings.warn(f"quantize_ ({config.name}) kept {len(skipped)} layer(s) in float: " + ", ".join(skipped),
                      stacklevel=2)
    if device is not None:
        model.to(device)
    return model
