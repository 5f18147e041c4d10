"""torch_qdev.quantization.quantize_ and its configs, LinearA8W8Dynamic, LinearWeightQuant.from_float,
and a smoke run of the LLM demo (the main job) on a tiny config."""
from __future__ import annotations

import copy
import csv
import io

import pytest
import torch
from torch import nn

import torch_qdev
from torch_qdev.contrib.module import LinearA8W8Dynamic, LinearW4A8Dynamic, LinearWeightQuant
from torch_qdev.quantization import (A8W8DynamicConfig, A16W4Config, A16W8Config, W4A8DynamicConfig, quantize_,
                                     quantized_linear)

# Relative L2 error of the model output against fp32, for N(0, 1) inputs and nn.Linear's
# uniform weights: int8 per channel leaves ~1 % (A8W8: activations quantized too, plus the
# bf16 output rounding), int4 ~10 % (16 levels over a uniform range: step/sqrt(12) relative to
# the weights' rms is ~0.1). Bounds sit ~1.5x above what these seeds give.
CONFIGS = [
    (A8W8DynamicConfig(), torch.float32, 0.03),
    (W4A8DynamicConfig(group_size=32), torch.float32, 0.15),
    (W4A8DynamicConfig(group_size=None), torch.float32, 0.15),
    (A16W8Config(), torch.bfloat16, 0.03),
    (A16W4Config(group_size=64), torch.bfloat16, 0.15),
    (A16W4Config(group_size=0), torch.bfloat16, 0.15),
]
LAYER_TYPES = {A8W8DynamicConfig: LinearA8W8Dynamic, W4A8DynamicConfig: LinearW4A8Dynamic,
               A16W8Config: LinearWeightQuant, A16W4Config: LinearWeightQuant}


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(128, 256), nn.SiLU(), nn.Linear(256, 64, bias=False))


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.float().cpu() - ref).norm() / ref.norm()).item()


@pytest.mark.parametrize("device", ["qdev", None])
@pytest.mark.parametrize("config,dtype,bound", CONFIGS, ids=lambda v: getattr(v, "name", None))
def test_quantize_each_config_close_to_fp32(config, dtype, bound, device):
    model = make_model()
    x = torch.randn(2, 5, 128)
    ref = model(x).detach()
    q = quantize_(copy.deepcopy(model).to(dtype), config, device=device)
    assert all(type(m) is LAYER_TYPES[type(config)] for m in (q[0], q[2]))
    expect_dev = torch.device("qdev:0") if device else torch.device("cpu")
    assert all(t.device == expect_dev for t in list(q.parameters()) + list(q.buffers()))
    xi = x.to(dtype).to(expect_dev)
    with torch.no_grad():
        y = q(xi)
    assert y.shape == (2, 5, 64) and y.dtype == dtype and y.device == expect_dev
    err = rel_err(y, ref)
    assert err < bound, f"{config.name}: relative error {err:.4f} >= {bound}"


def test_a8w8_weight_is_prepacked_on_qdev_and_plain_in_state_dict():
    q = quantize_(make_model(), A8W8DynamicConfig(), device="qdev")
    assert torch_qdev.get_npu_format(q[0].weight) == torch_qdev.Format.FRACTAL_NZ
    sd = q.state_dict()
    assert sd["0.weight"].dtype == torch.int8 and sd["0.weight"].shape == (256, 128)
    cpu_copy = copy.deepcopy(q).cpu()  # back to CPU: plain ND int8 with the same values
    assert torch.equal(cpu_copy[0].weight, q[0].weight.cpu())
    x = torch.randn(3, 128)
    assert torch.equal(cpu_copy(x), q(x.qdev()).cpu())


def test_a8w8_dynamic_layer_matches_its_formula():
    """y = bf16(float(xq @ wq^T) * w_scale * token_scale + bias), xq/token_scale from npu_dynamic_quant."""
    torch.manual_seed(3)
    lin = nn.Linear(96, 40)
    layer = LinearA8W8Dynamic.from_float(lin).qdev()
    x = torch.randn(7, 96, dtype=torch.bfloat16)
    xq, ts = torch_qdev.npu_dynamic_quant(x)
    acc = (xq.to(torch.int64) @ layer.weight.cpu().to(torch.int64).t()).to(torch.float32)
    golden = (acc * layer.scale.cpu() * ts[:, None] + layer.bias.cpu()).to(torch.bfloat16)
    y = layer(x.qdev()).cpu()
    torch.testing.assert_close(y, golden, rtol=8e-3, atol=1e-6)  # a bf16 ulp: the product order may differ
    with pytest.raises(RuntimeError, match="expected input with last dimension 96"):
        layer(torch.randn(2, 95, device="qdev"))


@pytest.mark.parametrize("config,dtype,bound", CONFIGS, ids=lambda v: getattr(v, "name", None))
def test_state_dict_round_trip(config, dtype, bound, tmp_path):
    a = quantize_(make_model(0).to(dtype), config, device="qdev")
    path = tmp_path / "q.pt"
    torch.save(a.state_dict(), path)
    b = quantize_(make_model(1).to(dtype), config, device="qdev")  # other weights, same structure
    x = torch.randn(4, 128).to(dtype).qdev()
    assert not torch.equal(a(x).cpu(), b(x).cpu())
    b.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(a(x).cpu(), b(x).cpu())


