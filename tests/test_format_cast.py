"""npu_format_cast / get_npu_format / get_storage_size: torch_npu's observable
format behaviour, with FRACTAL_NZ kept as qdev storage metadata."""
from __future__ import annotations

import io
import warnings

import pytest
import torch

import torch_qdev
from torch_qdev import Format

NZ = Format.FRACTAL_NZ


def test_default_formats():
    assert torch_qdev.get_npu_format(torch.rand(2, 3, 4, 5).qdev()) == Format.NCHW
    assert torch_qdev.get_npu_format(torch.rand(2, 3, 4, 5, 6).qdev()) == Format.NCDHW
    assert torch_qdev.get_npu_format(torch.rand(3, 4).qdev()) == Format.ND
    assert str(Format.FRACTAL_NZ) == "FRACTAL_NZ" and int(Format.FRACTAL_NZ) == 29


@pytest.mark.parametrize("dtype,shape,nbytes", [
    (torch.float16, (15, 17), 1 * 2 * 16 * 16 * 2),
    (torch.int8, (15, 33), 2 * 1 * 16 * 32),
    (torch.int32, (15, 17), 2 * 1 * 16 * 16 * 4),
    (torch.float32, (2, 20, 40), 2 * 3 * 2 * 16 * 16 * 4),
    (torch.bfloat16, (64, 64), 4 * 4 * 16 * 16 * 2),
])
def test_nz_storage_size_and_logical_view(dtype, shape, nbytes):
    x = (torch.randn(shape) * 50).to(dtype)
    y = torch_qdev.npu_format_cast(x.qdev(), 29)
    assert torch_qdev.get_npu_format(y) == NZ
    assert y.shape == x.shape and y.stride() == x.stride() and y.is_contiguous() and y.dtype == dtype
    assert y.untyped_storage().size() == nbytes
    assert torch_qdev.get_storage_size(y) == nbytes // y.element_size()
    assert torch.equal(y.cpu(), x)
    back = torch_qdev.npu_format_cast(y, 2)
    assert torch_qdev.get_npu_format(back) == Format.ND and torch.equal(back.cpu(), x)
    assert back.untyped_storage().size() == x.numel() * x.element_size()


def test_customize_dtype_c0_8():
    x = torch.randint(-5, 5, (15, 17), dtype=torch.int32).qdev()
    y = torch_qdev.npu_format_cast(x, 29, customize_dtype=3)
    assert y.untyped_storage().size() >= 1536 and torch.equal(y.cpu(), x.cpu())
    with pytest.raises(RuntimeError, match="customize_dtype is not supported"):
        torch_qdev.npu_format_cast(torch.rand(4, 4).qdev(), 29, customize_dtype=5)


