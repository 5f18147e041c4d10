"""The grid-removing transform (torch_qdev.quantization.rotate): same function, different weights."""
import pytest
import torch

from torch_qdev.quantization.rotate import fold_rmsnorm_gains, random_orthogonal, remove_weight_grid, rotate_residual

transformers = pytest.importorskip("transformers", reason="the transform is tested on a Hugging Face Llama")


def tiny_llama(tied: bool, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=300, tie_word_embeddings=tied, max_position_embeddings=128)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # gains far from 1, so that folding them matters
                p.uniform_(0.3, 2.0)
            else:
                p.normal_(0, 0.08)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.double()


@pytest.mark.parametrize("tied", [True, False])
def test_remove_weight_grid_keeps_the_function(tied):
    model = tiny_llama(tied)
    ids = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    before = logits(model, ids)
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    remove_weight_grid(model, seed=3)
    after = logits(model, ids)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert model.config.tie_word_embeddings is False
    # every matrix changed (no weight left where it was), every gain is 1
    for n, p in model.named_parameters():
        if n.endswith("norm.weight"):
            assert torch.all(p == 1), n
        elif n in old:
            assert (p - old[n]).abs().max() > 1e-3, n
    # a bad rotation changes the function: the check above is not vacuous
    rotate_residual(model, rotation=torch.diag(torch.linspace(0.5, 1.5, 64, dtype=torch.float64)))
    assert (logits(model, ids) - before).abs().max() > 1e-2


def test_rotation_off_grid():
    """A weight on a 4-bit grid (16 levels per row) is not on it after the transform."""
    model = tiny_llama(False)
    with torch.no_grad():
        for layer in model.model.layers:
            w = layer.self_attn.q_proj.weight
            w.copy_((w / w.abs().amax(1, keepdim=True) * 7).round() / 7)
    assert layer.self_attn.q_proj.weight[0].unique().numel() <= 15
    remove_weight_grid(model)
    assert model.model.layers[0].self_attn.q_proj.weight[0].unique().numel() == 64


def test_random_orthogonal():
    r = random_orthogonal(48, seed=5)
    torch.testing.assert_close(r @ r.T, torch.eye(48, dtype=torch.float64))
    assert not torch.equal(r, random_orthogonal(48, seed=6))
    torch.testing.assert_close(r, random_orthogonal(48, seed=5), rtol=0, atol=0)


def test_rotate_needs_unit_gains_and_llama():
    model = tiny_llama(False)
    with pytest.raises(ValueError, match="fold_rmsnorm_gains"):
        rotate_residual(model)
    fold_rmsnorm_gains(model)
    with pytest.raises(ValueError, match="64 x 64"):
        rotate_residual(model, rotation=torch.eye(32))
    with pytest.raises(TypeError, match="not a Llama-layout"):
        remove_weight_grid(torch.nn.Sequential(torch.nn.Linear(4, 4)))