def test_filter_fn_and_skipped_layers():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 8))
    seen = []

    def only_first(mod, fqn):
        seen.append(fqn)
        return fqn == "0"

    quantize_(model, A8W8DynamicConfig(), filter_fn=only_first)
    assert seen == ["0", "2", "4"]
    assert type(model[0]) is LinearA8W8Dynamic and type(model[2]) is nn.Linear and type(model[4]) is nn.Linear
    # 48 input features cannot form groups of 32: that layer stays float, with a warning naming it
    with pytest.warns(UserWarning, match=r"kept 1 layer\(s\) in float: 4 \(in_features=48"):
        quantize_(model, W4A8DynamicConfig(group_size=32))
    assert type(model[2]) is LinearW4A8Dynamic and type(model[4]) is nn.Linear
    assert type(model[0]) is LinearA8W8Dynamic  # already quantized layers are left alone
    assert model(torch.randn(2, 64)).shape == (2, 8)


def test_quantize_errors():
    with pytest.raises(TypeError, match="torch_qdev.quantization config"):
        quantize_(make_model(), "int8")
    with pytest.raises(ValueError, match="for a lone nn.Linear use quantized_linear"):
        quantize_(nn.Linear(64, 64), A8W8DynamicConfig())
    with pytest.raises(ValueError, match="cannot quantize .* not a multiple of group_size=32"):
        quantized_linear(nn.Linear(48, 8), W4A8DynamicConfig(group_size=32))
    assert type(quantized_linear(nn.Linear(64, 8), A16W8Config())) is LinearWeightQuant
    with pytest.raises(ValueError, match="bits should be 4 or 8"):
        LinearWeightQuant.from_float(nn.Linear(64, 8), bits=2)
    with pytest.raises(ValueError, match="dtype should be torch.float16 or torch.bfloat16"):
        LinearWeightQuant.from_float(nn.Linear(64, 8), dtype=torch.float32)
    with pytest.raises(ValueError, match="group_size should be 0 or a multiple of 32"):
        LinearWeightQuant.from_float(nn.Linear(64, 8), group_size=48)


def test_weight_quant_from_float_int4_values():
    """The int4 weight unpacks to round(w / scale) in [-8, 7] with scale = bf16(absmax / 7) per group."""
    torch.manual_seed(4)
    lin = nn.Linear(64, 16, bias=False)
    m = LinearWeightQuant.from_float(lin, bits=4, group_size=32)
    assert m.weight.dtype == torch.int32 and m.weight.shape == (16, 8) and m.antiquant_scale.shape == (16, 2)
    w = lin.weight.detach().reshape(16, 2, 32)
    scale = (w.abs().amax(-1) / 7).bfloat16()
    expect = torch.round(w / scale.float()[..., None]).clamp(-8, 7).reshape(16, 64).to(torch.int32)
    packed = torch_qdev.npu_convert_weight_to_int4pack(expect.contiguous())
    assert torch.equal(m.weight, packed) and torch.equal(m.antiquant_scale, scale)


def test_quantized_model_under_compile():
    model = quantize_(make_model(), W4A8DynamicConfig(group_size=32))
    quantize_(model, A8W8DynamicConfig())  # nothing left to do: all layers already quantized
    x = torch.randn(3, 128)
    eager = model(x)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x), eager)


def test_llm_demo_smoke(tmp_path, capsys):
    pytest.importorskip("transformers", reason="the demo builds its model with Hugging Face transformers")
    from torch_qdev import demo

    rc = demo.main(["--model", "tiny", "--prompt-len", "16", "--new-tokens", "3", "--slow-prompt-len", "4",
                    "--slow-new-tokens", "2", "--out-dir", str(tmp_path), "--no-extrapolate-7b", "--no-compile"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| qdev W4A8-dynamic g32 (fp32 x) |" in out and "| torch.ao dynamic int8 (fbgemm, fp32) |" in out
    with open(tmp_path / "llm_demo.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    expected = {"fp32 eager (CPU)", "qdev A8W8-dynamic", "qdev W4A8-dynamic g32 (fp32 x)", "qdev A16W8", "qdev A16W4 g32",
                "torch.ao dynamic int8 (fbgemm, fp32)", "torch int4 weight-only g32 (bf16)",
                "torch _dyn_quant_matmul_4bit g32 (fp32)"}
    assert set(rows) == expected
    assert all(float(r["prefill_tok_s"]) > 0 and float(r["decode_tok_s"]) > 0 for r in rows.values())
    assert float(rows["fp32 eager (CPU)"]["logit_cos"]) == 1.0
    # int8 paths track fp32 closely even on random weights; int4 ones less so
    assert float(rows["qdev A8W8-dynamic"]["logit_cos"]) > 0.99
    assert float(rows["qdev A16W8"]["logit_cos"]) > 0.99
    assert float(rows["qdev W4A8-dynamic g32 (fp32 x)"]["logit_cos"]) > 0.9
    assert float(rows["qdev A8W8-dynamic"]["weights_mib"]) < float(rows["fp32 eager (CPU)"]["weights_mib"])
    assert (tmp_path / "llm_demo.png").stat().st_size > 10_000


@pytest.mark.parametrize("config,dtype,bound", CONFIGS, ids=lambda v: getattr(v, "name", None))
def test_quantized_layers_take_empty_noncontiguous_and_reject_bad_inputs(config, dtype, bound):
    layer = quantized_linear(nn.Linear(128, 32).to(dtype), config).qdev()
    assert layer(torch.empty(0, 128, dtype=dtype, device="qdev")).shape == (0, 32)
    assert layer(torch.empty(2, 0, 128, dtype=dtype, device="qdev")).shape == (2, 0, 32)
    x = torch.randn(128, 6, dtype=dtype).qdev().t()  # non-contiguous rows
    assert torch.equal(layer(x).cpu(), layer(x.contiguous()).cpu())
    with pytest.raises(RuntimeError, match="127"):
        layer(torch.randn(3, 127, dtype=dtype, device="qdev"))
