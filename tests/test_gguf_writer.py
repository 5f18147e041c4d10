"""benchmarks/bench_accuracy.py's F32 GGUF writer, checked without llama.cpp: transformers reads the
file back (undoing llama.cpp's q/k row order) into a model with the same logits."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="the writer is checked through transformers' GGUF reader")
if importlib.util.find_spec("gguf") is None:
    pytest.skip("the gguf package is not installed (pinned in requirements-dev.txt)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_accuracy  # noqa: E402


@pytest.mark.parametrize("tied", [False, True])
def test_f32_gguf_round_trip(tmp_path, tied):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, max_position_embeddings=256, rope_theta=50000.0,
                      tie_word_embeddings=tied)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.uniform_(0.5, 1.5) if "norm" in n else p.normal_(0, 0.1)
    path = tmp_path / "m.gguf"
    bench_accuracy.write_f32_gguf(model, path, bos=1, eos=2)
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf", dtype=torch.float32).eval()
    ids = torch.randint(0, 300, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)
    bpw, head = bench_accuracy.gguf_formats(path)
    assert bpw == 32.0 and head == "F32"


def test_llama_permute_is_the_inverse_of_transformers_reader():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = torch.randn(4 * 2 * 3, 5)
    permuted = bench_accuracy.llama_permute(w, 4)
    assert not torch.equal(permuted, w)
    back = LlamaTensorProcessor()._reverse_permute_weights(permuted.numpy(), 4, 4)
    assert torch.equal(torch.from_numpy(back), w)
