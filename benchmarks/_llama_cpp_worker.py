"""Runs inside the llama-cpp-python venv (started by bench_accuracy.py; needs only numpy and
llama_cpp): quantizes an F32 GGUF with llama.cpp's own quantizer and scores token windows.

    python _llama_cpp_worker.py quantize IN.gguf OUT.gguf Q4_0|Q4_K_M|Q8_0 THREADS
    python _llama_cpp_worker.py ppl MODEL.gguf WINDOWS.npy THREADS OUT.json

``ppl`` writes {"nll": summed negative log-likelihood, "tokens": predicted tokens, "seconds": ...}
with each window evaluated from an empty KV cache, every position but the first predicted (the
same scoring bench_accuracy.py applies to torch_qdev's models).
"""
import json
import sys
import time

import numpy as np


def quantize(src: str, dst: str, ftype: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize({ftype}) failed with {rc}")


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def perplexity(model: str, windows_path: str, threads: int, out: str) -> None:
    import llama_cpp

    windows = np.load(windows_path)
    n = windows.shape[1]
    llm = llama_cpp.Llama(model_path=model, n_ctx=n, n_batch=n, n_ubatch=n, n_threads=threads,
                          n_threads_batch=threads, logits_all=True, verbose=False)
    nll, count = 0.0, 0
    t0 = time.perf_counter()
    for w in windows:
        llm.reset()
        llm.eval([int(t) for t in w])
        logp = log_softmax(np.asarray(llm.scores[:n], dtype=np.float64))
        nll -= float(logp[np.arange(n - 1), w[1:]].sum())
        count += n - 1
    with open(out, "w") as f:
        json.dump({"nll": nll, "tokens": count, "seconds": time.perf_counter() - t0,
                   "system_info": llama_cpp.llama_print_system_info().decode()}, f)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "quantize":
        quantize(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "ppl":
        perplexity(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(__doc__)
