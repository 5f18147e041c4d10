"""Regression tests of the defects the bad-input fuzzer found (issue 17): each one crashed,
returned a silently wrong result, or refused with an unclear message before its fix."""
from __future__ import annotations

import io
import math
import subprocess
import sys

import pytest
import torch

import torch_qdev
import quant_reference as ref
from conftest import ISAS, cpu_isa, internal_format
from torch_qdev.contrib.module import LinearA8W8Dynamic, LinearW4A8Dynamic


# ---------------------------------------------------------------- W4A8 packing


def test_packed_size_check_does_not_overflow():
    """Used to SIGSEGV: out_features * in_features / 2 wrapped and the check passed. Run in a
    child so that a regression fails this test instead of killing pytest."""
    code = (
        "import torch, torch_qdev\n"
        "for k, n in [(128, 2**62), (2**33, 2**36), (2**62, 128)]:\n"
        "    try:\n"
        "        torch_qdev.dyn_quant_pack_4bit_weight(torch.empty(0, dtype=torch.uint8), torch.empty(0), None, 32, k, n)\n"
        "    except RuntimeError as e:\n"
        "        assert 'at most' in str(e) or 'weights hold' in str(e), e\n"
        "    else:\n"
        "        raise SystemExit('accepted')\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, (p.returncode, p.stderr[-2000:])


def _pack(k=64, n=32, group=32, bias=True):
    gen = torch.Generator().manual_seed(0)
    w = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    s = (torch.rand(n, k // group, generator=gen) + 0.1).bfloat16()
    b = torch.randn(n, generator=gen) if bias else None
    return torch_qdev.dyn_quant_pack_4bit_weight(w, s, b, group, k, n)


@pytest.mark.parametrize("bit", range(8))
def test_corrupted_flags_byte_is_refused(bit):
    """A flipped bit in the header's flags used to be accepted (same total size), giving NaN."""
    packed = _pack()
    x = torch.randn(3, 64)
    bad = packed.clone()
    bad[36] ^= 1 << bit  # flags: uint32 at offset 36 (after magic, version, k, n, group, family)
    with pytest.raises(RuntimeError, match="corrupt header|not a valid torch_qdev 4-bit weight"):
        torch_qdev.dyn_quant_matmul_4bit(x, bad, 32, 64, 32)
    torch_qdev.dyn_quant_matmul_4bit(x, packed, 32, 64, 32)  # the intact buffer still works


def test_reserved_header_bytes_are_checked():
    packed = _pack()
    bad = packed.clone()
    bad[100] = 1
    with pytest.raises(RuntimeError, match="reserved bytes"):
        torch_qdev.dyn_quant_matmul_4bit(torch.randn(2, 64), bad, 32, 64, 32)


@pytest.mark.parametrize("n", [8, 1, 33])
def test_aten_pack_on_qdev_with_small_n(n):
    """n = 8 failed with 'INTERNAL ASSERT elems*4 >= total_bytes': the 32-column panel needs more
    bytes than PyTorch's meta size for tiny layers."""
    k, group = 64, 32
    gen = torch.Generator().manual_seed(1)
    w = torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, generator=gen)
    s = (torch.rand(n, k // group, generator=gen) + 0.1).bfloat16()
    packed = torch._dyn_quant_pack_4bit_weight(w.qdev(), s.qdev(), None, group, k, n)
    x = torch.randn(3, k, generator=gen)
    got = torch._dyn_quant_matmul_4bit(x.qdev(), packed, group, k, n).cpu()
    want = torch_qdev.dyn_quant_matmul_4bit(x, torch_qdev.dyn_quant_pack_4bit_weight(w, s, None, group, k, n),
                                            group, k, n)
    assert torch.equal(got, want)


def test_w4a8_layer_refuses_integer_and_bool_inputs():
    layer = LinearW4A8Dynamic.from_float(torch.nn.Linear(64, 16), group_size=32)
    for dtype in (torch.int8, torch.int64, torch.bool):
        with pytest.raises(TypeError, match="float32, bfloat16 or float16 input"):
            layer(torch.ones(2, 64, dtype=dtype))
    assert layer(torch.randn(2, 64, dtype=torch.float16)).dtype == torch.float16


@pytest.mark.parametrize("group_size", [0, -32])
def test_group_size_zero_or_negative_is_a_clear_error(group_size):
    """group_size=0 raised ZeroDivisionError in the Python wrappers."""
    from torch_qdev.quantization import A16W8Config, W4A8DynamicConfig, quantize_

    with pytest.raises(ValueError, match="Group size should be multiple of 32"):
        LinearW4A8Dynamic(64, 16, group_size=group_size)
    with pytest.raises(ValueError, match="Group size should be multiple of 32"):
        torch_qdev.ops.w4_packed_bytes(64, 16, group_size, False)
    reason = W4A8DynamicConfig(group_size=group_size).check(torch.nn.Linear(64, 16))
    assert reason is not None and "group_size" in reason
    if group_size < 0:
        assert A16W8Config(group_size=group_size).check(torch.nn.Linear(64, 16)) is not None
    model = torch.nn.Sequential(torch.nn.Linear(64, 16))
    with pytest.warns(UserWarning):
        quantize_(model, W4A8DynamicConfig(group_size=group_size))
    assert isinstance(model[0], torch.nn.Linear)  # left float, with the reason in the warning


def test_zero_dim_input_to_a8w8_layer():
    """A 0-d input gave 'tuple index out of range'."""
    layer = LinearA8W8Dynamic.from_float(torch.nn.Linear(16, 8))
    with pytest.raises(RuntimeError, match="expected input with last dimension 16"):
        layer(torch.tensor(1.0))


# ---------------------------------------------------------------- npu_quant_matmul


@pytest.mark.parametrize("group", [-256, -1, 65536])
def test_a8w4_group_sizes_range(group):
    """Negative group_sizes were accepted by A8W4; torch_npu requires [0, 65535]."""
    x1 = torch.randint(-128, 128, (2, 256), dtype=torch.int8)
    x2 = ref.pack_int4(torch.randint(-8, 8, (256, 16)))
    scale = torch_qdev.npu_trans_quant_param(torch.rand(1, 16)).reshape(1, 16)
    with pytest.raises(RuntimeError, match=r"group param value must conform to range \[0, 65535\]"):
        torch_qdev.npu_quant_matmul(x1, x2, scale, pertoken_scale=torch.rand(2, 1), output_dtype=torch.float16,
                                    group_sizes=[0, 0, group])


@pytest.mark.parametrize("out", [torch.bfloat16, torch.int32, torch.int8])
def test_k_above_65535_is_refused(out):
    """k = 131072 of -128s: the int32 accumulator wrapped to -2^31 instead of +2^31."""
    k = 131072
    x1 = torch.full((1, k), -128, dtype=torch.int8)
    x2 = torch.full((k, 16), -128, dtype=torch.int8)
    scale = torch.ones(16, dtype=torch.bfloat16 if out == torch.bfloat16 else torch.float32)
    with pytest.raises(RuntimeError, match="must be at most 65535"):
        torch_qdev.npu_quant_matmul(x1, x2, scale, output_dtype=out)
    # At the limit the accumulator is exact: 65535 * 128 * 128 < 2^31.
    k = 65535
    got = torch_qdev.npu_quant_matmul(x1[:, :k], x2[:k], torch.ones(16), output_dtype=torch.int32)
    assert bool((got == k * 128 * 128).all())


@pytest.mark.parametrize("arg", ["x1", "x2", "scale"])
def test_none_for_a_required_tensor(arg):
    """None for x1/x2/scale gave 'Unimplemented scalar type'."""
    args = {"x1": torch.ones(2, 4, dtype=torch.int8), "x2": torch.ones(4, 8, dtype=torch.int8), "scale": torch.ones(8)}
    args[arg] = None
    with pytest.raises(TypeError, match=f"argument '{arg}' must be Tensor, not None"):
        torch.ops.qdev.npu_quant_matmul(args["x1"], args["x2"], args["scale"])


# ---------------------------------------------------------------- npu_dynamic_quant


@pytest.mark.parametrize("mode", ["pertoken", "pertensor", "perchannel", "group_index"])
@pytest.mark.parametrize("asym", [False, True])
def test_dynamic_quant_does_not_modify_its_input(mode, asym, device="qdev"):
    x = torch.randn(4, 16) * 3
    kwargs = {}
    if mode == "group_index":
        kwargs = {"smooth_scales": torch.rand(2, 16) + 0.5, "group_index": torch.tensor([1, 4], dtype=torch.int32)}
    else:
        kwargs = {"smooth_scales": torch.rand(4 if mode == "perchannel" else 16) + 0.5, "quant_mode": mode}
    op = torch_qdev.npu_dynamic_quant_asymmetric if asym else torch_qdev.npu_dynamic_quant
    for dev in ("cpu", device):
        xd = x.to(dev)
        op(xd, **{k: (v.to(dev) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()})
        assert torch.equal(xd.cpu(), x)


@pytest.mark.parametrize("shape,mode", [((3, 0), "pertoken"), ((0, 5), "perchannel"), ((2, 0, 5), "perchannel"),
                                        ((0, 8), "pertensor"), ((2, 0), "pertensor")])
@pytest.mark.parametrize("asym", [False, True])
def test_dynamic_quant_empty_inputs_give_zero_scales(shape, mode, asym):
    """Scales of empty inputs were uninitialised memory (and -inf for asymmetric pertensor)."""
    op = torch_qdev.npu_dynamic_quant_asymmetric if asym else torch_qdev.npu_dynamic_quant
    for dev in ("cpu", "qdev"):
        # Dirty the allocator's cache so uninitialised memory would show.
        torch.full((64,), float("nan"), device=dev)
        out = op(torch.randn(shape).to(dev), quant_mode=mode)
        for t in out[1:]:
            assert t.dtype == torch.float32 and bool((t.cpu() == 0).all()), (dev, t)
        assert out[0].shape == shape


def test_dynamic_quant_group_index_on_another_device():
    x = torch.randn(4, 16).qdev()
    smooth = (torch.rand(2, 16) + 0.5).qdev()
    with pytest.raises(RuntimeError, match="same device"):
        torch_qdev.npu_dynamic_quant(x, smooth_scales=smooth, group_index=torch.tensor([1, 4], dtype=torch.int32))


@pytest.mark.parametrize("value,dst", [(-5.0, None), (math.nan, None), (math.inf, None), (-math.inf, None),
                                       (1000.0, None), (128.0, None), (8.0, torch.quint4x2)])
def test_dynamic_quant_bad_dst_type_max(value, dst):
    with pytest.raises(RuntimeError, match="dst_type_max must be 0"):
        torch_qdev.npu_dynamic_quant(torch.randn(2, 16), dst_type=dst, dst_type_max=value)


def test_dynamic_quant_dst_type_max_in_range():
    x = torch.randn(3, 16) * 4
    y, s = torch_qdev.npu_dynamic_quant(x, dst_type_max=63.0)
    ey, es = ref.dynamic_quant(x, dst_max=63.0, dst_min=-64.0)
    assert torch.equal(y, ey.to(torch.int8)) and torch.equal(s, es)


# ---------------------------------------------------------------- npu_weight_quant_batchmatmul


def _wq_args():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 64, generator=gen).half()
    w = torch.randint(-128, 128, (64, 16), dtype=torch.int8, generator=gen)
    s = (torch.rand(16, generator=gen) * 0.02).half()
    return x, w, s


def test_weight_quant_refuses_int32_scale():
    x, w, _ = _wq_args()
    with pytest.raises(RuntimeError, match="antiquant_scale must be float16, bfloat16, float32 or int64"):
        torch_qdev.npu_weight_quant_batchmatmul(x, w, torch.ones(16, dtype=torch.int32))


@pytest.mark.parametrize("shape", [(64, 16), (16, 1), (3, 16)])
def test_weight_quant_refuses_offset_of_another_shape(shape):
    x, w, s = _wq_args()
    with pytest.raises(RuntimeError, match="antiquant_offset must have antiquant_scale's shape"):
        torch_qdev.npu_weight_quant_batchmatmul(x, w, s, torch.randn(shape).half())
    # per group: (groups + 1, n)
    with pytest.raises(RuntimeError, match="antiquant_offset must have antiquant_scale's shape"):
        torch_qdev.npu_weight_quant_batchmatmul(x, w, torch.rand(2, 16).half(), torch.randn(3, 16).half(),
                                                antiquant_group_size=32)


def test_weight_quant_refuses_3d_bias():
    """A (2, m, n) bias made the output 3-D."""
    x, w, s = _wq_args()
    with pytest.raises(RuntimeError, match=r"bias must be of shape \(n,\) or \(1, n\)"):
        torch_qdev.npu_weight_quant_batchmatmul(x, w, s, bias=torch.randn(2, 3, 16).half())
    y = torch_qdev.npu_weight_quant_batchmatmul(x, w, s, bias=torch.randn(1, 16).half())
    assert y.shape == (3, 16)


# ---------------------------------------------------------------- device indices, streams, events, RNG


@pytest.mark.parametrize("index", [257, 256, 2, 129, -129 + 256 * 4])
def test_device_indices_do_not_wrap(index):
    """257 selected qdev:1 through an int8 cast in the bindings."""
    before = torch.qdev.current_device()
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.set_device(index)
    with pytest.raises(RuntimeError, match="Invalid device index"):
        with torch.qdev.device(index):
            pass
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.get_device_properties(index)
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.Stream(device=index)
    with pytest.raises(RuntimeError, match="Invalid device index"):
        torch.qdev.Event(device=index)
    assert torch.qdev.current_device() == before


def test_rng_state_negative_index():
    """get_rng_state(-1) read qdev:1's state; set_rng_state(s, -1) overwrote it."""
    states = torch.qdev.get_rng_state_all()
    with pytest.raises(RuntimeError, match="must not be negative"):
        torch.qdev.get_rng_state(-1)
    with pytest.raises(RuntimeError, match="must not be negative"):
        torch.qdev.set_rng_state(torch.qdev.get_rng_state(0), -1)
    for a, b in zip(states, torch.qdev.get_rng_state_all()):
        assert torch.equal(a, b)


def test_stream_with_a_foreign_id():
    with pytest.raises(RuntimeError, match="Invalid qdev stream id 88888"):
        torch.qdev.Stream(stream_id=88888, device_index=0, device_type=torch.qdev.current_stream().device_type)
    assert torch.qdev.Stream(priority=-1).priority == -1
    assert torch.qdev.Stream().priority == 0


def test_event_of_one_device_on_another_devices_stream():
    e = torch.qdev.Event(device=0)
    with pytest.raises(RuntimeError, match="does not match recording stream's device index"):
        e.record(torch.qdev.Stream(device=1))


def test_cpu_generator_for_a_qdev_op():
    with pytest.raises(RuntimeError, match="Expected a 'qdev' device type for generator"):
        torch.rand(3, device="qdev", generator=torch.Generator())
    g = torch.Generator(device="qdev").manual_seed(3)
    assert torch.rand(3, device="qdev", generator=g).device.type == "qdev"


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize("zipfile", [False, True])
def test_nz_tensor_round_trips_in_both_formats(zipfile):
    """With _use_new_zipfile_serialization=False an NZ tensor loaded back as garbage."""
    t = torch.randint(-128, 128, (33, 64), dtype=torch.int8)
    with internal_format(True):
        nz = torch_qdev.npu_format_cast(t.qdev(), 29)
    assert torch_qdev.get_npu_format(nz) == torch_qdev.Format.FRACTAL_NZ
    buf = io.BytesIO()
    torch.save({"w": nz}, buf, _use_new_zipfile_serialization=zipfile)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)["w"]
    assert back.device.type == "qdev" and torch.equal(back.cpu(), t)
    buf.seek(0)
    assert torch.equal(torch.load(buf, map_location="cpu", weights_only=True)["w"], t)


@pytest.mark.parametrize("row", [[float("inf"), 1.0, 2.0, -3.0] * 5, [float("nan"), 1.0, 2.0, -3.0] * 5,
                                 [1.0, 2.0, 3.0] * 6 + [float("nan")], [float("-inf"), 1.0, 2.0, 3.0] * 5])
@pytest.mark.parametrize("asym", [False, True])
def test_non_finite_inputs_quantize_alike_on_every_isa(row, asym):
    """A NaN quotient (NaN input, inf / inf) was -128 with the AVX-512 row kernel and 0 (through
    an undefined float-to-int cast) elsewhere; a NaN in the last 16 lanes could make the AVX-512
    scale NaN. Now: NaN inputs are left out of the range and quantize to 0, in every variant."""
    x = torch.tensor([row] * 3)
    op = torch_qdev.npu_dynamic_quant_asymmetric if asym else torch_qdev.npu_dynamic_quant
    expected = ref.dynamic_quant(x, asymmetric=asym)
    for isa in ISAS:
        with cpu_isa(isa):
            got = op(x)
            assert torch.equal(got[0], expected[0].to(torch.int8)), isa
            assert torch.allclose(got[1], expected[1], equal_nan=True), isa
