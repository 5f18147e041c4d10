"""Tensor-parallel quantized Llama on qdev (``python3 run.py demo --tp N``).

Starts N processes with torchrun on 127.0.0.1 (one qdev device each, the ``qccl`` backend over
gloo). Every rank builds the same random-weight Llama, splits its decoder layers with
:func:`torch_qdev.distributed.llama.parallelize_llama_` (attention heads and MLP channels over
the ranks, quantized shards) and generates greedily. Rank 0 also runs the model quantized on
one device, checks that both produce the same tokens, and prints tokens/s for both.

Across machines the same code runs under torchrun with a TCP rendezvous, e.g. on each of two
hosts (one rank per host; ``GLOO_SOCKET_IFNAME`` names the interface to use)::

    torchrun --nnodes 2 --node-rank <0|1> --nproc-per-node 1 \\
        --rdzv-backend c10d --rdzv-endpoint <host0>:29500 -m torch_qdev.demo_tp --model tiny
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Optional

import torch

MODELS = {
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=4096, tie_word_embeddings=True),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True, rope_theta=500000.0),
}
CONFIGS = ("a8w8", "w4a8", "a16w8", "a16w4", "none")


def build_model(size: str, layers: Optional[int], seed: int, std: Optional[float] = None):
    """A random-weight LlamaForCausalLM, the same on every rank (seeded CPU generator); weights
    ~ N(0, std), by default Llama's initializer_range (0.02)."""
    from .demo import random_llama

    dims = dict(MODELS[size])
    if layers:
        dims["num_hidden_layers"] = layers
    return random_llama(dims, seed, std)


def quant_config(name: str):
    from torch_qdev.quantization import A8W8DynamicConfig, A16W4Config, A16W8Config, W4A8DynamicConfig

    return {"a8w8": A8W8DynamicConfig(), "w4a8": W4A8DynamicConfig(group_size=32), "a16w8": A16W8Config(),
            "a16w4": A16W4Config(group_size=128), "none": None}[name]


def model_dtype(name: str) -> torch.dtype:
    # W4A8 reads float32 activations (PyTorch's dynamic 4-bit path); the others run in bfloat16.
    return torch.float32 if name in ("w4a8", "none") else torch.bfloat16


@torch.no_grad()
def generate(model, prompt: torch.Tensor, new_tokens: int) -> tuple[list[int], float, list[float]]:
    """Greedy decoding with a KV cache: (tokens, prefill seconds, per-step decode seconds)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    t0 = time.perf_counter()
    out = model(input_ids=prompt, past_key_values=cache, use_cache=True)
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    prefill = time.perf_counter() - t0
    tokens, steps = [int(tok)], []
    for _ in range(new_tokens - 1):
        t0 = time.perf_counter()
        out = model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(int(tok))
        steps.append(time.perf_counter() - t0)
    return tokens, prefill, steps


def run_rank(args) -> int:
    import torch.distributed as dist

    import torch_qdev  # noqa: F401
    from torch_qdev.distributed.llama import parallelize_llama_
    from torch_qdev.quantization import quantize_

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.qdev.set_device(local_rank % torch.qdev.device_count())
    if args.threads:
        torch.set_num_threads(args.threads)
    dist.init_process_group("qccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("qdev", torch.qdev.current_device())
    config, dtype = quant_config(args.config), model_dtype(args.config)
    warnings.filterwarnings("ignore", category=UserWarning)

    base = build_model(args.model, args.layers, args.seed, args.init_std).to(dtype)
    prompt = torch.randint(0, base.config.vocab_size, (1, args.prompt_len),
                           generator=torch.Generator().manual_seed(args.seed + 1)).to(device)
    reference = None
    if rank == 0 and args.check:
        import copy

        one = copy.deepcopy(base)
        if config is None:
            one.to(device)
        else:
            quantize_(one, config, device=device)
        generate(one, prompt, 2)  # warm-up
        reference = generate(one, prompt, args.new_tokens)
        del one

    tp = parallelize_llama_(base, config, device=device)
    generate(tp, prompt, 2)  # warm-up
    dist.barrier()
    tokens, prefill, steps = generate(tp, prompt, args.new_tokens)

    if rank == 0:
        decode = statistics.median(steps) if steps else float("nan")
        print(f"Llama {args.model} ({base.config.num_hidden_layers} layers, hidden {base.config.hidden_size}), "
              f"{args.config}, {world} ranks over qccl (gloo on 127.0.0.1), {torch.get_num_threads()} threads/rank")
        print(f"  tp={world}:  prefill {args.prompt_len / prefill:8.1f} tok/s   decode {1 / decode:7.1f} tok/s")
        ok = True
        if reference is not None:
            ref_tokens, ref_prefill, ref_steps = reference
            ref_decode = statistics.median(ref_steps) if ref_steps else float("nan")
            print(f"  1 device: prefill {args.prompt_len / ref_prefill:8.1f} tok/s   decode {1 / ref_decode:7.1f} tok/s")
            ok = ref_tokens == tokens
            print(f"  tokens tp={world}:  {tokens}")
            print(f"  tokens 1 device: {ref_tokens}")
            print("  same greedy tokens as one device: " + ("yes" if ok else "NO"))
        sys.stdout.flush()
    ok_t = torch.tensor([1 if rank != 0 or reference is None or reference[0] == tokens else 0])
    dist.broadcast(ok_t, 0)
    dist.destroy_process_group()
    return 0 if int(ok_t) else 1


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tp", type=int, default=2, help="tensor-parallel ranks to launch (default 2)")
    p.add_argument("--model", choices=sorted(MODELS), default="tiny", help="Llama dimensions (default tiny)")
    p.add_argument("--layers", type=int, default=None, help="decoder layers (default: the model's)")
    p.add_argument("--config", choices=CONFIGS, default="a8w8", help="torch_qdev quantization config (default a8w8)")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-std", type=float, default=0.1,
                   help="std of the random weights (default 0.1: with Llama's 0.02 a random model repeats one token)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: cores / ranks)")
    p.add_argument("--port", type=int, default=29517, help="rendezvous port on 127.0.0.1")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="rank 0 also runs one device and compares the tokens (default: on)")
    return p.parse_args(argv)


def launch(argv: list[str]) -> int:
    """Starts ``--tp`` ranks of this module under torchrun on 127.0.0.1."""
    args = parse(argv)
    if args.tp < 1:
        raise SystemExit("--tp must be at least 1")
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    env.setdefault("QDEV_DEVICE_COUNT", str(max(args.tp, 2)))
    rest, skip = [], False  # argv without "--tp N" / "--tp=N"
    for a in argv:
        if skip or a.startswith("--tp="):
            skip = False
            continue
        if a == "--tp":
            skip = True
            continue
        rest.append(a)
    if args.threads is None:
        rest += ["--threads", str(max(1, (os.cpu_count() or 1) // args.tp))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(args.tp),
           "--master-addr", "127.0.0.1", "--master-port", str(args.port), "-m", "torch_qdev.demo_tp", *rest]
    return subprocess.call(cmd, env=env)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun
        return run_rank(parse(argv))
    return launch(argv)


if __name__ == "__main__":
    raise SystemExit(main())
