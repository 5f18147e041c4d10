"""llama.cpp side of bench_e2e.py, run by the llama-cpp-python venv's interpreter (never imports torch).

  python _llama_cpp_run.py quantize IN.gguf OUT.gguf FTYPE        (Q8_0, Q4_0, Q4_1, Q4_K_M)
  python _llama_cpp_run.py time MODEL.gguf PROMPT_LEN NEW THREADS ROUNDS

`time` prints one JSON line: prefill and decode tok/s per round (the prompt as one batch, n_batch 512,
then one llama_decode per greedy token), the bytes a decode step reads from weights (tensor bytes;
token_embd only when it doubles as the output matrix), and the KV-cache element size.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time


def quantize(src: str, dst: str, ftype: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({src} -> {ftype}) failed: {rc}")


def weight_bytes(path: str) -> int:
    from gguf import GGUFReader

    r = GGUFReader(path)
    names = {t.name: int(t.n_bytes) for t in r.tensors}
    total = sum(b for n, b in names.items() if not n.endswith("norm.weight"))
    if "output.weight" in names:  # untied: the embedding is read one row per token
        total -= names.get("token_embd.weight", 0)
    return total


def time_model(path: str, prompt_len: int, new: int, threads: int, rounds: int) -> dict:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=prompt_len + new + 8, n_batch=512, n_ubatch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    rng = np.random.default_rng(0)
    n_vocab = llm.n_vocab()
    prompt = [int(t) for t in rng.integers(10, min(n_vocab, 30000), prompt_len)]
    pre, dec, tokens = [], [], []
    for _ in range(rounds + 1):  # the first round warms up (page cache, thread pool)
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        out = []
        steps = []
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        for _ in range(new - 1):
            t = time.perf_counter()
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            steps.append(time.perf_counter() - t)
            out.append(tok)
        pre.append(prompt_len / (t1 - t0))
        dec.append(1.0 / statistics.median(steps))
        tokens = out
    return {"prefill_tps": pre[1:], "decode_tps": dec[1:], "weight_bytes": weight_bytes(path),
            "file_bytes": os.path.getsize(path), "kv_elem_bytes": 2, "tokens": tokens}


def main() -> None:
    cmd = sys.argv[1]
    if cmd == "quantize":
        quantize(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "time":
        path, p, n, th, r = sys.argv[2], *map(int, sys.argv[3:7])
        print(json.dumps(time_model(path, p, n, th, r)))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
