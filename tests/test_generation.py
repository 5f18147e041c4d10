"""torch_qdev.generation (greedy decode over Hugging Face's static cache, eager or compiled) and
torch_qdev.profiling (the per-op decode table) on a tiny quantized Llama on qdev."""
from __future__ import annotations

import warnings

import pytest
import torch

import torch_qdev  # noqa: F401

transformers = pytest.importorskip("transformers", reason="generation drives Hugging Face models")


def _tiny_model(config):
    from transformers import LlamaConfig, LlamaForCausalLM

    from torch_qdev.quantization import quantize_

    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512, max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval().to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(model, config, device="qdev", progress=False)
    return model.to("qdev")


@pytest.fixture(scope="module")
def a8w8_model():
    from torch_qdev.quantization import A8W8DynamicConfig

    return _tiny_model(A8W8DynamicConfig())


def _hf_greedy(model, ids, n):
    """Hugging Face's own greedy loop with its dynamic cache and SDPA (the reference tokens)."""
    model.set_attn_implementation("sdpa")
    out = model.generate(ids, max_new_tokens=n, do_sample=False, num_beams=1)
    return out[0, ids.shape[1]:].tolist()


def test_eager_and_compiled_generate_match_hf_and_compile_once(a8w8_model):
    from torch_qdev.generation import DecodeStep, generate

    ids = torch.randint(0, 512, (1, 12), generator=torch.Generator().manual_seed(1)).qdev()
    want = _hf_greedy(a8w8_model, ids, 6)
    eager = generate(a8w8_model, ids, 6)
    assert eager.tokens == want and not eager.compiled and len(eager.step_s) == 5
    torch._dynamo.reset()
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    step = DecodeStep(a8w8_model, compile=True)
    first = generate(a8w8_model, ids, 6, step=step)
    again = generate(a8w8_model, ids, 6, step=step)  # same cache length: the compiled step is reused
    assert first.tokens == want and again.tokens == want
    assert first.compile_s > 0 and again.compile_s == 0 and len(again.step_s) == 5
    # one graph for every decode token of both calls: no recompilation per token or per call
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - frames == 1
    assert again.decode_tps > 0 and again.prefill_tps > 0


def test_generate_rejects_bad_arguments(a8w8_model):
    from torch_qdev.generation import generate

    with pytest.raises(ValueError, match="shape"):
        generate(a8w8_model, torch.zeros(2, 3, dtype=torch.long).qdev(), 2)
    with pytest.raises(ValueError, match="new_tokens"):
        generate(a8w8_model, torch.zeros(1, 3, dtype=torch.long).qdev(), 0)
    with pytest.raises(ValueError, match="max_cache_len"):
        generate(a8w8_model, torch.zeros(1, 3, dtype=torch.long).qdev(), 4, max_cache_len=5)


def test_decode_profile_groups_ops(a8w8_model):
    from torch_qdev.profiling import format_profile, linear_weight_bytes, profile_decode

    ids = torch.randint(0, 512, (1, 8), generator=torch.Generator().manual_seed(2)).qdev()
    p = profile_decode(a8w8_model, ids, steps=2)
    cats = {r.category for r in p.rows}
    assert {"weight matmul", "activation quant", "attention"} <= cats
    mm = next(r for r in p.rows if r.name == "qdev::npu_quant_matmul")
    assert mm.calls_per_step == 2 * 7 + 1  # 7 Linear layers per block and the head
    assert p.weight_bytes == linear_weight_bytes(a8w8_model) > 0
    text = format_profile(p)
    assert "weights read at" in text and "Python / HF / dispatch" in text
