"""Measurements of a causal LM shared by the demo and benchmarks/bench_accuracy.py: perplexity over
fixed token windows, agreement of logits with a reference, timed prefill and greedy decode, and
chat-prompt generation. Models are Hugging Face causal LMs on any device (qdev included)."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


def token_windows(ids: torch.Tensor, window: int, count: int = 0) -> torch.Tensor:
    """(n, window) non-overlapping windows from the start of the 1-D token sequence ``ids`` (all
    that fit when ``count`` is 0)."""
    n = ids.numel() // window
    if n == 0:
        raise ValueError(f"the text has {ids.numel()} tokens, fewer than one window of {window}")
    if count:
        n = min(n, count)
    return ids[: n * window].reshape(n, window)


def text_ids(tokenizer, text: str) -> torch.Tensor:
    """The text's tokens, with the tokenizer's BOS first when it uses one (as llama.cpp does)."""
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", True) and (ids.numel() == 0 or ids[0] != bos):
        ids = torch.cat([torch.tensor([bos]), ids])
    return ids


def _sync(device: torch.device) -> None:
    if device.type == "qdev":
        torch.qdev.synchronize()


@dataclass
class Perplexity:
    ppl: float
    nll: float  # summed negative log-likelihood (nats)
    tokens: int  # predicted tokens
    seconds: float


@torch.inference_mode()
def perplexity(model: nn.Module, windows: torch.Tensor, device: torch.device,
               keep_first_logits: bool = False) -> tuple[Perplexity, Optional[torch.Tensor]]:
    """Perplexity over the windows (each scored on its own: every position but the first predicted),
    and, when asked, the float32 logits of the first window (for agreement with a reference)."""
    nll, count, first = 0.0, 0, None
    t0 = time.perf_counter()
    for i, w in enumerate(windows):
        logits = model(w[None].to(device), use_cache=False).logits[0].float().cpu()
        nll += torch.nn.functional.cross_entropy(logits[:-1], w[1:], reduction="sum").item()
        count += w.numel() - 1
        if i == 0 and keep_first_logits:
            first = logits
        del logits
    _sync(device)
    return Perplexity(math.exp(nll / count), nll, count, time.perf_counter() - t0), first


def agreement(logits: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(mean cosine similarity of the logit vectors, top-1 agreement) against ``ref``."""
    cos = torch.nn.functional.cosine_similarity(logits, ref, dim=-1).mean().item()
    top1 = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
    return cos, top1


@dataclass
class Speed:
    prompt_len: int
    prefill_s: float
    decode_steps: int
    decode_step_s: float  # median

    @property
    def prefill_tps(self) -> float:
        return self.prompt_len / self.prefill_s

    @property
    def decode_tps(self) -> float:
        return 1.0 / self.decode_step_s if self.decode_steps else float("nan")


@torch.inference_mode()
def time_generation(model: nn.Module, prompt: torch.Tensor, steps: int, device: torch.device,
                    rounds: int = 2) -> Speed:
    """Prefill of ``prompt`` (1-D; logits of the last position, as generation does; the fastest of
    ``rounds``), then ``steps`` greedy decode steps each timed alone (the median)."""
    ids = prompt[None].to(device)
    model(ids[:, :8], use_cache=False, logits_to_keep=1)  # first-call costs
    best, step_times = float("inf"), []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        out = model(ids, use_cache=True, logits_to_keep=1)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    past = out.past_key_values
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model(tok, past_key_values=past, use_cache=True)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        _sync(device)
        step_times.append(time.perf_counter() - t0)
    return Speed(ids.shape[1], best, steps, statistics.median(step_times) if step_times else float("nan"))


def chat_prompt_ids(tokenizer, prompt: str) -> torch.Tensor:
    """The prompt through the tokenizer's chat template (a base model without one: the plain text)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    return text_ids(tokenizer, prompt)


@torch.inference_mode()
def generate_text(model: nn.Module, tokenizer, prompt_ids: torch.Tensor, new_tokens: int,
                  device: torch.device) -> tuple[str, list]:
    """Greedy continuation of ``prompt_ids`` (stops at an end-of-sequence token): (text, token ids)."""
    stop = set()
    for t in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        stop.update(t if isinstance(t, (list, tuple)) else [t] if t is not None else [])
    out = model(prompt_ids[None].to(device), use_cache=True, logits_to_keep=1)
    tokens = []
    for _ in range(new_tokens):
        tok = int(out.logits[0, -1].argmax())
        if tok in stop:
            break
        tokens.append(tok)
        out = model(torch.tensor([[tok]], device=device), past_key_values=out.past_key_values, use_cache=True)
    return tokenizer.decode(tokens, skip_special_tokens=True), tokens