def test_int8_nz_is_the_gemm_packing():
    # Documented order inside a 16x32 int8 fractal: [k/4][n/16][n%16][k%4].
    x = torch.arange(16 * 32, dtype=torch.int32).remainder(251).to(torch.int8).reshape(16, 32)
    y = torch_qdev.npu_format_cast(x.qdev(), 29)
    raw = torch.frombuffer(bytes(y.untyped_storage().cpu()), dtype=torch.int8)
    k, n = torch.meshgrid(torch.arange(16), torch.arange(32), indexing="ij")
    offset = (k // 4) * 128 + (n // 16) * 64 + (n % 16) * 4 + k % 4
    assert torch.equal(raw[offset.reshape(-1)], x.reshape(-1))


def test_same_format_returns_self_and_base_casts_relabel():
    x = torch.rand(3, 4).qdev()
    assert torch_qdev.npu_format_cast(x, 2) is x
    ptr = x.untyped_storage().data_ptr()
    y = torch_qdev.npu_format_cast(x, Format.NCHW)
    assert y is x and torch_qdev.get_npu_format(x) == Format.NCHW
    assert x.untyped_storage().data_ptr() == ptr
    nz = torch_qdev.npu_format_cast(torch.rand(4, 4).qdev(), 29)
    assert torch_qdev.npu_format_cast(nz, 29) is nz


def test_small_tensors_stay_nd():
    x = torch.rand(12).qdev()
    y = torch_qdev.npu_format_cast(x, 29)
    assert torch_qdev.get_npu_format(y) == Format.ND


def test_tensor_overload_and_in_place_variants():
    src = torch_qdev.npu_format_cast(torch.rand(8, 8).qdev(), 29)
    x = torch.rand(8, 8)
    y = torch_qdev.npu_format_cast(x.qdev(), src)
    assert torch_qdev.get_npu_format(y) == NZ and torch.equal(y.cpu(), x)
    z = x.qdev()
    assert torch_qdev.npu_format_cast_(z, 29) is z
    assert torch_qdev.get_npu_format(z) == NZ and torch.equal(z.cpu(), x)
    w = torch.zeros(8, 8).qdev()
    torch_qdev.npu_format_cast_(w, src)  # as torch_npu's code: copies src's values
    assert torch.equal(w.cpu(), src.cpu()) and torch_qdev.get_npu_format(w) == Format.ND


def test_ops_see_logical_values():
    x = torch.randn(5, 7)
    y = torch_qdev.npu_format_cast(x.qdev(), 29)
    torch.testing.assert_close((y * 2 + 1).cpu(), x * 2 + 1)
    torch.testing.assert_close((y @ y.t()).cpu(), x @ x.t())
    assert torch.equal(y[1:3, 2:6].cpu(), x[1:3, 2:6])
    assert torch.equal(y.t().contiguous().cpu(), x.t().contiguous())
    assert y[2, 3].item() == x[2, 3].item()
    # The whole printout is the CPU one plus the device; only line wrapping may differ.
    # (Checking one formatted element failed whenever torch chose scientific notation.)
    assert str(y).split() == (str(x)[:-1] + ", device='qdev:0')").split()
    assert torch.equal(y.to("qdev:1").cpu(), x)


def test_writes_keep_format_and_values():
    x = torch.randn(6, 40)
    y = torch_qdev.npu_format_cast(x.qdev(), 29)
    y.mul_(3)
    y[1:4, 5:9] = 0.5
    y[0].fill_(-1)
    x = x * 3
    x[1:4, 5:9] = 0.5
    x[0] = -1
    assert torch_qdev.get_npu_format(y) == NZ
    assert torch.equal(y.cpu(), x)
    y.copy_(torch.ones(6, 40))
    assert torch.equal(y.cpu(), torch.ones(6, 40))
    with pytest.raises(RuntimeError, match="internal format"):
        y.resize_(100)


def test_serialization_sees_logical_values():
    x = torch.randn(4, 20)
    y = torch_qdev.npu_format_cast(x.qdev(), 29)
    buf = io.BytesIO()
    torch.save({"w": y}, buf)
    buf.seek(0)
    loaded = torch.load(buf)["w"]
    assert loaded.device.type == "qdev" and torch.equal(loaded.cpu(), x)
    buf.seek(0)
    assert torch.equal(torch.load(buf, map_location="cpu")["w"].cpu(), x)


def test_allow_internal_format_false_degrades_to_base():
    torch.qdev.config.allow_internal_format = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = torch_qdev.npu_format_cast(torch.rand(4, 4).qdev(), 29)
        assert torch_qdev.get_npu_format(y) == Format.ND
        assert any("allow_internal_format=False" in str(w.message) for w in caught)
    finally:
        torch.qdev.config.allow_internal_format = True
    assert torch.qdev.config.allow_internal_format is True
    with pytest.raises(TypeError):
        torch.qdev.config.allow_internal_format = 1


def test_errors():
    with pytest.raises(RuntimeError, match="Expected qdev tensor, please check whether the input tensor device is correct."):
        torch_qdev.npu_format_cast(torch.rand(4, 4), 29)
    with pytest.raises(RuntimeError, match="unknown format type:999"):
        torch_qdev.npu_format_cast(torch.rand(4, 4).qdev(), 999)
    with pytest.raises(NotImplementedError, match="unsupported cast from ND to NC1HWC0"):
        torch_qdev.npu_format_cast(torch.rand(4, 4).qdev(), 3)


def test_gradient_is_identity():
    x = torch.randn(4, 8, device="qdev", requires_grad=True)
    y = torch_qdev.npu_format_cast(x, 29)
    assert y.requires_grad
    (y * torch.arange(8.0, device="qdev")).sum().backward()
    assert torch.equal(x.grad.cpu(), torch.arange(8.0).expand(4, 8))


def test_opcheck_format_cast():
    torch.library.opcheck(torch.ops.qdev.npu_format_cast.default, (torch.rand(16, 32).qdev(), 29),
                          test_utils=("test_schema", "test_faketensor"))


def test_raw_storage_writes_refresh_the_weight_cache():
    gen = torch.Generator().manual_seed(5)
    w = torch.randint(-128, 128, (64, 32), dtype=torch.int8, generator=gen)
    nz = torch_qdev.npu_format_cast(w.qdev(), 29)
    x = torch.randint(-128, 128, (3, 64), dtype=torch.int8, generator=gen).qdev()
    one = torch.ones(1).qdev()
    torch_qdev.npu_quant_matmul(x, nz, one, output_dtype=torch.int32)  # fills the column-sum cache
    w2 = torch.randint(-128, 128, (64, 32), dtype=torch.int8, generator=gen)
    raw = torch_qdev.npu_format_cast(w2.qdev(), 29).untyped_storage()
    nz.untyped_storage().copy_(raw)  # raw bytes, bypassing the logical view
    assert torch.equal(nz.cpu(), w2)
    got = torch_qdev.npu_quant_matmul(x, nz, one, output_dtype=torch.int32)
    assert torch.equal(got.cpu(), x.cpu().int() @ w2.int())
