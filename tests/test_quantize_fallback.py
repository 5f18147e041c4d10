"""quantize_ never leaves a layer float because of its group size, and a layer it must leave float
follows the model's dtype (the bf16 crash of issue 12)."""
import warnings

import pytest
import torch
from torch import nn

from torch_qdev.contrib.module import LinearW4A8Dynamic, LinearWeightQuant
from torch_qdev.quantization import A16W4Config, A16W8Config, W4A8DynamicConfig, quantize_


class Tiny(nn.Module):
    """An embedding and a norm (non-Linear float params, cast to bf16 like the demo does), then a
    576-wide layer (576 = 18 x 32: no g128 groups), a 48-wide one (no multiple-of-32 group at all)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 576)
        self.norm = nn.LayerNorm(576)
        self.up = nn.Linear(576, 48)
        self.down = nn.Linear(48, 256)
        self.head = nn.Linear(256, 50)

    def forward(self, ids):
        return self.head(self.down(self.up(self.norm(self.emb(ids)))))


def bf16_outside_linears(model):
    model.emb.to(torch.bfloat16)
    model.norm.to(torch.bfloat16)
    return model


def test_a16w4_g128_on_576_takes_g96_and_skipped_layers_follow_the_model_dtype():
    ref = Tiny()
    ids = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        expect = ref(ids)
    model = bf16_outside_linears(Tiny())
    with pytest.warns(UserWarning) as rec:  # PyTorch's recipe: g128, the head like the body
        quantize_(model, A16W4Config.pytorch_recipe(128), device="qdev")
    msgs = [str(w.message) for w in rec]
    assert any("use g96 instead of g128: up" in m for m in msgs), msgs
    assert any("kept 1 layer(s) in float: down (" in m and "cast to torch.bfloat16" in m for m in msgs), msgs
    assert type(model.up) is LinearWeightQuant and model.up.antiquant_group_size == 96  # 576 = 6 x 96
    assert type(model.head) is LinearWeightQuant and model.head.antiquant_group_size == 128
    assert type(model.down) is nn.Linear and model.down.weight.dtype == torch.bfloat16
    with torch.no_grad():  # crashed with "expected m1 and m2 to have the same dtype" before
        out = model(ids.to("qdev"))
    assert out.dtype == torch.bfloat16
    err = (out.float().cpu() - expect).norm() / expect.norm()
    assert err < 0.2, err


def test_skipped_layer_cast_never_touches_shared_weights():
    """quantize_ replaces the skipped layer instead of converting it in place: a model sharing its
    parameters (the demo's shallow copies) keeps its float32 weights."""
    src = Tiny()
    model = bf16_outside_linears(Tiny())
    model.down.weight = src.down.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(model, A16W8Config(group_size=32))
    assert model.down.weight.dtype == torch.bfloat16 and src.down.weight.dtype == torch.float32


def test_group_fallback_w4a8_and_its_limits():
    model = nn.Sequential(nn.Linear(96, 80), nn.Linear(80, 16))
    with pytest.warns(UserWarning) as rec:
        quantize_(model, W4A8DynamicConfig(group_size=128))
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 2
    assert msgs[1].endswith("1 layer(s) whose in_features the group size does not divide use g96 instead of g128: 0")
    assert msgs[0].endswith("kept 1 layer(s) in float: 1 (in_features=80 is not a multiple of group_size=128)")
    assert type(model[1]) is nn.Linear  # 80: no multiple of 32 divides it
    assert type(model[0]) is LinearW4A8Dynamic and model[0].group_size == 96
    assert model(torch.randn(3, 96)).shape == (3, 16)
    # weight-only groups must stay below in_features: 64 under g64 -> g32; an all-float model is not cast
    m2 = nn.Sequential(nn.Linear(64, 8))
    with pytest.warns(UserWarning, match="use g32 instead of g64"):
        quantize_(m2, A16W4Config(group_size=64))
    assert m2[0].antiquant_group_size == 32
    m3 = nn.Sequential(nn.Linear(40, 8))
    with pytest.warns(UserWarning, match=r"kept 1 layer\(s\) in float: 0 \(in_features=40") as rec:
        quantize_(m3, A16W4Config(group_size=64))
    assert "cast" not in str(rec[0].message) and m3[0].weight.dtype == torch.float32


def test_huge_group_size_refits_without_walking_every_smaller_group():
    """The fallback's candidates start at in_features: a group of 2**40 (a fuzzed case) took
    ~3e10 steps, a hang, when they started at the group size."""
    model = nn.Sequential(nn.Linear(96, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_(model, A16W4Config(group_size=2**40))
    assert isinstance(model[0], LinearWeightQuant)
    assert any("use g32 instead of g1099511627776" in str(w.message) for w in caught), [str(w.message) for w in caught]
