"""torch_qdev.contrib.module: LinearQuant, LinearA8W8Quant, from_float, use_internal_format_weight."""
from __future__ import annotations

import io

import pytest
import torch

import torch_qdev
from torch_qdev.contrib import use_internal_format_weight
from torch_qdev.contrib.module import LinearA8W8Quant, LinearQuant

import quant_reference as ref


def test_parameters_as_torch_npu():
    m = LinearQuant(16, 8, offset=True, pertoken_scale=True)
    assert m.weight.shape == (8, 16) and m.weight.dtype == torch.float32
    assert m.scale.shape == (8,) and m.offset.shape == (8,) and m.pertoken_scale.shape == (8,)
    assert m.bias.dtype == torch.int32
    assert all(not p.requires_grad for p in m.parameters())
    assert LinearQuant(4, 2, bias=False).bias is None
    with pytest.warns(FutureWarning, match="LinearA8W8Quant is deprecated"):
        LinearA8W8Quant(4, 2)


def test_forward_matches_op_and_golden():
    gen = torch.Generator().manual_seed(0)
    m = LinearQuant(32, 24, offset=True, output_dtype=torch.int8).qdev()
    w = torch.randint(-128, 128, (24, 32), dtype=torch.int8, generator=gen)
    scale = torch.rand(24, generator=gen) * 0.01
    offset = torch.randn(24, generator=gen) * 5
    bias = torch.randint(-100, 100, (24,), dtype=torch.int32, generator=gen)
    m.weight.data, m.scale.data, m.offset.data, m.bias.data = w.qdev(), scale.qdev(), offset.qdev(), bias.qdev()
    x = torch.randint(-128, 128, (5, 32), dtype=torch.int8, generator=gen)
    expected = ref.quant_matmul(x, w.t(), scale, offset=offset, bias=bias, output_dtype=torch.int8)
    assert torch.equal(m(x.qdev()).cpu(), expected)
    use_internal_format_weight(m)  # int64 scale stays the same math; weight pre-packed
    assert torch_qdev.get_npu_format(m.weight) == torch_qdev.Format.FRACTAL_NZ
    assert m.weight.shape == (24, 32) and torch.equal(m.weight.cpu(), w)
    assert torch.equal(m(x.qdev()).cpu(), expected)


def test_a8w8_validation_and_trans_quant_param():
    with pytest.warns(FutureWarning):
        m = LinearA8W8Quant(16, 8, bias=False, output_dtype=torch.float16).qdev()
    m.weight.data = torch.randint(-128, 128, (8, 16), dtype=torch.int8).qdev()
    m.scale.data = (torch.rand(8) * 0.01).qdev()
    x = torch.randint(-128, 128, (3, 16), dtype=torch.int8).qdev()
    y = m(x)
    use_internal_format_weight(m)
    assert m.scale.dtype == torch.int64
    assert torch.equal(m(x).cpu(), y.cpu())
    with pytest.raises(ValueError, match="input and weight should be both torch.int32 or both torch.int8"):
        m(x.float())
    m.output_dtype = torch.int32
    with pytest.raises(ValueError, match="output_dtype should be torch.int8, torch.float16 or torch.bfloat16"):
        m(x)


def test_from_float_approximates_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 64)
    x = torch.randn(8, 256)
    expected = lin(x)
    input_scale = x.abs().max().item() / 127
    for out in (torch.bfloat16, torch.float16):
        q = LinearQuant.from_float(lin, input_scale=input_scale, output_dtype=out).qdev()
        use_internal_format_weight(q)
        y = q(q.quantize_input(x.qdev()))
        assert y.dtype == out
        rel = (y.float().cpu() - expected).norm() / expected.norm()
        assert rel < 0.02, rel


def test_state_dict_round_trip():
    lin = torch.nn.Linear(64, 32)
    q = LinearQuant.from_float(lin, output_dtype=torch.bfloat16).qdev()
    use_internal_format_weight(q)
    buf = io.BytesIO()
    torch.save(q.state_dict(), buf)
    buf.seek(0)
    q2 = LinearQuant.from_float(torch.nn.Linear(64, 32), output_dtype=torch.bfloat16).qdev()
    use_internal_format_weight(q2)  # loading copies into the pre-packed weight
    q2.load_state_dict(torch.load(buf))
    assert torch_qdev.get_npu_format(q2.weight) == torch_qdev.Format.FRACTAL_NZ
    x = torch.randint(-128, 128, (4, 64), dtype=torch.int8).qdev()
    assert torch.equal(q(x).cpu(), q2(x).cpu())


def test_cpu_weights_rejected_by_use_internal_format_weight():
    q = LinearQuant.from_float(torch.nn.Linear(16, 8))
    with pytest.raises(RuntimeError, match="Cpu weight is not supported"):
        use_internal_format_weight(q)
